"""`sweet-train` killed with SIGKILL mid-run and started again with the same command line ends
with the same weights (bit for bit) and logs the same loss curve as a run never interrupted.

The kill lands at a random step after the first checkpoint exists (possibly in the middle of a
later save); the rerun resumes by default (`resume=true`). Every metrics.jsonl line of the
interrupted run (those from before the kill and those after the resume, which repeat some steps)
must equal the uninterrupted run's line for that step, except the wall-clock time and the `attempt`
that marks which invocation wrote it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sweet_megatron.parallel import free_port
from tests.dist import run_distributed

pytestmark = [pytest.mark.e2e, pytest.mark.dist]

STEPS, SAVE_EVERY = 6, 2
OVERRIDES = [
    "stage=sft", "train.init_from=null", f"train.steps={STEPS}", f"train.save_every={SAVE_EVERY}", "train.log_every=1",
    "train.rows_per_step=2", "train.tensorboard=false", "train.progress=false",
    "task.num_demos=8", "task.num_train=16", "task.num_eval=4", "tokenizer.vocab_size=512", "tokenizer.number_pieces=false",
    "model.num_layers=2", "model.hidden_size=64", "model.ffn_hidden_size=128", "model.seq_length=512",
]


def _command(run_dir: Path) -> list[str]:
    exe = Path(sys.executable).with_name("sweet-train")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "sweet_megatron.cli.train"]
    return [*cmd, f"run_dir={run_dir}", *OVERRIDES]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def _run(run_dir: Path, timeout: float = 300) -> None:
    proc = subprocess.run(_command(run_dir), env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:  # the last line of a killed writer may be cut
            pass
    return [m for m in lines if m.get("stage") == "sft"]


def _run_and_kill(run_dir: Path, kill_after_step: int, timeout: float = 300) -> int:
    """Start sweet-train, SIGKILL its whole process group once `kill_after_step` is logged and a
    checkpoint is published. Returns the last step logged before the kill."""
    proc = subprocess.Popen(_command(run_dir), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            steps = [m["step"] for m in _metrics(run_dir)]
            if steps and max(steps) >= kill_after_step and (run_dir / "checkpoints" / "latest").exists():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                assert proc.returncode == -signal.SIGKILL, f"sweet-train ended (rc {proc.returncode}) before the kill"
                return max(steps)
            if proc.poll() is not None:
                pytest.fail(f"sweet-train exited (rc {proc.returncode}) before the kill:\n{proc.stderr.read()[-5000:]}")
            time.sleep(0.02)
        pytest.fail("sweet-train did not reach the kill point in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    raise AssertionError("unreachable")


def _load_plain(rank, world_size, path):
    import torch.distributed as dist
    from megatron.core import dist_checkpointing

    dist.init_process_group("gloo")
    return dist_checkpointing.load_plain_tensors(path)


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flatten(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list | tuple):
        return {k: v for i, val in enumerate(obj) for k, v in _flatten(val, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): obj}


def _final_state(run_dir: Path) -> dict:
    """Every tensor and value of the final checkpoint's model and optimizer, by dotted key."""
    ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    return {f"{part}:{k}": v for part in ("actor", "optimizer/actor")
            for k, v in _flatten(run_distributed(_load_plain, 1, args=(str(ckpt / part),))[0]).items()}


def test_sigkill_and_rerun_equals_uninterrupted(tmp_path):
    seed = random.randrange(1 << 30)
    # At least one checkpoint before the kill, and a step of margin before the run would end.
    kill_after = random.Random(seed).randint(SAVE_EVERY, STEPS - 2)
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"

    _run(ref_dir)
    killed_at = _run_and_kill(run_dir, kill_after)
    _run(run_dir)  # same command line: resume=true is the default

    ref = {m["step"]: m for m in _metrics(ref_dir)}
    assert sorted(ref) == list(range(1, STEPS + 1))
    got = _metrics(run_dir)
    assert {m["step"] for m in got} == set(ref)
    assert {m["attempt"] for m in ref.values()} == {1} and {m["attempt"] for m in got} == {1, 2}
    assert got[0]["attempt"] == 1 and got[-1]["attempt"] == 2  # the resumed attempt's records are marked
    for m in got:
        want = {k: v for k, v in ref[m["step"]].items() if k not in ("time", "attempt")}
        assert {k: v for k, v in m.items() if k not in ("time", "attempt")} == want, \
            f"step {m['step']} (killed after {killed_at}, seed {seed})"

    a, b = _final_state(ref_dir), _final_state(run_dir)
    assert a.keys() == b.keys()
    assert sum(isinstance(v, torch.Tensor) for v in a.values()) > 20  # weights, Adam moments, main params
    for key, v in a.items():
        same = torch.equal(b[key], v) if isinstance(v, torch.Tensor) else b[key] == v
        assert same, f"{key} differs (killed after {killed_at}, seed {seed})"
    assert "resumed from" in (run_dir / "train.log").read_text()
