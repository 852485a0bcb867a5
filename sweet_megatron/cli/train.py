"""`sweet-train`: the SWEET-RL trainer's entry point (hydra-style overrides over sweet_megatron/conf).

    sweet-train                                   # the main job (stage=all) on the embedded default
    sweet-train stage=sft run_dir=runs/warm       # one stage
    sweet-train --help                            # stages, config groups, the keys most changed
    sweet-train --cfg job train.steps=3           # print the resolved config and stop
    torchrun --nproc-per-node 4 -m sweet_megatron.cli.train parallel=tp2pp2 stage=sft

The tree is composed with hydra's compose API (`config.compose_config`), so every override is one
hydra understands; the command line around it is our own. Bad input (an unknown key, a missing file,
a layout that cannot work) exits 2 with one line naming the key or file and the fix, and the line
also lands in the run directory's train.log when there is one; `--debug` or HYDRA_FULL_ERROR=1 shows
the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from sweet_megatron.training.metrics import filter_library_warnings

filter_library_warnings()  # before megatron is imported: its import-time warnings are among them

from sweet_megatron.cli.checks import check_paths  # noqa: E402
from sweet_megatron.cli.help import help_page  # noqa: E402
from sweet_megatron.config import ConfigError, RunConfig, compose_config, to_run_config  # noqa: E402
from sweet_megatron.parallel import LayoutError  # noqa: E402
from sweet_megatron.training.preemption import PREEMPTED_EXIT, Preempted  # noqa: E402

USAGE = "usage: sweet-train [--help] [--cfg job|all] [--debug] [key=value | group=option ...]"
# What a user can fix from the command line; anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, LayoutError, FileNotFoundError, NotADirectoryError)

log = logging.getLogger("sweet_megatron")


def parse_argv(argv: list[str]) -> tuple[dict, list[str]]:
    """Our flags and the overrides; ConfigError for an unknown flag."""
    flags: dict = {"help": False, "cfg": None, "debug": False}
    overrides: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            flags["help"] = True
        elif arg == "--debug":
            flags["debug"] = True
        elif arg in ("-c", "--cfg") or arg.startswith("--cfg="):
            value = arg.split("=", 1)[1] if "=" in arg else next(it, None)
            if value not in ("job", "all"):
                raise ConfigError(f"--cfg {value}: use --cfg job (the run's config) or --cfg all (with hydra's)")
            flags["cfg"] = value
        elif arg.startswith("-"):
            raise ConfigError(f"unknown flag {arg}; {USAGE} (sweet-train --help)")
        else:
            overrides.append(arg)
    return flags, overrides


def report_error(exc: BaseException, run_dir: str | None) -> None:
    """One line on stderr, and in run_dir/train.log when the run has one (through the trainer's
    logging when it is set up, else appended)."""
    line = f"sweet-train: error: {exc}"
    log_file = Path(run_dir).resolve() / "train.log" if run_dir else None
    logged = log_file is not None and any(
        isinstance(h, logging.FileHandler) and Path(h.baseFilename) == log_file for h in logging.getLogger().handlers)
    if logged:
        log.error(line)  # also reaches stderr through the trainer's stream handler
        return
    print(line, file=sys.stderr)
    if log_file is not None and log_file.is_file():
        with log_file.open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR sweet_megatron: {line}\n")


def run(cfg: RunConfig) -> None:
    """Check the files, train and report (the errors are the caller's)."""
    check_paths(cfg)  # before the trainer's import, so megatron's import-time warnings come after the checks
    from sweet_megatron.training.trainer import SweetTrainer  # lazy: megatron-core; --help stays fast

    trainer = SweetTrainer(cfg)
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
    for key, label in (("mean_similarity", "held-out similarity"), ("win_rate", "win rate vs baseline agent")):
        if key in results.get("eval_before", {}):
            line = f"{label} before SWEET-RL: {results['eval_before'][key]:.3f}"
            if after and key in after[-1]:
                line += f", after: {after[-1][key]:.3f}"
            print(line)
    if after and "win_rate_vs_warm_start" in after[-1]:
        print(f"win rate after SWEET-RL vs the warm start: {after[-1]['win_rate_vs_warm_start']:.3f}")
    print(f"run directory: {cfg.run_dir}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get("HYDRA_FULL_ERROR") == "1"
    run_dir: str | None = None
    try:
        flags, overrides = parse_argv(argv)
        if flags["help"]:
            print(help_page())
            return 0
        if flags["cfg"]:
            from omegaconf import OmegaConf

            cfg = compose_config(overrides, return_hydra_config=flags["cfg"] == "all")
            print(OmegaConf.to_yaml(cfg), end="")
            return 0
        cfg = to_run_config(compose_config(overrides))
        run_dir = cfg.run_dir
        run(cfg)
    except USER_ERRORS as exc:
        if debug:
            raise
        report_error(exc, run_dir)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
