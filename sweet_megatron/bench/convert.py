"""`sweet-bench convert`: peak memory of sweet-convert on a synthetic wide Llama, vs the model size.

Writes a random Llama (default hidden 2048, ffn 5632, 16 heads / 4 KV groups, 4 layers, vocab
32000, bf16: ~0.62 GB) one layer per safetensors file, then runs `sweet-convert hf-to-mcore` and
`mcore-to-hf` as fresh subprocesses (so the numbers are the converter's alone) and reports each
process's peak RSS (VmHWM) next to the model's size and checks that the round trip is exact.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sweet_megatron.model import ModelConfig
from sweet_megatron.weights.hf_io import write_random_llama
from sweet_megatron.weights.llama_mapping import hf_shapes


def _convert(args: list[str]) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "sweet_megatron.checkpoint.convert", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sweet-convert {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = round(time.time() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sweet-bench convert", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--layers", type=int, default=4, help="transformer layers of the synthetic Llama")
    p.add_argument("--hidden", type=int, default=2048, help="hidden size")
    p.add_argument("--ffn", type=int, default=5632, help="SwiGLU inner size")
    p.add_argument("--heads", type=int, default=16, help="attention heads")
    p.add_argument("--groups", type=int, default=4, help="key/value heads (grouped-query attention)")
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary size")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="dtype of the HF safetensors")
    p.add_argument("--tp", type=int, default=2, help="tensor-parallel degree of the megatron checkpoint")
    p.add_argument("--pp", type=int, default=2, help="pipeline-parallel degree of the megatron checkpoint")
    p.add_argument("--max-shard-size", default="256MB", help="HF safetensors shard size of mcore-to-hf")
    p.add_argument("--workdir", default=None, help="where to write the checkpoints (default: a temp dir)")
    args = p.parse_args(argv)

    from safetensors import safe_open

    cfg = ModelConfig(name="wide", num_layers=args.layers, hidden_size=args.hidden, ffn_hidden_size=args.ffn,
                      num_attention_heads=args.heads, num_query_groups=args.groups, vocab_size=args.vocab,
                      seq_length=4096)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        model_bytes = write_random_llama(root / "hf", cfg, getattr(torch, args.dtype))
        to_mcore = _convert(["hf-to-mcore", "--hf-dir", str(root / "hf"), "--out", str(root / "mcore"),
                             "--tp", str(args.tp), "--pp", str(args.pp)])
        to_hf = _convert(["mcore-to-hf", "--ckpt", str(root / "mcore"), "--out", str(root / "back"),
                          "--max-shard-size", args.max_shard_size])
        a_index = json.loads((root / "hf" / "model.safetensors.index.json").read_text())["weight_map"]
        b_index = json.loads((root / "back" / "model.safetensors.index.json").read_text())["weight_map"]
        exact = set(a_index) == set(b_index)
        for name in a_index if exact else []:
            with safe_open(str(root / "hf" / a_index[name]), "pt") as f, safe_open(str(root / "back" / b_index[name]), "pt") as g:
                exact &= torch.equal(f.get_tensor(name), g.get_tensor(name))
    gib = 2**30
    largest_layer = max(
        sum(torch.Size(s).numel() for n, s in _shapes(cfg).items() if n.startswith(f"model.layers.{i}."))
        for i in range(cfg.num_layers)
    ) * torch.empty((), dtype=getattr(torch, args.dtype)).element_size()
    print(json.dumps({
        "model": f"{cfg.num_layers} layers, hidden {cfg.hidden_size}, ffn {cfg.ffn_hidden_size}, vocab {cfg.vocab_size}, {args.dtype}",
        "model_gib": round(model_bytes / gib, 3),
        "largest_layer_gib": round(largest_layer / gib, 3),
        "hf_to_mcore": {"layout": f"TP{args.tp} PP{args.pp}", "wall_s": to_mcore["wall_s"],
                        "peak_rss_gib_per_worker": to_mcore["peak_rss_gib_per_process"],
                        "after_imports_rss_gib_per_worker": to_mcore["baseline_rss_gib_per_process"],
                        "launcher_peak_rss_gib": to_mcore.get("launcher_peak_rss_gib")},
        "mcore_to_hf": {"wall_s": to_hf["wall_s"], "peak_rss_gib": to_hf["peak_rss_gib_per_process"][0],
                        "after_imports_rss_gib": to_hf["baseline_rss_gib_per_process"][0],
                        "max_shard_size": args.max_shard_size},
        "round_trip_exact": exact,
    }, indent=1))
    return 0


def _shapes(cfg: ModelConfig):
    return hf_shapes(cfg)
