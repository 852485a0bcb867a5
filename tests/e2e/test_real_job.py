"""The real job, at toy size on CPU: real ColBench rows (the shipped sample), the real Llama-3
tokenizer (a Hugging Face directory made from Meta's tokenizer.model by `sweet-convert
llama3-tokenizer`), a tiny random Llama at the real vocabulary (128,256) saved by transformers and
converted by `sweet-convert hf-to-mcore`, trained by `sweet-train stage=all` from an offline file in
the reference implementation's layout (github facebookresearch/sweet_rl: the problem statement opens
the dialogue, no task ids, rewards missing on some lines).

The offline file has 3 rollouts per training task, one answering with the task's reference code and
two with wrong code; the evaluator scores the lines without a reward. So the run must: warm-start by
SFT on the successful rollouts (task.num_demos=0), pair each task's rollouts by content (critic
pairs), rank the actor's sampled candidates with the critic (actor pairs) and evaluate on the eval
file's tasks. Measured on 2 shared CPU cores: 90 s (212 s while other jobs were busy on them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SAMPLE = "builtin:colbench/backend_test_0-199.jsonl"
TRAIN_ROWS = [52, 32, 50, 117]  # 0-based rows of the sample with short descriptions (fewer tokens)
EVAL_ROWS = [13, 193]
MODEL = ["model=tiny", "model.num_layers=2", "model.hidden_size=64", "model.ffn_hidden_size=128",
         "model.num_attention_heads=4", "model.num_query_groups=2", "model.vocab_size=128256", "model.seq_length=512"]


def _run(cmd: list[str], timeout: int = 600) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    return out.stdout


def _offline_file(path: Path, train_file: Path) -> None:
    """3 rollouts per task in the reference layout, in the reference's k blocks; one right answer."""
    from sweet_megatron.env.colbench_backend.tasks import load_tasks

    tasks = load_tasks(train_file)
    records = []
    for j in range(3):
        for i, task in enumerate(tasks):
            right = j == i % 3
            code = task.ground_truth if right else f"def {task.function_name}(*args, **kwargs):\n    return 0"
            answer_turn = f"I WANT TO ANSWER:\n```python\n{code}\n```"
            record = {"task": {k: v for k, v in task.to_record().items() if k != "task_id"},
                      "dialogue_history": [
                          {"role": "user", "content": task.problem_description},
                          {"role": "assistant", "content": "Are there any edge cases I should handle?"},
                          {"role": "user", "content": "Just follow the description."},
                          {"role": "assistant", "content": answer_turn}],
                      "answer": answer_turn.split("I WANT TO ANSWER:", 1)[1]}
            if (i + j) % 2:  # the rest is scored by the evaluator when loaded
                record["reward"] = 1.0 if right else 0.0
            records.append(record)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_real_job_llama3_vocab_colbench_rows_reference_offline_file(tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    from sweet_megatron.builtin import resolve_builtin
    from sweet_megatron.config import load_config
    from sweet_megatron.data.llama3 import write_llama3_hf_tokenizer
    from sweet_megatron.weights.llama_mapping import hf_config_from_model_config

    start = time.time()
    rows = resolve_builtin(SAMPLE).read_text().splitlines()
    train_file, eval_file = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train_file.write_text("".join(rows[i] + "\n" for i in TRAIN_ROWS))
    eval_file.write_text("".join(rows[i] + "\n" for i in EVAL_ROWS))
    offline = tmp_path / "offline.jsonl"
    _offline_file(offline, train_file)

    tok_dir = tmp_path / "llama3_tokenizer"
    write_llama3_hf_tokenizer(tok_dir)  # what `sweet-convert llama3-tokenizer --out DIR` runs, in process
    hf_dir, mcore = tmp_path / "hf_tiny_llama", tmp_path / "mcore_tiny_llama"
    torch.manual_seed(0)
    hf_cfg = hf_config_from_model_config(load_config(MODEL).model)
    assert hf_cfg.vocab_size == 128256
    LlamaForCausalLM(hf_cfg).save_pretrained(str(hf_dir))
    for f in tok_dir.iterdir():  # a Hugging Face Llama directory carries its tokenizer
        shutil.copy(f, hf_dir / f.name)
    _run([sys.executable, "-m", "sweet_megatron.checkpoint.convert", "hf-to-mcore", "--hf-dir", str(hf_dir),
          "--out", str(mcore), "--tp", "1", "--pp", "1"])

    run_dir = tmp_path / "run"
    stdout = _run([
        sys.executable, "-m", "sweet_megatron.cli.train", "stage=all", "task=colbench_backend",
        f"task.train_file={train_file}", f"task.eval_file={eval_file}", f"sweet.offline_episodes={offline}",
        "tokenizer.kind=hf", f"tokenizer.path={tok_dir}", f"train.init_from={mcore}", f"run_dir={run_dir}", *MODEL,
        "train.steps=2", "train.rows_per_step=2", "train.pack_length=512", "train.progress=false",
        "train.tensorboard=false", "sweet.rows_per_step=2", "sweet.critic_steps=2", "sweet.actor_states=3",
        "sweet.num_candidates=4", "sweet.pairs_per_turn=2", "sweet.actor_steps=2", "sweet.credit_check=false",
        "rollout.max_tokens=8", "rollout.max_turns=2",
    ])
    results = json.loads((run_dir / "results.json").read_text())
    # 4 tasks, each 1 success against 2 failures: best-vs-worse gives 2 pairs a task
    assert results["critic_pairs"] == 8
    assert results["actor_pairs"] > 0
    assert results["details"]["eval_0"]["episodes"] == len(EVAL_ROWS)
    assert results["details"]["eval_before"]["episodes"] == len(EVAL_ROWS)
    log = (run_dir / "train.log").read_text()
    assert "sft: 4 demonstrations" in log  # the warm start is the offline file's successes
    assert "scoring 6 episodes without a reward" in log
    assert "success after SWEET-RL" in stdout
    print(f"real-job e2e wall time: {time.time() - start:.0f} s")
