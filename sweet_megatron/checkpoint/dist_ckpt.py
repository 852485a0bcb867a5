"""Training checkpoints: atomic, verified, exact-resume saves of every model the trainer holds.

One checkpoint is a directory under the manager's root:

    <root>/<tag>/
        <runner>/                 the runner's model, a model-only dist_checkpointing directory in
                                  `model_io`'s contract ({"model": ...} or {"model0": ..., ...} plus
                                  sweet_meta.json), so `load_model_checkpoint`, `train.init_from` and
                                  `sweet-convert mcore-to-hf` read it like a converted checkpoint
        optimizer/<runner>/       trainable runners: {"optimizer": optimizer.sharded_state_dict(...)}
                                  (the distributed optimizer in the `fully_reshardable` format)
        rng/rank00000.pt ...      per rank: python, numpy, torch CPU (and CUDA) generators and
                                  megatron's CUDA RNG tracker states
        state.json                the trainer's `state`, each runner's step, optimizer step and
                                  LR-scheduler state, and the parallel layout at save
        manifest.json             written last: every file with its size, and a sha256 of the small ones
    <root>/latest                 the newest published tag (written atomically)

Atomicity: a save writes `<root>/.tmp-<tag>/`, rank 0 writes the manifest last, then renames the
directory to `<root>/<tag>` and only then rewrites `latest`; older checkpoints beyond `keep_last`
are deleted after that. A save killed at any point leaves either the previous state or a
`.tmp-*` directory that `latest()` reports and ignores (and the next save removes).
`latest()` trusts no marker blindly: it verifies each candidate against its manifest (files
present, sizes equal, small files' checksums equal) and returns the newest that passes, warning
about each one it skips and why. Durable against a killed process; against power loss as far as
the filesystem honours fsync.

Resharding: model and optimizer tensors are matched by their global keys, so a checkpoint saved
at one TP/PP/VPP/DP layout loads into runners built for another. RNG states are per rank and are
restored only when the layout is the same; otherwise a warning says the fresh seeds stay.

megatron's torch-AdamW fallback (no Apex / Transformer Engine) needs three repairs (see
shared/FINDINGS.md): a never-stepped optimizer has no state, so the distributed optimizer's
`state_dict()` asserts (`_prepare_adam_state` gives every parameter torch's own initial state up
front); the distributed optimizer's load copies the checkpoint over every state key, `step`
included, which the checkpoint lacks (KeyError: 'step'; `_load_optimizer_state` loads the tensors
with `step` set aside); and that load gives every parameter the SAME `step` tensor, which AdamW
then increments once per parameter per update (`_set_adam_step` gives each its own, with the
update count recorded in state.json). The tests check the count after resume.

Cost: megatron's writer starts a `spawn` Manager process at the first save of each process, which
re-imports the `__main__` module (seconds, once; scripts that save need an
`if __name__ == "__main__":` guard); later saves of a tiny model take well under a second.

Simplifications on purpose: saves are synchronous; RNG files are plain per-rank torch files
rather than dist_checkpointing objects (they are only ever read back by the same rank of the
same layout).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from sweet_megatron.checkpoint.model_io import (
    TokenizerSource,
    checkpoint_meta,
    load_model_checkpoint,
    save_model_checkpoint,
    sharded_model_state,
)
from sweet_megatron.parallel import from_rank0, rank, world_size

if TYPE_CHECKING:
    from sweet_megatron.training.runner import ModelRunner

log = logging.getLogger(__name__)

FORMAT = "sweet-megatron/train-ckpt-v1"
MANIFEST = "manifest.json"
STATE = "state.json"
LATEST = "latest"
OPTIM_DIR = "optimizer"
RNG_DIR = "rng"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
CHECKSUM_MAX_BYTES = 1 << 20
"""Files up to this size (metadata, common state, RNG, JSON) get a sha256 in the manifest; tensor
shards are checked by size only, so verifying a checkpoint stays cheap."""
# The distributed optimizer's default format cannot be saved on this stack ("flattened_range is not
# supported"); fully_reshardable also lets a different DP / TP / PP load it. Chained optimizers
# keep megatron's current (unprefixed) keys.
OPTIM_METADATA = {"distrib_optim_sharding_type": "fully_reshardable", "chained_optim_avoid_prefix": True}
_RESERVED = {OPTIM_DIR, RNG_DIR, STATE, MANIFEST, LATEST}
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded (incomplete, corrupt, or not matching the runners)."""


