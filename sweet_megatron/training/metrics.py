"""What a run tells: named timed phases, metrics to metrics.jsonl and TensorBoard, a progress bar.

Only rank 0 writes; every rank may call. `metrics.jsonl` has one JSON object per logged step:
`{"stage": ..., "step": ..., "time": ..., "attempt": ..., <metric>: <float>, ...}`, and
`phases.jsonl` one per finished phase: `{"phase": ..., "seconds": ..., "attempt": ..., "time": ...}`.

`attempt` counts the invocations that wrote into the run directory (1 for the first). A run killed
and resumed has attempt 1's records up to the kill, then attempt 2's; where attempt 2 repeats a
(stage, step) of attempt 1 (work after attempt 1's last checkpoint), the later record supersedes
the earlier one (`latest_records`). The report adds up every attempt's phase times.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections import defaultdict
from pathlib import Path

log = logging.getLogger("sweet_megatron")


def setup_logging(run_dir: Path | None = None) -> None:
    """Rank-0 INFO logs to stderr (and run_dir/train.log); other ranks warn only."""
    level = logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None and level == logging.INFO:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers,
                        force=True)
    for noisy in ("megatron", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


LIBRARY_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # megatron-core without Apex / Transformer Engine (CPU: neither exists there; NVIDIA's container has both)
    (UserWarning, r"(Transformer Engine and )?Apex (is|are) not installed"),
    (UserWarning, r"full scope is deprecated"),  # megatron's own TransformerConfig default
    # torch and megatron's dist_checkpointing about their internal APIs
    (FutureWarning, r"`load_state_dict` is deprecated"),
    (FutureWarning, r"Please use DTensor instead and we are deprecating ShardedTensor"),
    (FutureWarning, r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is deprecated"),
    (UserWarning, r"The \.grad attribute of a Tensor that is not a leaf Tensor is being accessed"),
    (FutureWarning, r"`past_key_values` is deprecated"),  # transformers' Llama, in the local engine
    # megatron DDP's offload_grad_buffers resizes storages through Tensor.storage()
    (UserWarning, r"TypedStorage is deprecated"),
)
"""Warnings about the libraries' own internals that a user of sweet-train cannot act on."""


def filter_library_warnings() -> None:
    """Silence LIBRARY_WARNINGS and megatron's INFO logs, once, at the start of an entry point (before megatron is imported).
    Every other warning, ours included, still shows."""
    for category, message in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    logging.getLogger("megatron").setLevel(logging.WARNING)  # its import-time INFO lines (FSDP backends)


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file; a torn last line (a kill mid-write) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def latest_records(records: list[dict]) -> list[dict]:
    """The records that stand: for each (stage, step), the one of the latest attempt (in file order)."""
    last_attempt: dict[tuple, int] = {}
    for r in records:
        key = (r.get("stage"), r.get("step"))
        last_attempt[key] = max(last_attempt.get(key, 0), r.get("attempt", 1))
    return [r for r in records if r.get("attempt", 1) == last_attempt[(r.get("stage"), r.get("step"))]]


