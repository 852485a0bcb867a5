"""Model-weights checkpoints: megatron dist_checkpointing directories plus `sweet_meta.json`.

The contract shared by `sweet-convert hf-to-mcore`, sweet-train's initial load and
`checkpoint/dist_ckpt.py`:

    <dir>/                     a megatron dist_checkpointing directory (torch_dist backend) of
                               {"model": chunk.sharded_state_dict()}               one chunk, or
                               {"model0": ..., "model1": ...}                      one per virtual stage
    <dir>/sweet_meta.json      {"format": "sweet-megatron/model-v1",
                                "model": dataclasses.asdict(ModelConfig),
                                "tokenizer": {"kind": "hf", "path": "tokenizer"} | null,   (path relative to dir)
                                ...anything else the writer adds}
    <dir>/tokenizer/           the tokenizer files (HF files, or one sentencepiece .model)

dist_checkpointing matches tensors by their global keys (layer offsets and TP slices are in the
key's sharding, not in the dict path), so a checkpoint saved at one TP/PP/VPP layout loads at any
other with the same padded vocabulary (`ModelConfig.padded_vocab_size(tp)`).

Writes are atomic: everything goes to `<dir>.tmp-<pid>` and is renamed into place at the end; an
existing `<dir>` is refused. Both functions are collective over the default process group.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sweet_megatron.builtin import BUILTIN, resolve_builtin, shipped_names
from sweet_megatron.model import FP8Config, ModelConfig
from sweet_megatron.parallel import from_rank0, rank
from sweet_megatron.weights.resharding import unwrap

log = logging.getLogger(__name__)

META_FILE = "sweet_meta.json"
TOKENIZER_DIR = "tokenizer"
FORMAT = "sweet-megatron/model-v1"


@dataclass
class TokenizerSource:
    """Tokenizer files to copy into `<dir>/tokenizer/`."""

    kind: str
    """'hf' (a directory of tokenizer files) or 'sentencepiece' (one .model file)."""
    files: list[Path]


def checkpoint_meta(cfg: ModelConfig, **extra: Any) -> dict[str, Any]:
    """The sweet_meta.json content for a model (tokenizer info is added by save_model_checkpoint)."""
    return {"format": FORMAT, "model": dataclasses.asdict(cfg), **extra}


def model_config_from_meta(meta: dict[str, Any]) -> ModelConfig:
    """The ModelConfig recorded in a sweet_meta.json; unknown fields are errors."""
    fields = dict(meta["model"])
    fp8 = fields.pop("fp8", None)
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"{META_FILE}: unknown model fields {sorted(unknown)} (written by a newer sweet-megatron?)")
    return ModelConfig(**fields, fp8=FP8Config(**fp8) if fp8 else FP8Config())


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A model checkpoint directory: a path, or `builtin:NAME` for one shipped in sweet_megatron/assets."""
    text = str(path)
    if not text.startswith(BUILTIN):
        out = Path(text)
        if not (out / META_FILE).is_file():
            raise FileNotFoundError(f"{out} is not a sweet-megatron model checkpoint ({META_FILE} is missing): "
                                    "make one with `sweet-convert hf-to-mcore` or `sweet-train stage=pretrain`")
        return out
    out = resolve_builtin(text)
    if not (out / META_FILE).is_file():
        raise FileNotFoundError(f"{text} is a shipped data file, not a model checkpoint "
                                f"(shipped: {', '.join(shipped_names())})")
    return out


