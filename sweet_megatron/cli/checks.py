"""The files a run names, checked before anything is built: each missing or wrong one is a
ConfigError naming the key, the path and the fix."""

from __future__ import annotations

from pathlib import Path

from sweet_megatron.builtin import is_builtin, resolve_builtin, shipped_names
from sweet_megatron.config import ConfigError, RunConfig

META_FILE = "sweet_meta.json"  # checkpoint/model_io.py's contract


def _existing(key: str, value: str, what: str) -> Path:
    """The path `value` of `key` (a `builtin:` name resolved), or ConfigError saying it does not exist."""
    if is_builtin(value):
        try:
            return resolve_builtin(value)
        except FileNotFoundError as exc:
            raise ConfigError(f"{key}={value}: {exc}") from None
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"{key}={value}: {path.resolve()} does not exist; {what}")
    return path


def check_paths(cfg: RunConfig) -> None:
    """Raise ConfigError for the first file or directory of `cfg` that is missing or of the wrong kind."""
    ckpt_fix = ("give a model checkpoint directory (made by `sweet-convert hf-to-mcore` or `sweet-train "
                f"stage=pretrain`; shipped: {', '.join(n for n in shipped_names() if '.' not in n) or 'none'}), "
                "or train.init_from=null to train from scratch")
    if cfg.train.init_from and cfg.stage != "pretrain":
        path = _existing("train.init_from", cfg.train.init_from, ckpt_fix)
        if not (path / META_FILE).is_file():
            raise ConfigError(f"train.init_from={cfg.train.init_from}: {path} is not a sweet-megatron model checkpoint "
                              f"(no {META_FILE} in it); {ckpt_fix}")
    tok = cfg.tokenizer
    if tok.path:
        path = _existing("tokenizer.path", tok.path,
                         "give a sentencepiece .model file (tokenizer.kind=sentencepiece) or a directory with "
                         "tokenizer.json (tokenizer.kind=hf), or tokenizer.path=null")
        if tok.kind == "hf" and not (path / "tokenizer.json").is_file():
            raise ConfigError(f"tokenizer.path={tok.path}: no tokenizer.json in {path} (tokenizer.kind=hf wants a "
                              "Hugging Face tokenizer directory; a .model file is tokenizer.kind=sentencepiece)")
        if tok.kind == "sentencepiece" and not path.is_file():
            raise ConfigError(f"tokenizer.path={tok.path}: {path} is not a file (tokenizer.kind=sentencepiece wants "
                              "a .model file; a directory with tokenizer.json is tokenizer.kind=hf)")
    if cfg.task.source == "colbench_backend" and cfg.task.path:
        path = _existing("task.path", cfg.task.path, "give a JSONL file of ColBench tasks "
                         "(e.g. builtin:colbench/backend_test_0-199.jsonl)")
        if not path.is_file():
            raise ConfigError(f"task.path={cfg.task.path}: {path} is a directory; give a JSONL file of tasks")
    if cfg.sweet.offline_episodes and cfg.stage in ("collect", "critic", "actor", "all", "baselines"):
        path = _existing("sweet.offline_episodes", cfg.sweet.offline_episodes,
                         "give a JSONL file of episodes in the reference layout, or sweet.offline_episodes=null")
        if not path.is_file():
            raise ConfigError(f"sweet.offline_episodes={cfg.sweet.offline_episodes}: {path} is a directory; give "
                              "a JSONL file")
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir={cfg.run_dir}: {run_dir.resolve()} is a file; give a directory")
