"""`sweet-bench reshard`: time and peak extra memory of one weight sync, against a plain copy.

Runs a megatron Llama of >= 100M parameters (default ~157M: 6 layers, hidden 1024, ffn 4096,
vocab 32000) under a TP/PP layout on local gloo processes and, on every rank, streams the full
HF-named weights with `stream_hf_weights` (TP gather + PP broadcast, bounded buckets) into a
consumer: by default a `LocalEngine` holding the HF model (what a weight sync costs end to end),
or `--consumer none` (the stream alone). The expected bound is printed beside the measurement:
max(bucket, largest tensor) + the largest weight gathered over TP. Extra memory is the rise of the process's peak RSS over
its RSS before the sync (VmHWM reset through /proc/self/clear_refs), so it counts every transient
buffer; the engine's own weights exist before the sync and are not counted.

The baseline is a plain copy of the same bytes: one memcpy of the full HF model's byte count into
a buffer already touched (time = memory bandwidth; the ratio sync / copy is against this). The first
copy into a fresh buffer is reported apart: its time is mostly first-touch page faults, and its
extra memory is the whole model, which is what materialising the full state dict on a rank would cost.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sweet_megatron.checkpoint.workers import peak_rss_bytes, reset_peak_rss, rss_bytes, run_local_workers
from sweet_megatron.model import ModelConfig, build_model
from sweet_megatron.parallel import ParallelConfig, initialize
from sweet_megatron.rollout.local import LocalEngine
from sweet_megatron.weights.llama_mapping import hf_shapes, hf_shapes_of, weight_specs
from sweet_megatron.weights.resharding import iter_hf_buckets


def _worker(rank: int, world: int, cfg: ModelConfig, layout: dict, bucket_bytes: int, consumer: str, repeats: int):
    pc = ParallelConfig(**layout)
    chunks = build_model(cfg, pc, initialize(pc, seed=0))
    engine = LocalEngine(cfg) if consumer == "local" else None
    element = next(chunks[0].parameters()).element_size()
    shapes = hf_shapes(cfg)
    full_bytes = sum(int(torch.Size(s).numel()) for s in shapes.values()) * element
    largest = max(int(torch.Size(s).numel()) for s in shapes.values()) * element
    # gathered over TP, one megatron weight at a time (fc1 = gate + up, qkv = q + k + v): all but
    # the vocab-parallel ones, which are streamed shard by shard
    gathered = max(sum(int(torch.Size(s).numel()) for s in hf_shapes_of(spec, cfg).values())
                   for spec in weight_specs(cfg) if spec.kind != "vocab") * element

    def sync() -> int:
        count = [0]

        def stream():
            for bucket in iter_hf_buckets(chunks, cfg, bucket_bytes):
                count[0] += 1
                yield from bucket

        if engine is not None:
            engine.update_weights(stream())
        else:
            for _, t in stream():
                t.sum()  # touch the data
        return count[0]

    sync()  # warm-up (first-touch allocations, gloo buffers)
    torch.distributed.barrier()
    times, extras = [], []
    num_buckets = 0
    for _ in range(repeats):
        base = rss_bytes()
        can_reset = reset_peak_rss()
        torch.distributed.barrier()
        t0 = time.perf_counter()
        num_buckets = sync()
        torch.distributed.barrier()
        times.append(time.perf_counter() - t0)
        extras.append(peak_rss_bytes() - base if can_reset else float("nan"))

    # Baselines: one plain copy of the same number of bytes (source: this rank's parameters, cycled),
    # into a fresh buffer (its time is mostly first-touch page faults) and into a touched one.
    src = torch.cat([p.detach().reshape(-1) for c in chunks for p in c.parameters()])

    def copy_into(dst: torch.Tensor) -> None:
        off = 0
        while off < dst.numel():
            n = min(src.numel(), dst.numel() - off)
            dst[off : off + n].copy_(src[:n])
            off += n

    base = rss_bytes()
    reset_peak_rss()
    t0 = time.perf_counter()
    dst = torch.empty(full_bytes // element, dtype=src.dtype)
    copy_into(dst)
    fresh_time = time.perf_counter() - t0
    copy_extra = peak_rss_bytes() - base
    touched = []
    for _ in range(repeats):  # dst is touched now: the same bytes again, no page faults
        t0 = time.perf_counter()
        copy_into(dst)
        touched.append(time.perf_counter() - t0)
    del dst
    return {
        "rank": rank, "sync_s": min(times), "peak_extra_bytes": min(extras), "buckets": num_buckets,
        "copy_s": min(touched), "fresh_copy_s": fresh_time, "copy_extra_bytes": copy_extra, "full_bytes": full_bytes, "largest_bytes": largest,
        "gathered_bytes": gathered if layout["tensor_parallel"] > 1 else 0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sweet-bench reshard", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tp", type=int, default=2, help="tensor-parallel degree (one local gloo process per rank)")
    p.add_argument("--pp", type=int, default=1, help="pipeline-parallel degree")
    p.add_argument("--vpp", type=int, default=None, help="virtual pipeline stages per rank (None: off)")
    p.add_argument("--layers", type=int, default=6, help="transformer layers")
    p.add_argument("--hidden", type=int, default=1024, help="hidden size")
    p.add_argument("--ffn", type=int, default=4096, help="SwiGLU inner size")
    p.add_argument("--heads", type=int, default=16, help="attention heads")
    p.add_argument("--groups", type=int, default=4, help="key/value heads (grouped-query attention)")
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary size")
    p.add_argument("--bucket-mb", type=float, default=64, help="weight-stream bucket size in MiB")
    p.add_argument("--consumer", choices=["local", "none"], default="local",
                   help="'local': load into a LocalEngine (HF model); 'none': the stream alone")
    p.add_argument("--repeats", type=int, default=3, help="timed syncs (the fastest is reported)")
    p.add_argument("--compare", choices=["copy"], nargs="?", const="copy", default="copy",
                   help="the baseline measured in the same run: 'copy', a plain copy of the same bytes into a "
                        "touched buffer (and, apart, into a fresh one); always on, the flag only names it")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)

    cfg = ModelConfig(name="bench", num_layers=args.layers, hidden_size=args.hidden, ffn_hidden_size=args.ffn,
                      num_attention_heads=args.heads, num_query_groups=args.groups, vocab_size=args.vocab,
                      seq_length=1024)
    layout = {"tensor_parallel": args.tp, "pipeline_parallel": args.pp, "virtual_pipeline": args.vpp}
    world = args.tp * args.pp
    bucket = int(args.bucket_mb * 2**20)
    res = run_local_workers(_worker, world, (cfg, layout, bucket, args.consumer, args.repeats))
    mib = 2**20
    worst = max(res, key=lambda r: r["peak_extra_bytes"])
    summary = {
        "params_m": round(cfg.num_parameters() / 1e6, 1),
        "layout": f"TP{args.tp} PP{args.pp}" + (f" VPP{args.vpp}" if args.vpp else ""),
        "consumer": args.consumer,
        "bucket_mib": args.bucket_mb,
        "buckets": res[0]["buckets"],
        "model_mib": round(res[0]["full_bytes"] / mib, 1),
        "largest_tensor_mib": round(res[0]["largest_bytes"] / mib, 1),
        "sync_s": round(max(r["sync_s"] for r in res), 3),
        "sync_gib_per_s": round(res[0]["full_bytes"] / 2**30 / max(r["sync_s"] for r in res), 2),
        "peak_extra_mib_per_rank": [round(r["peak_extra_bytes"] / mib, 1) for r in res],
        "bound_mib": round((max(bucket, worst["largest_bytes"]) + worst["gathered_bytes"]) / mib, 1),
        "plain_copy_s (touched buffer)": round(max(r["copy_s"] for r in res), 3),
        "plain_copy_s (fresh buffer, incl. page faults)": round(max(r["fresh_copy_s"] for r in res), 3),
        "plain_copy_extra_mib": round(max(r["copy_extra_bytes"] for r in res) / mib, 1),
    }
    summary["sync / plain copy (touched)"] = round(summary["sync_s"] / max(summary["plain_copy_s (touched buffer)"],
                                                                           1e-9), 2)
    if args.json:
        print(json.dumps(summary))
    else:
        width = max(len(k) for k in summary)
        for k, v in summary.items():
            print(f"{k:<{width}}  {v}")
    return 0
