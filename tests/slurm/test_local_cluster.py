"""slurm/train_sweet.sh under a real one-node Slurm (Debian's slurmctld/slurmd/munge, as root):
sbatch it, wait for the job, and check that torchrun trained on two gloo ranks inside the allocation."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "slurm" / "local_cluster.sh"
TINY = [
    "train.init_from=null", "model.num_layers=2", "model.hidden_size=64", "model.ffn_hidden_size=128",
    "model.seq_length=512", "tokenizer.vocab_size=512", "tokenizer.number_pieces=false", "train.steps=3",
    "train.rows_per_step=2", "train.progress=false", "train.tensorboard=false", "task.num_train=16",
    "task.num_eval=4", "task.num_demos=8", "rollout.max_turns=4",
]

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not all(shutil.which(c) for c in ("slurmctld", "slurmd", "sbatch", "munged")),
                       reason="Slurm is not installed (apt-get install -y slurmctld slurmd slurm-client munge)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the local Slurm cluster runs its daemons as root"),
]


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", 0))
                port = a.getsockname()[1]
                b.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SWEET_SLURM_DIR": str(state), "SWEET_SLURM_PORT": str(_free_port_pair())}
    up = subprocess.run(["bash", str(CLUSTER), "up"], env=env, capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        # the jobs inherit this environment: this interpreter's venv first on PATH
        yield {**env, "SLURM_CONF": str(state / "slurm.conf"), "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
    finally:
        subprocess.run(["bash", str(CLUSTER), "down"], env=env, capture_output=True, timeout=60)


def _wait(job: str, env: dict, timeout_s: float) -> dict:
    """The job's fields from scontrol once it has left the queue."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        out = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
        fields = dict(re.findall(r"(\w+)=(\S*)", out))
        if fields.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return fields
        time.sleep(2)
    subprocess.run(["scancel", job], env=env)
    raise AssertionError(f"job {job} did not finish in {timeout_s:.0f} s")


def _submit(env: dict, log: Path, minutes: int, overrides: list[str]) -> str:
    """sbatch slurm/train_sweet.sh on the one node, without GPUs; returns the job id."""
    submit = subprocess.run(
        ["sbatch", "--parsable", "--nodes=1", "--gpus-per-node=0", "--cpus-per-task=2", f"--output={log}",
         f"--time={minutes}",
         str(REPO / "slurm" / "train_sweet.sh"), *overrides],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    return submit.stdout.strip().split(";")[0]


def test_sbatch_train_sweet_runs_torchrun_on_two_ranks(cluster, tmp_path):
    run_dir = tmp_path / "run"
    log = tmp_path / "job.out"
    env = {**cluster, "GPUS_PER_NODE": "2"}
    job = _submit(env, log, 10, ["stage=sft", "parallel=tp2", f"run_dir={run_dir}", *TINY])
    fields = _wait(job, env, timeout_s=420)
    text = log.read_text() if log.exists() else ""
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", text[-3000:]
    assert f"sweet-train: job {job} on 1 node(s) x 2" in text
    assert "torch: 2." in text  # the versions the job saw
    # torchrun started two ranks in a tp=2 layout, and the warm start trained and saved
    assert "world size 2, layout tp=2 pp=1 dp=1" in text, text[-3000:]
    assert (run_dir / "sft_model").is_dir() and (run_dir / "checkpoints" / "latest").exists()


def test_sbatch_reports_a_bad_override_as_a_failed_job(cluster, tmp_path):
    log = tmp_path / "job.out"
    env = {**cluster, "GPUS_PER_NODE": "1"}
    job = _submit(env, log, 10, ["stage=sft", "train.stepz=3", f"run_dir={tmp_path / 'run'}"])
    fields = _wait(job, env, timeout_s=180)
    assert fields["JobState"] == "FAILED" and fields["ExitCode"] != "0:0"
    deadline = time.time() + 20  # the job step's output can land in the file just after the job ends
    while "stepz" not in log.read_text() and time.time() < deadline:
        time.sleep(0.5)
    assert "stepz" in log.read_text(), log.read_text()


def _sft_steps(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [m for m in map(json.loads, filter(None, lines)) if m.get("stage") == "sft"]


def test_warning_signal_mid_sft_requeues_and_resumes_to_the_same_weights(cluster, tmp_path):
    """Slurm's time-limit warning (USR1 to the batch shell, as --signal=B:USR1@300 sends it) mid-SFT:
    every rank stops after the same step with a checkpoint, the job requeues itself, and the
    restarted job ends with the same weights and optimizer state as a run never interrupted."""
    from tests.checkpoint.test_sweet_train_resume import _final_state

    steps = 12
    overrides = ["stage=sft", f"train.steps={steps}", "train.log_every=1",
                 *(o for o in TINY if not o.startswith("train.steps="))]
    ref_dir = tmp_path / "ref"
    ref = subprocess.run([sys.executable, "-m", "sweet_megatron.cli.train", f"run_dir={ref_dir}", *overrides],
                         capture_output=True, text=True, timeout=400)
    assert ref.returncode == 0, ref.stderr[-3000:]

    run_dir, log = tmp_path / "run", tmp_path / "job.out"
    env = {**cluster, "GPUS_PER_NODE": "1"}
    job = _submit(env, log, 10, [f"run_dir={run_dir}", *overrides])
    deadline = time.time() + 300
    while len(_sft_steps(run_dir)) < 3:
        assert time.time() < deadline, "the job logged no SFT step in time: " + (log.read_text() if log.exists() else "")
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], env=env, check=True)
    # a requeued job waits for its begin time: let it start again at once
    requeue_deadline = time.time() + 120
    while "Restarts=1" not in subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True,
                                             text=True).stdout:
        assert time.time() < requeue_deadline, "the job was not requeued: " + log.read_text()[-3000:]
        time.sleep(1)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, capture_output=True)
    fields = _wait(job, env, timeout_s=400)
    text = log.read_text()
    assert fields["JobState"] == "COMPLETED" and fields["Restarts"] == "1", text[-3000:]
    assert "USR1 received" in text and "requeueing job" in text and "stopped on request after sft step" in text
    assert "resumed from" in text

    want = {m["step"]: {k: v for k, v in m.items() if k not in ("time", "attempt")} for m in _sft_steps(ref_dir)}
    got = _sft_steps(run_dir)
    assert {m["step"] for m in got} == set(want) == set(range(1, steps + 1))
    assert len(got) == steps, "a step was run twice or lost"
    for m in got:
        assert {k: v for k, v in m.items() if k not in ("time", "attempt")} == want[m["step"]], f"step {m['step']}"
    a, b = _final_state(ref_dir), _final_state(run_dir)
    assert a.keys() == b.keys() and sum(isinstance(v, torch.Tensor) for v in a.values()) > 20
    for key, v in a.items():
        assert torch.equal(b[key], v) if isinstance(v, torch.Tensor) else b[key] == v, key
