"""Where a run's initial weights and tokenizer come from: `train.init_from` paths, shipped
`builtin:` checkpoints, the checkpoint's own tokenizer, and clear errors when they do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweet_megatron.checkpoint.model_io import META_FILE, checkpoint_meta, resolve_checkpoint
from sweet_megatron.config import ConfigError, TokenizerConfig
from sweet_megatron.model import ModelConfig
from sweet_megatron.training.episodes import tokenizer_config
from sweet_megatron.training.trainer import _check_init_matches


def _fake_checkpoint(path: Path, cfg: ModelConfig, tokenizer: dict | None) -> Path:
    path.mkdir(parents=True)
    (path / META_FILE).write_text(json.dumps({**checkpoint_meta(cfg), "tokenizer": tokenizer}))
    return path


def test_paths_and_builtin_names(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "c", ModelConfig(vocab_size=64), None)
    assert resolve_checkpoint(str(ckpt)) == ckpt
    with pytest.raises(FileNotFoundError, match="sweet-convert hf-to-mcore"):
        resolve_checkpoint(str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="no shipped checkpoint of that name"):
        resolve_checkpoint("builtin:no-such-model")


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