# ------------------------------------------------------------------------------------------ helpers
def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _raise_if_error(err: BaseException | None) -> None:
    """Rank 0's error (or None) is raised on every rank, so no rank waits in a later collective."""
    err = from_rank0(err)
    if err is not None:
        raise err


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    """Write a small file so a reader sees either the old content or all of the new."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> Iterator[Path]:
    for dirpath, _, names in os.walk(root):
        for n in sorted(names):
            yield Path(dirpath) / n


def _layout() -> dict[str, int | None]:
    """The parallel layout that decides which RNG state belongs to which rank."""
    from megatron.core import parallel_state as ps

    return {
        "world_size": world_size(),
        "tensor_parallel": ps.get_tensor_model_parallel_world_size(),
        "pipeline_parallel": ps.get_pipeline_model_parallel_world_size(),
        "virtual_pipeline": ps.get_virtual_pipeline_model_parallel_world_size(),
        "context_parallel": ps.get_context_parallel_world_size(),
        "data_parallel": ps.get_data_parallel_world_size(),
    }


# ------------------------------------------------------------------------------------- RNG states
def rng_state() -> dict[str, Any]:
    """This rank's generators: python, numpy, torch CPU, CUDA (when present), megatron's tracker."""
    from megatron.core import tensor_parallel

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of rng_state()."""
    from megatron.core import tensor_parallel

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


# --------------------------------------------------------------------------- optimizer state repair
def _torch_optimizers(optimizer: Any) -> list[torch.optim.Optimizer]:
    """The torch optimizers inside megatron's wrappers (ChainedOptimizer -> Distributed/FP32 -> torch)."""
    if optimizer is None:
        return []
    if hasattr(optimizer, "chained_optimizers"):
        return [o for c in optimizer.chained_optimizers for o in _torch_optimizers(c)]
    inner = getattr(optimizer, "optimizer", None)
    return [inner] if isinstance(inner, torch.optim.Optimizer) else []


def _torch_adams(optimizer: Any) -> list[torch.optim.Optimizer]:
    return [o for o in _torch_optimizers(optimizer) if isinstance(o, torch.optim.Adam | torch.optim.AdamW)]


def _prepare_adam_state(optimizer: Any) -> None:
    """Give every parameter of a torch Adam(W) the state its first update would create.

    Exactly torch's lazy initialisation (step 0, zero moments), done up front so megatron's
    `state_dict()` / `sharded_state_dict()` work on an optimizer that has not stepped yet.
    """
    for opt in _torch_adams(optimizer):
        for group in opt.param_groups:
            if group.get("amsgrad"):
                raise NotImplementedError("checkpointing torch Adam with amsgrad=True")
            for p in group["params"]:
                state = opt.state[p]
                if "step" not in state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                for key in ("exp_avg", "exp_avg_sq"):
                    if key not in state:
                        state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)


def optimizer_step(optimizer: Any) -> int | None:
    """The update count of megatron's torch-Adam fallback (None for other optimizers / no state)."""
    steps = {
        int(s["step"]) for opt in _torch_adams(optimizer) for s in opt.state.values() if "step" in s
    }
    if len(steps) > 1:
        raise CheckpointError(f"optimizer parameters disagree on the update count: {sorted(steps)}")
    return steps.pop() if steps else None


def _set_adam_step(optimizer: Any, step: int) -> None:
    """One `step` tensor per parameter (megatron's load shares one; AdamW increments it in place)."""
    for opt in _torch_adams(optimizer):
        for group in opt.param_groups:
            for p in group["params"]:
                state = opt.state[p]
                old = state.get("step")
                if isinstance(old, torch.Tensor):
                    state["step"] = torch.full_like(old, float(step))
                else:
                    state["step"] = torch.tensor(float(step), dtype=torch.float32)


