"""`sweet-bench local-engine`: decode throughput of the local KV-cache engine on CPU.

A random tiny Llama (default: the `tiny` size, 4 layers, hidden 128, vocab 1024), `--prompts`
prompts of random lengths, `--new-tokens` sampled tokens each (no stop tokens, so every row decodes
to the end). Reports new tokens per second over the whole generate() call (prefill included).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sweet_megatron.model import SIZES
from sweet_megatron.rollout.base import SamplingParams
from sweet_megatron.rollout.local import LocalEngine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sweet-bench local-engine", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", default="tiny", choices=sorted(SIZES), help="named model size (sweet_megatron.model.SIZES), random weights")
    p.add_argument("--vocab", type=int, default=1024, help="vocabulary size")
    p.add_argument("--prompts", type=int, default=64, help="prompts in the batch")
    p.add_argument("--prompt-len", type=int, default=64, help="longest prompt (lengths are uniform in [len/2, len])")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens sampled per prompt")
    p.add_argument("--max-batch-size", type=int, default=64, help="most sequences the engine decodes at once")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (None: torch's own choice)")
    p.add_argument("--repeats", type=int, default=3, help="timed generate() calls (the best is reported)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SIZES[args.size].with_vocab(args.vocab)
    engine = LocalEngine(cfg, seed=0, max_batch_size=args.max_batch_size)
    engine.weights_loaded = True  # random weights are fine for speed
    g = torch.Generator().manual_seed(0)
    lens = torch.randint(args.prompt_len // 2, args.prompt_len + 1, (args.prompts,), generator=g)
    prompts = [torch.randint(0, args.vocab, (int(n),), generator=g).tolist() for n in lens]
    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=args.new_tokens, seed=1)
    engine.generate(prompts[:4], SamplingParams(max_tokens=4))  # warm-up
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = engine.generate(prompts, params)
        best = min(best, time.perf_counter() - t0)
    new = sum(len(g.token_ids) for gens in out for g in gens)
    print(json.dumps({
        "model": f"{cfg.name}: {cfg.num_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}",
        "threads": torch.get_num_threads(), "prompts": args.prompts, "new_tokens_each": args.new_tokens,
        "seconds": round(best, 3), "new_tokens_per_s": round(new / best, 1),
    }))
    return 0
