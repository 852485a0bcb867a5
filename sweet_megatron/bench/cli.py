"""`sweet-bench <subcommand> [args]`: one entry point for the benchmarks.

Each subcommand is a module function `main(argv) -> int`, imported only when chosen. Add yours to
SUBCOMMANDS as "name": ("module", "function", "one-line help").
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "reshard": ("sweet_megatron.bench.reshard", "main",
                "weight sync (megatron TP/PP -> full HF tensors -> engine): time and peak extra memory vs a plain copy"),
    "local-engine": ("sweet_megatron.bench.local_engine", "main",
                     "local KV-cache rollout engine: tokens/s for a batch of prompts"),
    "train": ("sweet_megatron.bench.train_step", "main",
              "one trainer step (megatron model, DDP, optimizer, packed rows): tokens/s, model TFLOP/s, MFU"),
    "rollout": ("sweet_megatron.bench.rollout", "main",
                "one RL iteration's rollout side by phase: wake, weight sync (gather, load, GB/s), generation "
                "tokens/s, simulator, evaluator, sleep"),
    "plan": ("sweet_megatron.bench.plan", "main",
             "memory plan: per-GPU bytes of every phase for model x layout x rollout; refuses what cannot fit"),
    "evaluator": ("sweet_megatron.bench.evaluator", "main",
                  "scored rows/s on the shipped ColBench rows: the bubblewrap sandbox vs the in-process unsafe scorer"),
    "convert": ("sweet_megatron.bench.convert", "main",
                "sweet-convert on a synthetic wide Llama: peak RSS per process vs the model size"),
}


def usage() -> str:
    width = max(len(k) for k in SUBCOMMANDS)
    lines = ["usage: sweet-bench <subcommand> [args]   (sweet-bench <subcommand> --help)", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"sweet-bench: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func, _ = SUBCOMMANDS[name]
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