def _load_optimizer_state(optimizer: Any, state: Any) -> None:
    """optimizer.load_state_dict(state), working around the torch-AdamW fallback's `step` KeyError.

    megatron's DistributedOptimizer.load_state_dict puts a `step` into every parameter's state and
    then copies the loaded fully_reshardable tensors over *all* state keys, `step` included, which
    the checkpoint never holds (KeyError: 'step'). So the parameter tensors are loaded in a second
    call, with `step` taken out of the state meanwhile; `_set_adam_step` puts it back per parameter.
    """
    from megatron.core.optimizer import DistributedOptimizer

    if hasattr(optimizer, "chained_optimizers"):
        parts = optimizer.chained_optimizers
        if len(parts) == 1:
            _load_optimizer_state(parts[0], state)
            return
        if len(parts) != len(state):
            raise CheckpointError(f"checkpoint has {len(state)} optimizer parts, this optimizer {len(parts)}")
        items = state.items() if isinstance(state, dict) else enumerate(state)
        for part, (_, sub) in zip(parts, sorted(items, key=lambda kv: kv[0])):
            _load_optimizer_state(part, sub)
        return
    if not (isinstance(optimizer, DistributedOptimizer) and state.get("param_state_sharding_type") == "fully_reshardable"):
        optimizer.load_state_dict(state)
        return
    state = dict(state)
    param_state = state.pop("param_state")
    state.pop("param_state_sharding_type")
    optimizer.load_state_dict(state)  # param groups, common step, grad scaler; allocates the moments
    steps = {}
    for opt in _torch_adams(optimizer):
        for p, s in opt.state.items():
            if "step" in s:
                steps[p] = s.pop("step")
    optimizer.load_parameter_state_from_fully_reshardable(param_state)
    for opt in _torch_adams(optimizer):
        for p, step in steps.items():
            if p in opt.state:
                opt.state[p]["step"] = step


def _is_distributed_optimizer(optimizer: Any) -> bool:
    from megatron.core.optimizer import DistributedOptimizer

    if hasattr(optimizer, "chained_optimizers"):
        return any(isinstance(o, DistributedOptimizer) for o in optimizer.chained_optimizers)
    return isinstance(optimizer, DistributedOptimizer)


# ----------------------------------------------------------------------------------- verification
def verify(ckpt: str | os.PathLike) -> str | None:
    """None when `ckpt` is a complete checkpoint matching its manifest, else the reason it is not."""
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        return "not a directory"
    manifest_path = ckpt / MANIFEST
    if not manifest_path.is_file():
        return f"no {MANIFEST} (the save did not finish)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if manifest.get("format") != FORMAT:
            return f"{MANIFEST} has format {manifest.get('format')!r}, expected {FORMAT!r}"
    except (ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} is unreadable (truncated or edited?): {exc}"
    for rel, entry in files.items():
        f = ckpt / rel
        if not f.is_file():
            return f"missing file {rel}"
        size = f.stat().st_size
        if size != entry["size"]:
            return f"{rel} has {size} bytes, the manifest says {entry['size']}"
        if entry.get("sha256") and _sha256(f) != entry["sha256"]:
            return f"{rel} does not match its checksum"
    return None


