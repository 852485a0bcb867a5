"""`sweet-train`: the SWEET-RL trainer's entry point (hydra CLI over sweet_megatron/conf).

    sweet-train                                   # embedded default: tiny model, synthetic tasks, CPU
    sweet-train stage=all run_dir=runs/demo       # the whole pipeline
    torchrun --nproc-per-node 4 -m sweet_megatron.cli.train parallel=tp2pp2 stage=sft
"""

from __future__ import annotations

import sys

from sweet_megatron.training.metrics import filter_library_warnings

filter_library_warnings()  # before megatron is imported: its import-time warnings are among them

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from sweet_megatron.config import ConfigError, register_schemas, to_run_config  # noqa: E402
from sweet_megatron.parallel import LayoutError  # noqa: E402
from sweet_megatron.training.preemption import PREEMPTED_EXIT, Preempted  # noqa: E402

register_schemas()


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def _main(raw: DictConfig) -> None:
    try:
        cfg = to_run_config(raw)
        from sweet_megatron.training.trainer import SweetTrainer

        trainer = SweetTrainer(cfg)
    except (ConfigError, LayoutError) as exc:
        print(f"sweet-train: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        results = trainer.run()
    except Preempted as exc:
        print(f"sweet-train: {exc}; rerun the same command (or let the job requeue) to resume", file=sys.stderr)
        trainer.close()
        sys.exit(PREEMPTED_EXIT)
    trainer.close()
    before = results.get("eval_before", {}).get("success_rate")
    after = [v for k, v in sorted(results.items()) if k.startswith("eval_") and k != "eval_before"]
    if before is not None:
        print(f"success before SWEET-RL: {before:.3f}")
    if after:
        print(f"success after SWEET-RL:  {after[-1]['success_rate']:.3f}")
    print(f"run directory: {cfg.run_dir}")


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
