"""`sweet-convert`: Hugging Face Llama-3.x <-> megatron checkpoints, streamed with bounded memory.

    sweet-convert hf-to-mcore --hf-dir IN --out OUT --tp N --pp N [--vpp N] [--dtype auto]
    sweet-convert mcore-to-hf --ckpt IN --out OUT [--max-shard-size 2GB]
    sweet-convert llama3-tokenizer [--tiktoken tokenizer.model] --out DIR

llama3-tokenizer writes a Hugging Face tokenizer directory from Meta's Llama-3 tiktoken file
(data/llama3.py; default: the file in the installed llama-models package), for tokenizer.kind=hf.

hf-to-mcore writes the model checkpoint of `checkpoint/model_io.py` (a dist_checkpointing
directory of the chunks' `sharded_state_dict()`, `sweet_meta.json`, `tokenizer/`), laid out for
TP x PP (x VPP): it runs tp*pp worker processes (forked here, or the ranks of a torchrun/srun
launch with WORLD_SIZE = tp*pp, which spreads them over nodes). Each worker builds its megatron
chunks in the target dtype, fills each parameter with its TP shard read straight from the
safetensors files (`safe_open(...).get_slice`: only the rows/columns it owns) and saves
collectively (megatron's random init is skipped: everything is overwritten). Memory bound, per
worker: its shard of the model (model_bytes / (tp*pp) plus the replicated norms and, on the
first/last stage, the embedding/output shards) + one TP slice being copied + ~0.4 GB of
imports; per host:
the sum over the workers it runs, i.e. about model_bytes when all tp*pp run on one host (launch
under torchrun on several nodes to divide it). No process ever reads a tensor it does not own.

mcore-to-hf runs in one process, needs no process group, and never holds more than one layer: for
each layer it reads just that layer's region of the stacked checkpoint tensors (torch DCP reads
with a region planner: any saved TP/PP layout), maps them with `llama_mapping.to_hf`, and hands
them to a safetensors writer that streams each tensor straight into its (pre-planned) file of at
most `--max-shard-size` bytes. Bound: one layer as read + one re-laid-out tensor, over ~0.4 GB of
imports; independent of the model's depth and of the shard size.

Both write to `<out>.tmp-<pid>` and rename at the end; an existing `<out>` is refused. Errors in
the input (not a Llama directory, shapes that do not match config.json, a missing shard file)
are reported before any work with a non-zero exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sweet_megatron import model as model_module
from sweet_megatron.checkpoint.model_io import (
    TokenizerSource,
    checkpoint_meta,
    model_config_from_meta,
    read_meta,
    save_model_checkpoint,
)
from sweet_megatron.checkpoint.workers import WorkerError, peak_rss_bytes, rss_bytes, run_local_workers
from sweet_megatron.data.llama3 import write_llama3_hf_tokenizer
from sweet_megatron.model import ModelConfig
from sweet_megatron.parallel import LayoutError, ParallelConfig, initialize
from sweet_megatron.weights.hf_io import (
    ConversionError,
    HFCheckpoint,
    McoreCheckpointReader,
    StreamingSafetensorsWriter,
)
from sweet_megatron.weights.llama_mapping import (
    hf_config_from_model_config,
    hf_shapes,
    hf_to_mcore_shard,
    mcore_shard_shape,
    to_hf,
    weight_specs,
)
from sweet_megatron.weights.resharding import local_weights

log = logging.getLogger("sweet_megatron.convert")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---------------------------------------------------------------------------------------------
# HF -> megatron


@dataclasses.dataclass
class HfToMcoreJob:
    hf_dir: str
    out: str
    tp: int
    pp: int
    vpp: int | None
    dtype: str
    make_vocab_size_divisible_by: int
    seq_length: int | None


def hf_to_mcore(job: HfToMcoreJob) -> dict[str, Any]:
    """Convert; returns {"out": path, "peak_rss": [bytes per worker], "model_bytes": ...}."""
    out = Path(job.out).absolute()
    if out.exists():
        raise ConversionError(f"{out} exists: refusing to overwrite it (choose a new --out)")
    hf = HFCheckpoint(job.hf_dir, job.make_vocab_size_divisible_by, job.seq_length)  # validates headers only
    try:
        pc = ParallelConfig(tensor_parallel=job.tp, pipeline_parallel=job.pp, virtual_pipeline=job.vpp)
        pc.validate(job.tp * job.pp, hf.cfg, "local")
    except LayoutError as exc:
        raise ConversionError(f"layout --tp {job.tp} --pp {job.pp} --vpp {job.vpp} does not fit the model: {exc}") from exc
    if not hf.tokenizer_files():
        raise ConversionError(f"{hf.path}: no tokenizer files ({', '.join(TOKENIZER_FILES_HINT)})")
    world = job.tp * job.pp
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    if env_world > 1:  # launched by torchrun / srun: this process is one worker
        if env_world != world:
            raise ConversionError(f"launched with WORLD_SIZE={env_world}; hf-to-mcore needs tp*pp = {world} ranks")
        results = [_hf_to_mcore_worker(int(os.environ["RANK"]), world, job)]
    else:
        try:
            results = run_local_workers(_hf_to_mcore_worker, world, (job,))
        except WorkerError as exc:
            raise ConversionError(str(exc)) from exc
    return {"out": str(out), "peak_rss": [r[0] for r in results], "baseline_rss": [r[1] for r in results],
            "model_bytes": _hf_bytes(hf), "launcher_peak_rss": peak_rss_bytes()}


TOKENIZER_FILES_HINT = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def _hf_bytes(hf: HFCheckpoint) -> int:
    size = {"F32": 4, "BF16": 2, "F16": 2, "F64": 8}
    total = 0
    for _, shape, dt in hf.index.values():
        n = 1
        for d in shape:
            n *= d
        total += n * size.get(dt, 4)
    return total


def _hf_to_mcore_worker(rank: int, world: int, job: HfToMcoreJob) -> tuple[int, int]:
    """Returns (peak RSS, RSS after imports and process-group set-up) in bytes."""
    from megatron.core import parallel_state as ps

    hf = HFCheckpoint(job.hf_dir, job.make_vocab_size_divisible_by, job.seq_length)
    dtype = hf.dtype() if job.dtype == "auto" else DTYPES[job.dtype]
    pc = ParallelConfig(tensor_parallel=job.tp, pipeline_parallel=job.pp, virtual_pipeline=job.vpp)
    platform = initialize(pc)
    baseline = rss_bytes()
    # Parameters in the checkpoint's dtype (not the platform's fp32) so that a bf16 model stays bf16.
    chunks = _build_uninitialised(hf.cfg, pc, dataclasses.replace(platform, params_dtype=dtype))
    read = hf.reader()
    tp_rank = ps.get_tensor_model_parallel_rank()
    with torch.no_grad():
        for spec, param in local_weights(chunks).values():
            shard = hf_to_mcore_shard(spec, read, hf.cfg, tp_rank, job.tp)
            if shard.shape != param.shape:
                raise ConversionError(f"{spec.mcore_name}: shard {tuple(shard.shape)} != parameter {tuple(param.shape)}")
            param.copy_(shard)
            del shard
    meta = checkpoint_meta(
        hf.cfg, source={"hf_dir": str(hf.path.absolute())}, dtype=str(dtype).removeprefix("torch."),
        saved_layout={"tensor_parallel": job.tp, "pipeline_parallel": job.pp, "virtual_pipeline": job.vpp},
    )
    save_model_checkpoint(job.out, chunks, meta, TokenizerSource("hf", hf.tokenizer_files()))
    return peak_rss_bytes(), baseline


def _build_uninitialised(cfg: ModelConfig, pc, platform) -> list[torch.nn.Module]:
    """`build_model` without megatron's random init: every parameter is overwritten from the HF
    files, and megatron's CPU init would draw each matrix full-size in fp32 (the whole embedding
    on the first stage) before splitting it: time and memory for nothing. If model.py stops
    calling `transformer_config` this silently falls back to a normal (initialised) build."""
    original = model_module.transformer_config

    def without_init(*args, **kwargs):
        return dataclasses.replace(original(*args, **kwargs), perform_initialization=False)

    model_module.transformer_config = without_init
    try:
        return model_module.build_model(cfg, pc, platform)
    finally:
        model_module.transformer_config = original


# ---------------------------------------------------------------------------------------------
# megatron -> HF


@dataclasses.dataclass
class McoreToHfJob:
    ckpt: str
    out: str
    max_shard_bytes: int = 2 * 2**30
    dtype: str = "auto"


def mcore_to_hf(job: McoreToHfJob) -> dict[str, Any]:
    """Convert a model checkpoint to a HF directory; returns {"out", "peak_rss", "model_bytes"}."""
    ckpt, out = Path(job.ckpt).absolute(), Path(job.out).absolute()
    if out.exists():
        raise ConversionError(f"{out} exists: refusing to overwrite it (choose a new --out)")
    if not ckpt.is_dir():
        raise ConversionError(f"{ckpt} is not a directory")
    try:
        meta = read_meta(ckpt)
        cfg = model_config_from_meta(meta)
    except (FileNotFoundError, KeyError, TypeError, ValueError) as exc:
        raise ConversionError(f"{ckpt} is not a sweet-megatron model checkpoint: {exc}") from exc
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    import torch.distributed.checkpoint  # noqa: F401 - imported before the baseline is taken

    baseline = rss_bytes()
    try:
        total = _write_hf(ckpt, tmp, cfg, meta, job)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "peak_rss": [peak_rss_bytes()], "baseline_rss": [baseline], "model_bytes": total}


def _stacked_key(spec_name: str) -> tuple[str, int | None]:
    """Checkpoint key and layer of a global megatron name (checkpoint keys stack the layers)."""
    parts = spec_name.split(".")
    if spec_name.startswith("decoder.layers."):
        return "decoder.layers." + ".".join(parts[3:]), int(parts[2])
    return spec_name, None


_CKPT_ALIASES = {  # megatron checkpoint keys use the Transformer Engine names for the fused norms
    "decoder.layers.input_layernorm.weight": "decoder.layers.self_attention.linear_qkv.layer_norm_weight",
    "decoder.layers.pre_mlp_layernorm.weight": "decoder.layers.mlp.linear_fc1.layer_norm_weight",
}


def _write_hf(ckpt: Path, tmp: Path, cfg: ModelConfig, meta: dict[str, Any], job: McoreToHfJob) -> int:
    reader = McoreCheckpointReader(ckpt)
    keys = {}
    for spec in weight_specs(cfg):
        key, layer = _stacked_key(spec.mcore_name)
        key = key if key in reader.shapes else _CKPT_ALIASES.get(key, key)
        if key not in reader.shapes:
            raise ConversionError(f"{ckpt}: checkpoint lacks {key!r}")
        keys[spec.mcore_name] = (key, layer)
    dtype = reader.dtypes["embedding.word_embeddings.weight"] if job.dtype == "auto" else DTYPES[job.dtype]

    # Groups of weights read together: the embedding, each layer, the final norm + output layer.
    groups: list[list] = [[]]
    for spec in weight_specs(cfg):
        if groups[-1] and spec.layer != groups[-1][-1].layer:
            groups.append([])
        groups[-1].append(spec)
    shapes = hf_shapes(cfg)
    plan = [(name, shapes[name]) for spec in weight_specs(cfg) for name in spec.hf_names]
    writer = StreamingSafetensorsWriter(tmp, plan, dtype, job.max_shard_bytes)
    for group in groups:
        loaded = reader.read({spec.mcore_name: keys[spec.mcore_name] for spec in group})
        for spec in group:
            _check_shape(spec, loaded[spec.mcore_name], cfg)
            for name, t in to_hf(spec, loaded[spec.mcore_name].unsqueeze(0), cfg):
                writer.add(name, t.to(dtype))
        del loaded
    writer.close()
    hf_cfg = hf_config_from_model_config(cfg, dtype=dtype)
    (tmp / "config.json").write_text(hf_cfg.to_json_string())
    _copy_tokenizer(ckpt, tmp, meta)
    return writer.total_bytes


def _check_shape(spec, t: torch.Tensor, cfg: ModelConfig) -> None:
    expected = mcore_shard_shape(spec, cfg, 1)
    if spec.kind == "vocab":  # saved with some TP's padding: at least the true vocabulary
        ok = t.shape[1:] == expected[1:] and t.shape[0] >= cfg.vocab_size
    else:
        ok = tuple(t.shape) == expected
    if not ok:
        raise ConversionError(f"{spec.mcore_name}: checkpoint shape {tuple(t.shape)} does not match the model config {expected}")


def _copy_tokenizer(ckpt: Path, out: Path, meta: dict[str, Any]) -> None:
    tok = meta.get("tokenizer")
    if not tok:
        log.warning("%s records no tokenizer: the HF directory will have none", ckpt)
        return
    src = ckpt / tok["path"]
    files = sorted(src.iterdir()) if src.is_dir() else [src]
    for f in files:
        shutil.copy2(f, out / f.name)
    if tok["kind"] != "hf":
        log.warning("tokenizer kind %r copied as is (%s): transformers' AutoTokenizer will not load it",
                    tok["kind"], ", ".join(f.name for f in files))


# ---------------------------------------------------------------------------------------------
# CLI


def _size(text: str) -> int:
    units = {"KB": 2**10, "MB": 2**20, "GB": 2**30, "K": 2**10, "M": 2**20, "G": 2**30, "B": 1}
    t = text.strip().upper()
    for u in sorted(units, key=len, reverse=True):
        if t.endswith(u):
            return int(float(t[: -len(u)]) * units[u])
    return int(t)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweet-convert", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("hf-to-mcore", help="Hugging Face Llama directory -> megatron model checkpoint")
    a.add_argument("--hf-dir", required=True, help="config.json + safetensors (single or sharded) + tokenizer files")
    a.add_argument("--out", required=True, help="new checkpoint directory (must not exist)")
    a.add_argument("--tp", type=int, default=1, help="tensor parallel size to lay the checkpoint out for")
    a.add_argument("--pp", type=int, default=1, help="pipeline parallel size")
    a.add_argument("--vpp", type=int, default=None, help="virtual pipeline stages per rank (optional)")
    a.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="'auto': the checkpoint's dtype")
    a.add_argument("--make-vocab-size-divisible-by", type=int, default=128,
                   help="vocab padding multiple (times --tp), megatron's default 128")
    a.add_argument("--seq-length", type=int, default=None, help="training sequence length to record (default min(max_position_embeddings, 8192))")
    b = sub.add_parser("mcore-to-hf", help="megatron model checkpoint -> Hugging Face Llama directory")
    b.add_argument("--ckpt", required=True, help="a checkpoint written by hf-to-mcore or sweet-train")
    b.add_argument("--out", required=True, help="new HF directory (must not exist)")
    b.add_argument("--max-shard-size", type=_size, default=2 * 2**30, help="safetensors file size, e.g. 2GB")
    b.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="'auto': the checkpoint's dtype")
    c = sub.add_parser("llama3-tokenizer", help="Meta's Llama-3 tokenizer.model (tiktoken) -> Hugging Face tokenizer directory")
    c.add_argument("--tiktoken", default=None,
                   help="Meta's tokenizer.model (default: llama_models/llama3/tokenizer.model of the installed llama-models)")
    c.add_argument("--out", required=True, help="new tokenizer directory (must not exist)")
    return p


def _llama3_tokenizer(args: argparse.Namespace) -> int:
    try:
        out = write_llama3_hf_tokenizer(args.out, args.tiktoken)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"sweet-convert: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out.absolute())}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "llama3-tokenizer":
        return _llama3_tokenizer(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.time()
    try:
        if args.command == "hf-to-mcore":
            result = hf_to_mcore(HfToMcoreJob(args.hf_dir, args.out, args.tp, args.pp, args.vpp, args.dtype,
                                              args.make_vocab_size_divisible_by, args.seq_length))
        else:
            result = mcore_to_hf(McoreToHfJob(args.ckpt, args.out, args.max_shard_size, args.dtype))
    except ConversionError as exc:
        print(f"sweet-convert: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun every rank converts; rank 0 reports
        return 0
    gib = 2**30
    print(json.dumps({
        "out": result["out"],
        "seconds": round(time.time() - start, 1),
        "model_gib": round(result["model_bytes"] / gib, 3),
        "peak_rss_gib_per_process": [round(r / gib, 3) for r in result["peak_rss"]],
        "baseline_rss_gib_per_process": [round(r / gib, 3) for r in result["baseline_rss"]],
        **({"launcher_peak_rss_gib": round(result["launcher_peak_rss"] / gib, 3)} if "launcher_peak_rss" in result else {}),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