def _read_seq(ckpt: Path) -> int | None:
    try:
        return int(json.loads((ckpt / MANIFEST).read_text())["seq"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------------------------- the manager
class CheckpointManager:
    """Saves and restores the trainer's runners, RNG and state under one root directory."""

    def __init__(self, root: str | os.PathLike, keep_last: int = 2, tokenizer: TokenizerSource | None = None):
        """keep_last: complete checkpoints kept (0 keeps all). tokenizer: files copied into each
        model directory (so `sweet-convert mcore-to-hf` can export a training checkpoint alone)."""
        if keep_last < 0:
            raise ValueError(f"keep_last={keep_last}: use 0 (keep every checkpoint) or a positive count")
        self.root = Path(root).absolute()
        self.keep_last = keep_last
        self.tokenizer = tokenizer

    # ----------------------------------------------------------------------------- discovery
    def checkpoints(self, warn: bool = True) -> list[tuple[int, Path]]:
        """Complete, verified checkpoints as (seq, path), oldest first; the rest reported and skipped."""
        if not self.root.is_dir():
            return []
        good = []
        for entry in sorted(self.root.iterdir()):
            if not entry.is_dir() or entry.name.startswith(TRASH_PREFIX):
                continue
            if entry.name.startswith(TMP_PREFIX):
                if warn:
                    self._warn(f"ignoring incomplete checkpoint {entry}: a save that never finished "
                               "(the next save removes it)")
                continue
            reason = verify(entry)
            seq = _read_seq(entry) if reason is None else None
            if reason is None and seq is None:
                reason = f"{MANIFEST} has no sequence number"
            if reason is not None:
                if warn:
                    self._warn(f"skipping checkpoint {entry}: {reason}")
                continue
            good.append((seq, entry))
        return sorted(good)

    def latest(self) -> Path | None:
        """Newest complete, verified checkpoint; incomplete or corrupt ones are reported and skipped.

        Collective when torch.distributed is initialised: rank 0 decides, so every rank loads the
        same checkpoint even if a filesystem shows them different views.
        """
        return from_rank0(self._latest() if rank() == 0 else None)

    def _latest(self) -> Path | None:
        good = self.checkpoints()
        if not good:
            return None
        newest = good[-1][1]
        marker = self.root / LATEST
        pointed = marker.read_text().strip() if marker.is_file() else None
        if pointed != newest.name:
            self._warn(f"{marker} names {pointed!r}, but the newest complete checkpoint is {newest.name!r}: "
                       f"using {newest.name!r}")
        return newest

    @staticmethod
    def _warn(msg: str) -> None:
        if rank() == 0:
            log.warning(msg)

    # ---------------------------------------------------------------------------------- save
    def save(self, tag: str, runners: dict[str, ModelRunner], state: dict) -> Path:
        """Save every runner (model; optimizer, scheduler and step when trainable), every rank's RNG
        and the JSON-able `state`, atomically, as `<root>/<tag>`. Collective: all ranks call it."""
        if not _TAG_RE.match(tag) or tag == LATEST:
            raise ValueError(f"checkpoint tag {tag!r}: use letters, digits and _ . = - (not starting with '.')")
        for name in runners:
            if name in _RESERVED or not _TAG_RE.match(name):
                raise ValueError(f"runner name {name!r} cannot name a checkpoint subdirectory")
        state_json = json.dumps(state)  # fail early, on every rank, if the state is not JSON-able
        t0 = time.perf_counter()
        final, tmp = self.root / tag, self.root / f"{TMP_PREFIX}{tag}"

        err = None
        if rank() == 0:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                # Left by killed saves or deletions (this run is the root's only writer).
                for stale in [*self.root.glob(f"{TMP_PREFIX}*"), *self.root.glob(f"{TRASH_PREFIX}*")]:
                    shutil.rmtree(stale)
                (tmp / RNG_DIR).mkdir(parents=True)
                for name, runner in runners.items():
                    if runner.trainable:
                        (tmp / OPTIM_DIR / name).mkdir(parents=True)
            except OSError as exc:
                err = exc
        _raise_if_error(err)

        runner_info = {}
        for name in sorted(runners):
            runner = runners[name]
            meta = checkpoint_meta(runner.model_cfg, source="sweet-train", tag=tag, runner=name, step=runner.step)
            save_model_checkpoint(tmp / name, runner.chunks, meta, tokenizer=self.tokenizer)
            info: dict[str, Any] = {"trainable": runner.trainable, "step": runner.step}
            if runner.trainable:
                from megatron.core import dist_checkpointing

                was_offloaded = getattr(runner, "offloaded", False)
                if was_offloaded:  # optimizer state back on the device for the save, then away again
                    runner.onload()
                _prepare_adam_state(runner.optimizer)
                sd = {"optimizer": runner.optimizer.sharded_state_dict(
                    sharded_model_state(runner.modules()), metadata=dict(OPTIM_METADATA))}
                dist_checkpointing.save(sd, str(tmp / OPTIM_DIR / name))
                if was_offloaded:
                    runner.offload()
                info.update(
                    optimizer_step=optimizer_step(runner.optimizer),
                    scheduler=runner.scheduler.state_dict(),
                    distributed_optimizer=_is_distributed_optimizer(runner.optimizer),
                )
            runner_info[name] = info
        torch.save(rng_state(), tmp / RNG_DIR / f"rank{rank():05d}.pt")
        layout = _layout()
        _barrier()

        err = None
        if rank() == 0:
            try:
                seq = max((s for s in map(_read_seq, self._published()) if s is not None), default=0) + 1
                record = {"format": FORMAT, "tag": tag, "seq": seq, "time": time.time(), "layout": layout,
                          "runners": runner_info, "state": json.loads(state_json)}
                (tmp / STATE).write_text(json.dumps(record, indent=1) + "\n")
                self._write_manifest(tmp, tag, seq)
                self._publish(tmp, final)
                _write_atomic(self.root / LATEST, tag + "\n")
                self._prune(keep=final)
            except Exception as exc:  # noqa: BLE001 - re-raised on every rank
                err = exc
        _raise_if_error(err)
        _barrier()
        if rank() == 0:
            log.info("saved checkpoint %s in %.1fs", final, time.perf_counter() - t0)
        return final

    def _published(self) -> list[Path]:
        return [p for p in self.root.iterdir()
                if p.is_dir() and not p.name.startswith((TMP_PREFIX, TRASH_PREFIX))]

    @staticmethod
    def _write_manifest(tmp: Path, tag: str, seq: int) -> None:
        files = {}
        for f in _files(tmp):
            _fsync_path(f)  # every rank's files, before they are declared complete
            size = f.stat().st_size
            files[str(f.relative_to(tmp))] = {
                "size": size, "sha256": _sha256(f) if size <= CHECKSUM_MAX_BYTES else None,
            }
        manifest = {"format": FORMAT, "tag": tag, "seq": seq, "files": files}
        _write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=1) + "\n")

    @staticmethod
    def _publish(tmp: Path, final: Path) -> None:
        """Rename tmp to final; a previous checkpoint of the same tag is moved aside first."""
        trash = None
        if final.exists():
            trash = final.with_name(f"{TRASH_PREFIX}{final.name}-{os.getpid()}")
            os.rename(final, trash)
        os.rename(tmp, final)
        _fsync_path(final.parent)
        if trash is not None:
            shutil.rmtree(trash)

    def _prune(self, keep: Path) -> None:
        if self.keep_last == 0:
            return
        good = [p for _, p in self.checkpoints(warn=False)]
        for old in good[: max(len(good) - self.keep_last, 0)]:
            if old == keep:
                continue
            trash = old.with_name(f"{TRASH_PREFIX}{old.name}-{os.getpid()}")
            os.rename(old, trash)  # never leave a half-deleted directory that looks like a checkpoint
            shutil.rmtree(trash)
            log.info("deleted old checkpoint %s (keep_last=%d)", old, self.keep_last)

    # ---------------------------------------------------------------------------------- load
    def load(self, path: str | os.PathLike, runners: dict[str, ModelRunner], load_optimizer: bool = True) -> dict:
        """Restore what save() wrote into existing runners (built for the current layout, which may
        differ from the saved one) and return the saved `state`. Collective.

        Trainable runners get their optimizer, LR schedule and step back unless load_optimizer is
        False (then only weights: the optimizer's main parameters are refreshed from the model).
        RNG states are restored only when the parallel layout equals the saved one.
        """
        path = Path(path).absolute()
        reason = from_rank0(verify(path) if rank() == 0 else None)
        if reason is not None:
            raise CheckpointError(f"cannot load {path}: {reason}")
        record = json.loads((path / STATE).read_text())
        saved = record["runners"]
        missing = sorted(set(runners) - set(saved))
        if missing:
            raise CheckpointError(f"{path} has no runner(s) {missing}; it holds {sorted(saved)}")

        for name in sorted(runners):
            runner, info = runners[name], saved[name]
            load_model_checkpoint(path / name, runner.chunks)
            if not runner.trainable:
                continue
            if load_optimizer and info["trainable"]:
                was_offloaded = getattr(runner, "offloaded", False)
                if was_offloaded:
                    runner.onload()
                self._load_optimizer(path, name, runner, info)
                if was_offloaded:
                    runner.offload()
            else:
                if load_optimizer:
                    self._warn(f"{path}: runner {name!r} was saved frozen: its optimizer starts fresh")
                runner.optimizer.reload_model_params()

        layout = _layout()
        if record["layout"] == layout:
            set_rng_state(torch.load(path / RNG_DIR / f"rank{rank():05d}.pt", weights_only=False))
        else:
            self._warn(f"{path} was saved with layout {record['layout']}, this run has {layout}: "
                       "RNG states are not restored (the fresh seeds stay)")
        _barrier()
        if rank() == 0:
            log.info("loaded checkpoint %s (tag %s)", path, record["tag"])
        return record["state"]

    @staticmethod
    def _load_optimizer(path: Path, name: str, runner: ModelRunner, info: dict) -> None:
        from megatron.core import dist_checkpointing

        distributed = _is_distributed_optimizer(runner.optimizer)
        if distributed != info["distributed_optimizer"]:
            raise CheckpointError(
                f"{path}: runner {name!r} was saved with use_distributed_optimizer="
                f"{info['distributed_optimizer']}, this run has {distributed}: set "
                f"parallel.use_distributed_optimizer={str(info['distributed_optimizer']).lower()} "
                "or load weights only (load_optimizer=False)"
            )
        _prepare_adam_state(runner.optimizer)
        sd = {"optimizer": runner.optimizer.sharded_state_dict(
            sharded_model_state(runner.modules()), is_loading=True, metadata=dict(OPTIM_METADATA))}
        loaded = dist_checkpointing.load(sd, str(path / OPTIM_DIR / name))
        _load_optimizer_state(runner.optimizer, loaded["optimizer"])
        if info["optimizer_step"] is not None:
            _set_adam_step(runner.optimizer, info["optimizer_step"])
            got = optimizer_step(runner.optimizer)
            assert got in (None, info["optimizer_step"]), (got, info["optimizer_step"])
        runner.scheduler.num_steps = 0  # load_state_dict advances by the saved count
        runner.scheduler.load_state_dict(dict(info["scheduler"]))
        runner.step = info["step"]

