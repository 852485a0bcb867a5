"""Where a run's initial weights, tokenizer and held-out tasks come from: `train.init_from` paths,
shipped `builtin:` checkpoints (and what the shipped base model can do), the checkpoint's own
tokenizer, clear errors when they do not fit, and `task.eval_seed`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweet_megatron.checkpoint.model_io import META_FILE, checkpoint_meta, resolve_checkpoint
from sweet_megatron.config import ConfigError, TokenizerConfig
from sweet_megatron.model import ModelConfig
from sweet_megatron.training.episodes import tokenizer_config
from sweet_megatron.training.stages.context import _check_init_matches


def _fake_checkpoint(path: Path, cfg: ModelConfig, tokenizer: dict | None) -> Path:
    path.mkdir(parents=True)
    (path / META_FILE).write_text(json.dumps({**checkpoint_meta(cfg), "tokenizer": tokenizer}))
    return path


def test_paths_and_builtin_names(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "c", ModelConfig(vocab_size=64), None)
    assert resolve_checkpoint(str(ckpt)) == ckpt
    with pytest.raises(FileNotFoundError, match="sweet-convert hf-to-mcore"):
        resolve_checkpoint(str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="nothing of that name ships.*builtin:base-small"):
        resolve_checkpoint("builtin:no-such-model")
    with pytest.raises(FileNotFoundError, match="a shipped data file, not a model checkpoint"):
        resolve_checkpoint("builtin:colbench/backend_test_0-199.jsonl")


def test_shipped_base_model_is_a_complete_checkpoint():
    """The embedded default's base model is in the package, with its tokenizer and its record."""
    from sweet_megatron.checkpoint.model_io import read_meta
    from sweet_megatron.config import load_config

    cfg = load_config()
    path = resolve_checkpoint(cfg.train.init_from)
    meta = read_meta(path)
    assert meta["tokenizer"]["kind"] == "sentencepiece" and (path / meta["tokenizer"]["path"]).is_file()
    assert meta["model"]["hidden_size"] == cfg.model.hidden_size
    assert meta["pretrain"]["code_accuracy"] > 0.5  # what stage=pretrain measured on held-out specifications


def test_tokenizer_comes_from_the_checkpoint_unless_configured(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "c", ModelConfig(vocab_size=64),
                            {"kind": "sentencepiece", "path": "tokenizer/tokenizer.model"})
    chosen = tokenizer_config(TokenizerConfig(), ckpt)
    assert chosen.path == str(ckpt / "tokenizer/tokenizer.model") and chosen.kind == "sentencepiece"
    assert tokenizer_config(TokenizerConfig(path="mine.model"), ckpt).path == "mine.model"
    assert tokenizer_config(TokenizerConfig(), None).path is None
    bare = _fake_checkpoint(tmp_path / "bare", ModelConfig(vocab_size=64), None)
    assert tokenizer_config(TokenizerConfig(), bare).path is None


def test_another_architecture_is_refused_with_the_fix(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "c", ModelConfig(hidden_size=256, vocab_size=64), None)
    _check_init_matches(ckpt, ModelConfig(hidden_size=256, vocab_size=64), str(ckpt))
    with pytest.raises(ConfigError, match=r"hidden_size 256 \(config: 128\).*train.init_from=null"):
        _check_init_matches(ckpt, ModelConfig(hidden_size=128, vocab_size=64), str(ckpt))


def _base_code_accuracy(rank, world_size, n):
    from sweet_megatron.checkpoint.model_io import load_model_checkpoint, model_config_from_meta, read_meta
    from sweet_megatron.data.tokenizer import load_tokenizer
    from sweet_megatron.env.synthetic.family import answer_is_correct, base_documents
    from sweet_megatron.model import build_model
    from sweet_megatron.parallel import ParallelConfig, initialize
    from sweet_megatron.rollout.base import SamplingParams
    from sweet_megatron.rollout.local import LocalEngine
    from sweet_megatron.training.episodes import base_sequence
    from sweet_megatron.weights.resharding import sync_weights

    path = resolve_checkpoint("builtin:base-small")
    meta = read_meta(path)
    cfg = model_config_from_meta(meta)
    par = ParallelConfig()
    chunks = build_model(cfg, par, initialize(par, seed=0))
    load_model_checkpoint(path, chunks)
    tok = load_tokenizer(meta["tokenizer"]["kind"], path / meta["tokenizer"]["path"])
    engine = LocalEngine(cfg)
    sync_weights(engine, chunks, cfg)
    docs = base_documents(n, seed=1000, split="heldout")
    gens = engine.generate([base_sequence(tok, text) for _, text, _ in docs],
                           SamplingParams(temperature=0.0, max_tokens=96, stop_token_ids=(tok.eot_id,)))
    return sum(answer_is_correct(t, tok.decode(g[0].token_ids)) for (t, _, _), g in zip(docs, gens)) / n


def test_shipped_base_model_writes_code_from_held_out_specifications():
    """The shipped weights, loaded through dist_checkpointing and streamed into the rollout engine,
    still write correct code for specifications of functions they never saw (every detail stated)."""
    from tests.dist import run_distributed

    assert run_distributed(_base_code_accuracy, 1, (16,))[0] >= 0.9


def test_eval_seed_fixes_the_held_out_tasks_only():
    """Seeds compared on one benchmark: task.eval_seed pins the held-out tasks, task.seed still
    draws the training tasks."""
    from sweet_megatron.config import TaskConfig
    from sweet_megatron.training.episodes import load_task_splits

    train0, held0 = load_task_splits(TaskConfig(seed=0, num_train=8, num_eval=8))
    train1, held1 = load_task_splits(TaskConfig(seed=1, eval_seed=0, num_train=8, num_eval=8))
    assert [t.ground_truth for t in held1] == [t.ground_truth for t in held0]
    assert [t.ground_truth for t in train1] != [t.ground_truth for t in train0]
    _, held_own = load_task_splits(TaskConfig(seed=1, num_train=8, num_eval=8))
    assert [t.ground_truth for t in held_own] != [t.ground_truth for t in held0]