def read_meta(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(ckpt_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{ckpt_dir} is not a sweet-megatron model checkpoint: {META_FILE} is missing")
    return json.loads(path.read_text())


def sharded_model_state(model_chunks: Sequence[torch.nn.Module]) -> dict[str, Any]:
    """{"model": sd} for one chunk, {"model0": sd0, "model1": sd1, ...} for virtual stages."""
    if len(model_chunks) == 1:
        return {"model": unwrap(model_chunks[0]).sharded_state_dict()}
    return {f"model{i}": unwrap(c).sharded_state_dict() for i, c in enumerate(model_chunks)}


def save_model_checkpoint(out_dir: str | os.PathLike, model_chunks: Sequence[torch.nn.Module], meta: dict[str, Any],
                          tokenizer: TokenizerSource | None = None) -> Path:
    """Save the chunks' weights + meta (+ tokenizer files) atomically to a new `out_dir`. Collective.

    Raises FileExistsError (on every rank) if out_dir exists. Returns the final path.
    """
    from megatron.core import dist_checkpointing

    if not dist.is_initialized():
        raise RuntimeError("save_model_checkpoint needs torch.distributed (sweet_megatron.parallel.initialize)")
    out = Path(out_dir).absolute()
    tmp = None
    if rank() == 0:
        tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
        if out.exists():
            tmp = FileExistsError(f"{out} exists: refusing to overwrite it (choose a new output directory)")
        else:
            tmp.mkdir(parents=True)
    tmp = from_rank0(tmp)
    if isinstance(tmp, Exception):
        raise tmp
    try:
        dist_checkpointing.save(sharded_model_state(model_chunks), str(tmp))
        dist.barrier()
        if rank() == 0:
            meta = dict(meta)
            if tokenizer is not None:
                tok_dir = tmp / TOKENIZER_DIR
                tok_dir.mkdir()
                for f in tokenizer.files:
                    shutil.copy2(f, tok_dir / Path(f).name)
                path = TOKENIZER_DIR if tokenizer.kind == "hf" else f"{TOKENIZER_DIR}/{Path(tokenizer.files[0]).name}"
                meta["tokenizer"] = {"kind": tokenizer.kind, "path": path}
            meta.setdefault("tokenizer", None)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
            os.rename(tmp, out)
    except BaseException:
        if rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    dist.barrier()
    log.info("saved model checkpoint %s", out)
    return out


EXTRA_STATE_SUFFIX = "_extra_state"


def tolerated_load_mismatch(not_in_checkpoint: set[str], module_missing: list[str], module_unexpected: list[str],
                            ckpt_dir: str | os.PathLike) -> None:
    """Raise unless the only mismatch between a checkpoint and a model is Transformer Engine's extra state.

    A checkpoint written with the local layer spec (every CPU conversion, the shipped base model)
    has no `*._extra_state` entries; the TE spec's layers ask for them (megatron transformer/utils.py
    `make_sharded_object_for_checkpoint`). They hold FP8 scaling metadata that a freshly built
    layer starts without anyway, so those keys, and only those, may be absent (issue 18 #10).
    `not_in_checkpoint`: sharded keys the model asked for that the checkpoint lacks (megatron's
    "unexpected" keys); `module_missing` / `module_unexpected`: torch `load_state_dict` results.
    """
    bad_ckpt = sorted(k for k in not_in_checkpoint if not k.endswith(EXTRA_STATE_SUFFIX))
    bad_missing = sorted(k for k in module_missing if not k.endswith(EXTRA_STATE_SUFFIX))
    if bad_ckpt or bad_missing or module_unexpected:
        parts = []
        if bad_ckpt or bad_missing:
            names = bad_ckpt or bad_missing
            parts.append(f"the model needs {len(names)} weights the checkpoint lacks (e.g. {names[:3]})")
        if module_unexpected:
            parts.append(f"the checkpoint holds {len(module_unexpected)} weights the model has no place for "
                         f"(e.g. {sorted(module_unexpected)[:3]})")
        raise RuntimeError(f"{ckpt_dir}: {'; '.join(parts)}. Is it a checkpoint of this model (model= config)?")


def load_model_checkpoint(ckpt_dir: str | os.PathLike, model_chunks: Sequence[torch.nn.Module]) -> dict[str, Any]:
    """Load weights saved by save_model_checkpoint (any layout) into the chunks; returns the meta. Collective.

    The checkpoint's dtype may differ from the parameters' (e.g. bf16 into fp32): values are cast.
    Local-spec checkpoints load into the Transformer Engine spec (`tolerated_load_mismatch`).
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.validation import StrictHandling

    meta = read_meta(ckpt_dir)
    # RETURN_UNEXPECTED: requested keys absent from the checkpoint are dropped from the request and
    # returned, instead of the strategy raising "Missing key in checkpoint" (serialization.py `load`,
    # validation.py `validate_integrity_and_strict_load` / `adjust_non_strict_load`).
    state, _, not_in_ckpt = dist_checkpointing.load(sharded_model_state(model_chunks), str(ckpt_dir),
                                                    strict=StrictHandling.RETURN_UNEXPECTED)
    for i, chunk in enumerate(model_chunks):
        key = "model" if len(model_chunks) == 1 else f"model{i}"
        result = unwrap(chunk).load_state_dict(state[key], strict=False)
        tolerated_load_mismatch(set(not_in_ckpt), list(result.missing_keys), list(result.unexpected_keys), ckpt_dir)
    return meta
