"""A stage without data stops with an error naming the keys (never ZeroDivisionError), and the
length rule drops over-long groups and turn states by count instead of aborting the run."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from sweet_megatron.config import load_config
from sweet_megatron.data.chat import Message
from sweet_megatron.data.packing import Sequence
from sweet_megatron.env.bytetok import ByteTokenizer
from sweet_megatron.env.colbench_backend.tasks import load_tasks
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.metrics import MetricsLogger
from sweet_megatron.training.stages.context import StageContext


def test_warm_start_without_data_is_a_config_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sweet_megatron.cli.train", "stage=all", "task=colbench_backend",
                          f"run_dir={tmp_path}", "train.progress=false", "train.tensorboard=false"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "task.num_demos=0 and no sweet.offline_episodes" in out.stderr
    assert "train.steps=0" in out.stderr and "Traceback" not in out.stderr


def _trainer(tmp_path, seq_length: int, max_tokens: int = 8):
    trainer = object.__new__(StageContext)  # only the length rule: no model is built
    trainer.cfg = load_config([f"rollout.max_tokens={max_tokens}"])
    trainer.tok = ByteTokenizer()
    trainer.model_cfg = SimpleNamespace(seq_length=seq_length)
    trainer.actor = SimpleNamespace(shares_prefixes=False, step=3)
    trainer.state = {"results": {}}
    trainer.metrics = MetricsLogger(tmp_path, tensorboard=False)
    return trainer


def test_over_long_groups_are_dropped_and_counted(tmp_path):
    trainer = _trainer(tmp_path, seq_length=100)
    short, long = Sequence([1] * 60, [0] * 60), Sequence([1] * 120, [0] * 120)
    groups = [[short], [long], [short, Sequence([1] * 30, [0] * 30)], [short, short]]
    kept = trainer.fit_groups("critic", groups)
    assert kept == [groups[0], groups[2]]  # 60 and 90 tokens fit; 120 and 60+60 do not
    assert trainer.state["results"]["dropped_long"] == {"critic": 2}
    trainer.metrics.close()
    assert '"dropped_long": 2' in (tmp_path / "metrics.jsonl").read_text()


def test_turn_states_without_room_for_an_action_are_dropped(tmp_path):
    tok = ByteTokenizer()
    task = load_tasks("builtin:colbench/backend_test_0-199.jsonl", limit=1)[0]
    states = [ep.TurnState(task, [Message("system", "x")]), ep.TurnState(task, [Message("system", "x" * 400)])]
    need = len(ep.candidate_sequence(tok, states[0], "", True).ids)  # the critic's view, reference included
    trainer = _trainer(tmp_path, seq_length=need + 8 + 100, max_tokens=8)
    assert trainer.fit_states("actor_states", states) == [states[0]]
    assert trainer.state["results"]["dropped_long"] == {"actor_states": 1}
    trainer2 = _trainer(tmp_path / "b", seq_length=need + 7, max_tokens=8)
    assert trainer2.fit_states("actor_states", states) == []
