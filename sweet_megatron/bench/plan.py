"""`sweet-bench plan [world_size=N] [gpu_gb=80] [mfu=0.4] [gpus_per_node=8] <config overrides>`: the memory plan.

Prints per-GPU memory of every resident part in every phase (training/memory.py) and a projected
training throughput; exits 1 naming what to change when the layout does not fit, 2 on a bad key.
Its own keys (the rest are sweet-train's config overrides, e.g. model=llama3_70b parallel=h100_70b rollout=vllm):
  world_size     GPUs in the job (default: the smallest multiple of gpus_per_node that holds the layout)
  gpu_gb         memory of one GPU in GB (default: 80)
  mfu            model FLOPs utilization assumed for the projected tokens/s (default: 0.4)
  gpus_per_node  GPUs per node (default: 8)
"""

from __future__ import annotations

import sys

from sweet_megatron.config import ConfigError, load_config
from sweet_megatron.parallel import LayoutError
from sweet_megatron.training.memory import GB, plan_run


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    own = {"world_size": None, "gpu_gb": "80", "mfu": "0.4", "gpus_per_node": "8"}
    overrides = []
    for a in argv:
        key = a.split("=", 1)[0]
        if key in own and "=" in a:
            own[key] = a.split("=", 1)[1]
        else:
            overrides.append(a)
    try:
        cfg = load_config(overrides)
        per_node = int(own["gpus_per_node"])
        mp = cfg.parallel.model_parallel
        world = int(own["world_size"]) if own["world_size"] else -(-mp // per_node) * per_node
        world = world if world % mp == 0 else -(-world // mp) * mp
        if own["world_size"] and int(own["world_size"]) % mp:
            raise LayoutError(f"world_size={own['world_size']} is not a multiple of tensor_parallel*pipeline_parallel*"
                              f"context_parallel = {mp}: this layout needs {mp} GPUs or a multiple "
                              f"({-(-mp // per_node)} node(s) of {per_node})")
        m = cfg.model
        cfg.parallel.validate(world, m if m.vocab_size else m.with_vocab(128256), "transformer_engine")
        plan = plan_run(cfg, world, gpu_bytes=float(own["gpu_gb"]) * GB, mfu=float(own["mfu"]),
                        gpus_per_node=per_node)
    except (ConfigError, LayoutError, ValueError) as exc:
        print(f"sweet-bench plan: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, LayoutError) else 1
    print(plan.format())
    return 0 if plan.fits else 1