class _LastLine(logging.Handler):
    """When the project's logger last emitted a line (INFO and up, from any of its children)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.when = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        self.when = time.monotonic()

    @classmethod
    def install(cls) -> _LastLine:
        for handler in log.handlers:
            if isinstance(handler, cls):
                return handler
        handler = cls()
        log.addHandler(handler)
        return handler


class PhaseTimer:
    """Named, timed phases: `with timer("rollout"): ...`; totals and counts per name. `record`, when
    set (e.g. to `MetricsLogger.log_phase`), is called with (name, seconds) as each phase ends.

    Heartbeat (`heartbeat_s`, 0: off): when the run has logged nothing for that long while a phase
    runs (a rollout, the scripted demonstrations, a first step), rank 0 logs one line naming the
    innermost phase and its time so far, so output to a file or a pipe never goes quiet."""

    def __init__(self, heartbeat_s: float = 0.0) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self.record = None
        self.heartbeat_s = heartbeat_s
        self._running: list[tuple[str, float]] = []
        self._last_line = _LastLine.install()
        self._beat: threading.Thread | None = None

    def _heartbeat(self) -> None:
        while True:
            time.sleep(min(1.0, self.heartbeat_s / 4))
            running = list(self._running)
            if running and time.monotonic() - self._last_line.when >= self.heartbeat_s:
                name, start = running[-1]
                log.info("phase %s: running, %.0fs so far", name, time.monotonic() - start)

    @contextlib.contextmanager
    def __call__(self, name: str, quiet: bool = False):
        """quiet: a phase that repeats every step (its total still counts) logs at DEBUG."""
        level = logging.DEBUG if quiet else logging.INFO
        start = time.perf_counter()
        from sweet_megatron.parallel import is_rank0  # torch-free at import: parallel pulls torch (1.2 s)

        if is_rank0():
            log.log(level, "phase %s: start", name)
            if self.heartbeat_s > 0 and self._beat is None:
                self._beat = threading.Thread(target=self._heartbeat, name="phase-heartbeat", daemon=True)
                self._beat.start()
        entry = (name, time.monotonic())
        if not quiet:
            self._running.append(entry)
        try:
            yield
        finally:
            if not quiet:
                self._running.remove(entry)
            dt = time.perf_counter() - start
            self.total[name] += dt
            self.count[name] += 1
            if is_rank0():
                log.log(level, "phase %s: %.2fs", name, dt)
            if self.record is not None:
                self.record(name, dt)

    def summary(self) -> dict[str, float]:
        return {f"time/{k}": round(v, 3) for k, v in self.total.items()}


class MetricsLogger:
    """Appends metrics to run_dir/metrics.jsonl and TensorBoard (rank 0 only)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        from sweet_megatron.parallel import is_rank0  # torch-free at import: parallel pulls torch (1.2 s)

        self.run_dir = run_dir
        self.enabled = is_rank0()
        self._tb = None
        self.attempt = 1
        if self.enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            earlier = read_jsonl(run_dir / "metrics.jsonl") + read_jsonl(run_dir / "phases.jsonl")
            self.attempt = 1 + max((r.get("attempt", 1) for r in earlier), default=0)
            self._file = open(run_dir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115 - closed in close()
            self._phases = open(run_dir / "phases.jsonl", "a", buffering=1)  # noqa: SIM115 - closed in close()
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
                except ImportError:
                    log.warning("tensorboard is not installed: metrics go to metrics.jsonl only")

    def log(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"stage": stage, "step": step, "time": round(time.time(), 3), "attempt": self.attempt}
        record.update({k: (float(v) if isinstance(v, int | float) else v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float):
                    self._tb.add_scalar(f"{stage}/{k}", v, step)

    def log_phase(self, name: str, seconds: float) -> None:
        """One finished phase, to phases.jsonl (so a killed attempt's times survive it)."""
        if self.enabled:
            self._phases.write(json.dumps({"phase": name, "seconds": round(seconds, 3), "attempt": self.attempt,
                                           "time": round(time.time(), 3)}) + "\n")

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._phases.close()
            if self._tb is not None:
                self._tb.close()


class Progress:
    """Progress of long loops on rank 0: a rich bar on a terminal; otherwise (a file, a pipe: Slurm,
    CI, `tee`) one plain log line per task every `interval_s` seconds, and at its first and last
    step: `<task>: step k/N, <info>, <rate> steps/s, <time> left`. Silent when disabled."""

    def __init__(self, enabled: bool = True, interval_s: float = 15.0, stream=None, clock=time.monotonic) -> None:
        from sweet_megatron.parallel import is_rank0  # torch-free at import: parallel pulls torch (1.2 s)

        self._progress = None
        self._lines: dict[int, dict] = {}
        self.enabled = enabled and is_rank0()
        self.interval_s = interval_s
        self._clock = clock
        stream = sys.stderr if stream is None else stream
        self._tty = self.enabled and hasattr(stream, "isatty") and stream.isatty()
        if self._tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False,
            )
            self._progress.start()

    def task(self, description: str, total: int) -> int | None:
        if self._progress is not None:
            return self._progress.add_task(description, total=total, info="")
        if not self.enabled:
            return None
        key = len(self._lines)
        now = self._clock()
        self._lines[key] = {"name": description, "total": total, "done": 0, "start": now, "last": None}
        return key

    def advance(self, task: int | None, info: str = "", n: int = 1) -> None:
        if task is None:
            return
        if self._progress is not None:
            self._progress.update(task, advance=n, info=info)
            return
        t = self._lines[task]
        t["done"] += n
        now = self._clock()
        finished = t["done"] >= t["total"]
        if t["last"] is not None and now - t["last"] < self.interval_s and not finished:
            return
        t["last"] = now
        elapsed = max(now - t["start"], 1e-9)
        rate = t["done"] / elapsed
        left = (t["total"] - t["done"]) / rate if rate > 0 else float("inf")
        log.info("%s: step %d/%d%s, %.3g steps/s, %s", t["name"], t["done"], t["total"], f", {info}" if info else "",
                 rate, "done" if finished else f"{_duration(left)} left")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _duration(seconds: float) -> str:
    """'1h02m', '4m05s', '12s'."""
    if seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
