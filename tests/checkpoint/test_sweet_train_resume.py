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


# ---------------------------------------------------------------------------------- stop inside a stage
# The critic, actor and baseline stages stopped inside their training by the stop file
# ($SWEET_STOP_FILE, what slurm/train_sweet.sh creates on Slurm's warning signal) exit 75 with a
# checkpoint, and the rerun resumes inside the stage: no training step is lost or repeated, every
# logged step equals the uninterrupted run's, and every checkpoint both runs published at a stage
# end (the final actor, the rft and mtdpo models) is equal bit for bit, optimizer included.

STAGE_STEPS = 6
STAGE_OVERRIDES = [
    "train.init_from=null", "train.steps=2", "train.rows_per_step=2", "train.log_every=1", "train.tensorboard=false",
    "train.progress=false", "train.keep_last=8", "task.num_train=24", "task.num_eval=4", "task.num_demos=8",
    "tokenizer.vocab_size=512", "tokenizer.number_pieces=false", "model.num_layers=2", "model.hidden_size=64",
    "model.ffn_hidden_size=128", "model.seq_length=1024", "sweet.critic_min_best_reward=null",
    f"sweet.critic_steps={STAGE_STEPS}", f"sweet.actor_steps={STAGE_STEPS}", "sweet.rows_per_step=2",
    "sweet.actor_states=4", "sweet.num_candidates=4", "sweet.pairs_per_turn=2", "sweet.credit_states=4",
    "sweet.credit_policy_states=2", "rollout.max_tokens=24", "rollout.max_turns=3",
]
TRAINED = ("sft", "critic", "critic_noref", "actor", "rft", "mtdpo")


def _stage_command(run_dir: Path, stage: str, episodes: Path) -> list[str]:
    return [*_command(run_dir)[: -len(OVERRIDES)], f"stage={stage}", f"sweet.offline_episodes={episodes}",
            *STAGE_OVERRIDES]


def _stage_run(run_dir: Path, stage: str, episodes: Path, stop_at: str | None = None, timeout: float = 600) -> int:
    """sweet-train stage=<stage>; with `stop_at`, the stop file appears once that stage logs a step
    (the run then stops at a later step boundary). Returns the exit status."""
    stop = run_dir.parent / f"{run_dir.name}.stop"
    stop.unlink(missing_ok=True)
    env = _env() | {"SWEET_STOP_FILE": str(stop), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(_stage_command(run_dir, stage, episodes), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if stop_at and not stop.exists() and any(m.get("stage") == stop_at for m in _all_metrics(run_dir)):
                stop.touch()
            time.sleep(0.01)
        if proc.poll() is None:
            pytest.fail(f"sweet-train stage={stage} did not finish in time")
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode in (0, 75), err[-5000:]
    return proc.returncode


def _all_metrics(run_dir: Path) -> list[dict]:
    from sweet_megatron.training.metrics import read_jsonl

    return read_jsonl(run_dir / "metrics.jsonl")


def _latest_state(run_dir: Path) -> dict:
    ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    return json.loads((ckpt / "state.json").read_text())["state"]


def _load_plain_many(rank, world_size, paths):
    import torch.distributed as dist
    from megatron.core import dist_checkpointing

    dist.init_process_group("gloo")
    return [dist_checkpointing.load_plain_tensors(p) for p in paths]


def _checkpoint_states(ckpts: list[Path]) -> list[dict]:
    """Every tensor and value of each checkpoint's actor and its optimizer, by dotted key (one worker)."""
    parts = ("actor", "optimizer/actor")
    loaded = run_distributed(_load_plain_many, 1, args=([str(c / p) for c in ckpts for p in parts],))[0]
    return [{f"{part}:{k}": v for part, sd in zip(parts, loaded[2 * i: 2 * i + 2], strict=True)
             for k, v in _flatten(sd).items()} for i in range(len(ckpts))]


def _stage_end_checkpoints(run_dir: Path) -> dict[str, Path]:
    """The published checkpoints saved at a stage end (no in-stage step in the tag), by tag."""
    return {p.name: p for p in (run_dir / "checkpoints").iterdir()
            if p.is_dir() and p.name.startswith("step") and p.name.count("-") == 1}


def _same_run(ref_dir: Path, run_dir: Path, context: str) -> None:
    strip = ("time", "attempt")
    ref, got = _all_metrics(ref_dir), _all_metrics(run_dir)
    for stage in TRAINED:  # each training step logged once, equal to the uninterrupted run's
        want = [{k: v for k, v in m.items() if k not in strip} for m in ref if m["stage"] == stage]
        have = [{k: v for k, v in m.items() if k not in strip} for m in got if m["stage"] == stage]
        assert have == want, f"{stage} steps differ ({context})"
    for stage in ("eval", "collect", "credit", "actor_pairs"):  # recomputed after the resume: the same values
        want = {json.dumps({k: v for k, v in m.items() if k not in strip}, sort_keys=True) for m in ref
                if m["stage"] == stage}
        have = {json.dumps({k: v for k, v in m.items() if k not in strip}, sort_keys=True) for m in got
                if m["stage"] == stage}
        assert have == want, f"{stage} records differ ({context})"
    a, b = _stage_end_checkpoints(ref_dir), _stage_end_checkpoints(run_dir)
    assert set(b) >= set(a) and a, (sorted(a), sorted(b))
    tags = sorted(a)
    states = _checkpoint_states([a[t] for t in tags] + [b[t] for t in tags])
    for tag, x, y in zip(tags, states[: len(tags)], states[len(tags):], strict=True):
        assert x.keys() == y.keys() and sum(isinstance(v, torch.Tensor) for v in x.values()) > 20
        for key, v in x.items():
            same = torch.equal(y[key], v) if isinstance(v, torch.Tensor) else y[key] == v
            assert same, f"{tag} {key} differs ({context})"


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory):
    """Scripted offline episodes and the uninterrupted reference: stage=all, then stage=baselines
    (a copy of the directory between the two is where the baseline case starts)."""
    import shutil

    from tests.golden.compare import offline_episodes

    root = tmp_path_factory.mktemp("stage_resume")
    episodes = offline_episodes(root / "episodes.jsonl")
    ref = root / "ref"
    assert _stage_run(ref, "all", episodes) == 0
    shutil.copytree(ref, root / "after_all", symlinks=True)
    assert _stage_run(ref, "baselines", episodes) == 0
    return root, episodes, ref


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["critic", "actor", "rft"])
def test_stop_inside_a_stage_and_rerun_equals_uninterrupted(stage_runs, stage):
    import shutil

    root, episodes, ref = stage_runs
    run_dir = root / f"stopped_{stage}"
    command = "baselines" if stage == "rft" else "all"
    if command == "baselines":
        shutil.copytree(root / "after_all", run_dir, symlinks=True)
    assert _stage_run(run_dir, command, episodes, stop_at=stage) == 75
    in_stage = _latest_state(run_dir)["in_stage"]
    key = {"critic": "critic_0", "actor": "actor_dpo_0", "rft": "rft"}[stage]
    assert in_stage["key"] == key and 1 <= in_stage["step"] <= STAGE_STEPS, in_stage
    assert _stage_run(run_dir, command, episodes) == 0
    if command == "all":
        assert _stage_run(run_dir, "baselines", episodes) == 0
    log = (run_dir / "train.log").read_text()
    assert f"{key}: resumed inside the stage at step {in_stage['step'] + 1}" in log
    if stage == "actor":  # the critic trained before the stop is read back, not trained again
        assert "critic: trained before the stop, read back" in log
    _same_run(ref, run_dir, f"stopped in {key} after step {in_stage['step']}")
