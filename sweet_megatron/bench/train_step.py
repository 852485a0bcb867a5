"""`sweet-bench train`: trainer throughput of one optimizer step (tokens/s, model TFLOP/s, MFU).

The step is the stages' own: a `ModelRunner` (megatron model, DDP, optimizer) and
`get_forward_backward_func` over packed rows, with the SFT token loss. Rows are filled with random
documents of random lengths the way the stages pack dialogues (attention never crosses a document),
so the numbers include packing's masks. `--warmup` steps are dropped, then `--steps` are timed
(median and best). Under torchrun the same command measures a layout (tp/pp/dp): tokens count the
global batch, every rank times the same barrier-bracketed steps.

Model FLOPs (`llama_train_flops`) are the matmuls of a Llama forward, times 3 for forward plus
backward, with no recompute: QKV and output projections (grouped-query), the SwiGLU MLP, attention
scores and values over each packed document's full square (the convention of Megatron-LM's and
PaLM's MFU; a causal kernel does about half of it), and the output layer. MFU divides the achieved
rate by a peak: `--peak-tflops`, else the dense bf16 peak of a known GPU, else on CPU the fp32 GEMM
rate this machine measures (so a CPU "MFU" says how close the step is to this machine's matmuls).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from sweet_megatron.bench import compare_reference
from sweet_megatron.config import ConfigError, OptimConfig, load_config
from sweet_megatron.data.packing import Sequence, pack_sequences
from sweet_megatron.model import resolve_transformer_impl
from sweet_megatron.parallel import destroy, initialize, rank, world_size

GPU_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "H800": 989.4, "A100": 312.0, "L40S": 362.1, "B200": 2250.0}
"""Dense bf16 tensor-core peaks (TFLOP/s, SXM parts) by a substring of torch.cuda.get_device_name()."""


def llama_train_flops(num_layers: int, hidden: int, ffn: int, heads: int, kv_heads: int, vocab: int,
                      doc_lengths: list[int]) -> float:
    """Model FLOPs of one forward+backward over packed documents (3x the forward's matmuls).

    doc_lengths: tokens of every document in the step (all rows, all ranks). Per token and layer the
    forward multiplies by h x (h + 2 kv) (QKV), h x h (output), 3 x h x ffn (SwiGLU), 2 FLOPs a
    multiply-add; per document of n tokens attention adds 2 n^2 h for Q K^T and as much for the
    values; the output layer adds 2 h V per token.
    """
    head_dim = hidden // heads
    kv = kv_heads * head_dim
    tokens = sum(doc_lengths)
    dense = 2 * tokens * (num_layers * (hidden * (hidden + 2 * kv) + hidden * hidden + 3 * hidden * ffn) + hidden * vocab)
    attention = num_layers * sum(4 * n * n * hidden for n in doc_lengths)
    return 3.0 * (dense + attention)


def cpu_gemm_tflops(n: int = 1024, repeats: int = 5) -> float:
    """This machine's fp32 matmul rate (best of `repeats` n x n x n products), TFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def peak_tflops(requested: float | None, is_cuda: bool) -> tuple[float, str]:
    if requested:
        return requested, "--peak-tflops"
    if is_cuda:
        name = torch.cuda.get_device_name()
        for key, value in GPU_PEAK_TFLOPS.items():
            if key in name:
                return value, f"{name} dense bf16"
        raise SystemExit(f"sweet-bench train: no peak known for GPU {name!r}: pass --peak-tflops")
    return cpu_gemm_tflops(), "this CPU's measured fp32 GEMM rate"


def _sig(x: float, digits: int = 4) -> float:
    """x to `digits` significant digits (a tiny model's MFU of 0.00195 keeps its digits)."""
    return float(f"{x:.{digits}g}")


def random_rows(rows: int, seq_length: int, vocab: int, min_doc: int, max_doc: int, seed: int):
    """`rows` packed rows, each filled exactly with random documents (lengths uniform in
    [min_doc, max_doc], the last one cut to fit), and the documents' lengths."""
    import random

    rng = random.Random(seed)
    packed, lengths = [], []
    for _ in range(rows):
        docs, room = [], seq_length
        while room > 0:
            n = min(rng.randint(min_doc, max_doc), room)
            docs.append(Sequence([rng.randrange(1, vocab) for _ in range(n)], [0] * n))
            room -= n
        (row,) = pack_sequences(docs, seq_length, pad_id=0)
        packed.append(row)
        lengths += [len(d.ids) for d in docs]
    return packed, lengths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sweet-bench train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="small", help="a config in sweet_megatron/conf/model (small, tiny, llama3_8b, ...)")
    p.add_argument("--parallel", default="single", help="a config in sweet_megatron/conf/parallel (run under torchrun)")
    p.add_argument("--vocab", type=int, default=None, help="vocabulary (default: the config's, else 2048)")
    p.add_argument("--seq-length", type=int, default=None, help="packed row length (default: the model's)")
    p.add_argument("--rows", type=int, default=4, help="packed rows per step (global batch)")
    p.add_argument("--min-doc", type=int, default=128, help="shortest random document packed into the rows (tokens)")
    p.add_argument("--max-doc", type=int, default=512, help="longest random document (tokens)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s for MFU (default: a known GPU's dense bf16 peak, on CPU the measured fp32 GEMM rate)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--compare", choices=["reference"], default=None,
                   help="'reference': train the embedded default on its demonstrations' critic pairs two ways, "
                        "ours and the reference implementation's (one sequence per micro-batch, full log_softmax), "
                        "and print both rates and the ratio (bench/compare_reference.py)")
    p.add_argument("--pairs", type=int, default=96, help="with --compare: critic pairs trained")
    args = p.parse_args(argv)
    if args.compare == "reference":
        return compare_reference.run(args.pairs, args.steps, args.warmup, args.json)

    import torch.distributed as dist

    # lazy: the runner imports megatron-core (~5 s); --help and bad arguments stay fast
    from sweet_megatron.training.runner import ModelRunner, sft_loss

    try:
        cfg = load_config([f"model={args.model}", f"parallel={args.parallel}"])
    except ConfigError as exc:  # names the group and its options
        raise SystemExit(f"sweet-bench train: {exc}") from None
    par = cfg.parallel
    model_cfg = cfg.model.with_vocab(args.vocab or cfg.model.vocab_size or 2048)
    seq = args.seq_length or model_cfg.seq_length
    model_cfg = replace(model_cfg, seq_length=seq)
    platform = initialize(par, seed=0)
    par.validate(world_size(), model_cfg, resolve_transformer_impl(model_cfg))
    runner = ModelRunner(model_cfg, par, platform, OptimConfig(lr=1e-4, min_lr=1e-5, warmup_steps=0),
                         total_steps=args.warmup + args.steps, name="bench")
    rows, lengths = random_rows(args.rows, seq, model_cfg.vocab_size, args.min_doc, args.max_doc, seed=0)
    times = []
    for step in range(args.warmup + args.steps):
        if dist.is_initialized():
            dist.barrier()
        if platform.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        runner.train_step(rows, sft_loss, [])
        if platform.is_cuda:
            torch.cuda.synchronize()
        if dist.is_initialized():
            dist.barrier()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    flops = llama_train_flops(model_cfg.num_layers, model_cfg.hidden_size, model_cfg.ffn_hidden_size,
                              model_cfg.num_attention_heads, model_cfg.num_query_groups, model_cfg.vocab_size,
                              lengths)
    peak, peak_source = peak_tflops(args.peak_tflops, platform.is_cuda)
    median = statistics.median(times)
    tokens = sum(lengths)
    n = world_size()
    result = {
        "model": f"{model_cfg.name}: {model_cfg.num_layers} layers, hidden {model_cfg.hidden_size}, "
                 f"{model_cfg.num_parameters() / 1e6:.1f}M parameters, vocab {model_cfg.vocab_size}",
        "layout": f"tp={par.tensor_parallel} pp={par.pipeline_parallel} dp={par.data_parallel(n)} "
                  f"({n} processes, {platform.backend}, {runner.impl} spec)",
        "rows": args.rows, "seq_length": seq, "documents": len(lengths), "tokens_per_step": tokens,
        "padding_fraction": round(1 - tokens / (args.rows * seq), 4),
        "step_s_median": round(median, 4), "step_s_best": round(min(times), 4),
        "tokens_per_s": round(tokens / median, 1), "tokens_per_s_per_process": round(tokens / median / n, 1),
        "model_tflop_per_step": _sig(flops / 1e12), "model_tflops": _sig(flops / median / 1e12),
        "peak_tflops_per_process": round(peak, 3), "peak_source": peak_source,
        "mfu": _sig(flops / median / 1e12 / (peak * n)),
    }
    if rank() == 0:
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    destroy()
    return 0
