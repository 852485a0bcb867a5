"""Stopping at a step boundary when the job is about to be preempted or to run out of time.

A stop is requested in either of two ways:
- a signal to a rank (SIGTERM, as Slurm and torchrun send before killing; SIGUSR1, Slurm's
  `--signal` warning), which sets a flag in that process;
- a stop file, `$SWEET_STOP_FILE`, that `slurm/train_sweet.sh` creates when its batch shell gets
  Slurm's warning signal (`#SBATCH --signal=B:USR1@...`): one file on the shared run storage reaches
  every rank on every node without depending on how srun and torchrun forward signals.

Every rank checks after each optimizer step and the ranks agree (a MAX all-reduce of the local flag
over the world), so all of them stop after the same step. The trainer then writes its checkpoint
and raises `Preempted`; `sweet-train` exits with `PREEMPTED_EXIT`, which the job script answers by
requeueing the job, and the restarted job resumes from that checkpoint (`resume=true`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger("sweet_megatron")

PREEMPTED_EXIT = 75
"""sweet-train's exit status after a requested stop (EX_TEMPFAIL: try again later)."""
STOP_FILE_ENV = "SWEET_STOP_FILE"
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """The run stopped at a step boundary on request, after writing a checkpoint to resume from."""

    def __init__(self, stage: str, step: int):
        super().__init__(f"stopped on request after {stage} step {step}; a checkpoint to resume from is written")
        self.stage, self.step = stage, step


class StopRequest:
    """A stop flag set by SIGTERM/SIGUSR1 or by the existence of a stop file; `agreed()` is True on
    every rank once any rank has it (a collective: call it at the same point on every rank)."""

    def __init__(self, device: torch.device, stop_file: str | os.PathLike | None = None):
        self.device = device
        env = os.environ.get(STOP_FILE_ENV)
        self.stop_file = Path(stop_file) if stop_file is not None else Path(env) if env else None
        self._flag = threading.Event()
        self._why = ""

    def install(self) -> None:
        """Handle SIGTERM and SIGUSR1 by setting the flag (signal handlers live on the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        self._why = signal.Signals(signum).name
        self._flag.set()

    def local(self) -> bool:
        """This rank's view: a signal arrived, or the stop file exists."""
        if not self._flag.is_set() and self.stop_file is not None and self.stop_file.exists():
            self._why = f"stop file {self.stop_file}"
            self._flag.set()
        return self._flag.is_set()

    def agreed(self) -> bool:
        """True on every rank when any rank wants to stop."""
        want = self.local()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([1.0 if want else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            want = bool(flag.item() > 0)
        if want:
            log.warning("stop requested (%s): finishing at this step boundary", self._why or "another rank")
        return want
