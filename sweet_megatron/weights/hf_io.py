"""Hugging Face Llama checkpoint directories: validated lazy reading and streamed sharded writing.

Reading never loads a whole tensor unless asked: `HFCheckpoint.reader()` returns an
`llama_mapping.HFReader` over `SafetensorsFile`, which reads byte ranges with positioned reads
(no mmap, so page-cache pages of the file never count against the process), so a tensor-parallel
rank reads only its rows, or its columns in bounded row blocks. Validation (config, shard files,
every tensor's name and shape) reads only the safetensors headers.

Writing (`StreamingSafetensorsWriter`) plans the files and their headers up front from the
names and shapes, then writes each tensor to disk as it arrives (nothing buffered), and the
`model.safetensors.index.json` at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from sweet_megatron.data.tokenizer import SPECIAL_TOKENS
from sweet_megatron.model import ModelConfig
from sweet_megatron.weights.llama_mapping import (
    HFReader,
    NotALlamaError,
    hf_config_from_model_config,
    hf_shapes,
    model_config_from_hf_config,
)

# Files that make up a Hugging Face tokenizer (whichever of them a checkpoint has).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
)
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class ConversionError(ValueError):
    """A conversion input or output that cannot work; the message says what and where."""


class HFCheckpoint:
    """A validated Hugging Face Llama directory (config.json + safetensors + tokenizer files)."""

    def __init__(self, path: str | os.PathLike, make_vocab_size_divisible_by: int = 128, seq_length: int | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConversionError(f"{self.path} is not a directory")
        cfg_file = self.path / "config.json"
        if not cfg_file.is_file():
            raise ConversionError(f"{self.path} is not a Hugging Face checkpoint: config.json is missing")
        try:
            self.hf_config: dict[str, Any] = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as exc:
            raise ConversionError(f"{cfg_file}: not valid JSON ({exc})") from exc
        try:
            self.cfg: ModelConfig = model_config_from_hf_config(
                self.hf_config, name=f"hf:{self.path.name}", seq_length=seq_length,
                make_vocab_size_divisible_by=make_vocab_size_divisible_by,
            )
        except (NotALlamaError, ValueError) as exc:
            raise ConversionError(f"{self.path} is not a supported Llama checkpoint: {exc}") from exc
        self._files: dict[Path, SafetensorsFile] = {}
        self.files = self._weight_files()
        self.index = self._read_headers()  # name -> (file, shape, dtype)
        self._validate_tensors()

    # -- validation ----------------------------------------------------------------------------

    def _weight_files(self) -> dict[str, Path]:
        """{tensor name: file} from the index, or {None-marker} for a single file."""
        index = self.path / INDEX_FILE
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map")
            if not weight_map:
                raise ConversionError(f"{index} has no weight_map")
            missing = sorted({f for f in weight_map.values() if not (self.path / f).is_file()})
            if missing:
                raise ConversionError(f"{self.path}: shard files listed in {INDEX_FILE} are missing: {missing}")
            return {name: self.path / f for name, f in weight_map.items()}
        single = self.path / SINGLE_FILE
        if single.is_file():
            return {"": single}
        if list(self.path.glob("*.bin")) or list(self.path.glob("*.pt")):
            raise ConversionError(f"{self.path}: only safetensors weights are supported (found .bin/.pt files)")
        raise ConversionError(f"{self.path}: no {SINGLE_FILE} and no {INDEX_FILE}")

    def _read_headers(self) -> dict[str, tuple[Path, tuple[int, ...], str]]:
        out = {}
        for file in sorted(set(self.files.values())):
            self._files[file] = SafetensorsFile(file)
            out.update({name: (file, shape, dt) for name, (dt, shape, _) in self._files[file].tensors.items()})
        if "" not in self.files:
            absent = sorted(n for n, f in self.files.items() if n not in out)
            if absent:
                raise ConversionError(f"{self.path}: tensors in the index but not in their files: {absent[:5]}")
        return out

    def _validate_tensors(self) -> None:
        expected = hf_shapes(self.cfg)  # no lm_head when config.json ties the embeddings
        missing = [n for n in expected if n not in self.index]
        if missing:
            raise ConversionError(f"{self.path}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        bad = [f"{n}: {self.index[n][1]} (config says {s})" for n, s in expected.items() if self.index[n][1] != s]
        if bad:
            raise ConversionError(f"{self.path}: tensor shapes do not match config.json: {bad[:5]}")
        # A tied checkpoint may still carry its (equal) lm_head copy: the shared matrix is the embedding.
        extra = [n for n in self.index if n not in expected and not n.endswith("rotary_emb.inv_freq")
                 and not (self.cfg.tie_embeddings and n == "lm_head.weight")]
        if extra:
            raise ConversionError(f"{self.path}: unexpected tensors for a Llama model: {extra[:5]}")

    # -- reading --------------------------------------------------------------------------------

    def dtype(self) -> torch.dtype:
        """The checkpoint's dtype (of the embedding)."""
        return _SAFETENSORS_DTYPES[self.index["model.embed_tokens.weight"][2]]

    def tokenizer_files(self) -> list[Path]:
        return [self.path / f for f in TOKENIZER_FILES if (self.path / f).is_file()]

    def reader(self) -> HFReader:
        """An HFReader that reads only the requested rows (columns: in bounded row blocks) of a tensor."""

        def read(name: str, rows: slice | None = None, cols: slice | None = None) -> torch.Tensor:
            return self._files[self.index[name][0]].read(name, rows, cols)

        return read


class SafetensorsFile:
    """A safetensors file read with plain positioned reads (no mmap), so a process's memory holds
    only what it asked for: `read(name, rows, cols)` reads just those rows; a column slice is read in
    row blocks of at most `block_bytes`. Format: 8-byte little-endian header size, a JSON header
    {name: {dtype, shape, data_offsets: [begin, end)}}, then the data."""

    def __init__(self, path: str | os.PathLike, block_bytes: int = 64 * 2**20):
        self.path = Path(path)
        self.block_bytes = block_bytes
        try:
            with open(self.path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
        except (OSError, struct.error, ValueError) as exc:
            raise ConversionError(f"{self.path}: cannot read safetensors header ({exc})") from exc
        self._data_start = 8 + n
        header.pop("__metadata__", None)
        self.tensors: dict[str, tuple[str, tuple[int, ...], int]] = {}
        for name, info in header.items():
            if info["dtype"] not in _SAFETENSORS_DTYPES:
                raise ConversionError(f"{self.path}: {name} has unsupported dtype {info['dtype']}")
            self.tensors[name] = (info["dtype"], tuple(info["shape"]), info["data_offsets"][0])

    def read(self, name: str, rows: slice | None = None, cols: slice | None = None) -> torch.Tensor:
        dt, shape, begin = self.tensors[name]
        dtype = _SAFETENSORS_DTYPES[dt]
        item = torch.empty((), dtype=dtype).element_size()
        row_numel = 1
        for d in shape[1:]:
            row_numel *= d
        r0, r1, _ = (rows or slice(None)).indices(shape[0])
        with open(self.path, "rb") as f:
            if cols is None:
                return self._read_rows(f, begin, r0, r1, row_numel, item, dtype).view(r1 - r0, *shape[1:])
            c0, c1, _ = cols.indices(shape[1])
            out = torch.empty((r1 - r0, c1 - c0, *shape[2:]), dtype=dtype)
            step = max(1, self.block_bytes // (row_numel * item))
            for a in range(r0, r1, step):
                b = min(a + step, r1)
                block = self._read_rows(f, begin, a, b, row_numel, item, dtype).view(b - a, *shape[1:])
                out[a - r0 : b - r0] = block[:, c0:c1]
            return out

    def _read_rows(self, f, begin: int, r0: int, r1: int, row_numel: int, item: int, dtype) -> torch.Tensor:
        nbytes = (r1 - r0) * row_numel * item
        buf = bytearray(nbytes)
        f.seek(self._data_start + begin + r0 * row_numel * item)
        if f.readinto(buf) != nbytes:
            raise ConversionError(f"{self.path}: truncated file")
        return torch.frombuffer(buf, dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)


_SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}


_DTYPE_NAMES = {v: k for k, v in _SAFETENSORS_DTYPES.items()}


class StreamingSafetensorsWriter:
    """Writes a planned sequence of tensors straight to sharded safetensors files, one tensor at a time.

    plan: [(name, shape)] in the order `add` will be called; every tensor has `dtype`. The files
    (at most ~max_shard_bytes each, named model-XXXXX-of-NNNNN.safetensors) and their headers are
    fixed up front, so each tensor goes to disk as it arrives and nothing is buffered: memory is
    one tensor. `close()` writes model.safetensors.index.json. The output is the standard format
    (`safetensors.safe_open` and transformers read it).
    """

    def __init__(self, out_dir: str | os.PathLike, plan: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype,
                 max_shard_bytes: int = 2 * 2**30):
        self.out = Path(out_dir)
        self.dtype = dtype
        item = torch.empty((), dtype=dtype).element_size()
        files: list[list[tuple[str, tuple[int, ...], int]]] = [[]]
        size = 0
        for name, shape in plan:
            nbytes = item * int(torch.Size(shape).numel())
            if files[-1] and size + nbytes > max_shard_bytes:
                files.append([])
                size = 0
            files[-1].append((name, tuple(shape), nbytes))
            size += nbytes
        n = len(files)
        self._order = [name for name, _ in plan]
        self._file_of: dict[str, int] = {}
        self._headers: list[bytes] = []
        self.weight_map: dict[str, str] = {}
        for i, entries in enumerate(files):
            header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
            offset = 0
            for name, shape, nbytes in entries:
                header[name] = {"dtype": _DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
                self._file_of[name] = i
                self.weight_map[name] = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
            self._headers.append(struct.pack("<Q", len(raw)) + raw)
        self._next = 0
        self._fh = None
        self._open_index = -1
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if self._next >= len(self._order) or name != self._order[self._next]:
            expected = self._order[self._next] if self._next < len(self._order) else "nothing"
            raise ValueError(f"StreamingSafetensorsWriter: got {name}, the plan expects {expected}")
        i = self._file_of[name]
        if i != self._open_index:
            if self._fh is not None:
                self._fh.close()
            self._fh = open(self.out / self.weight_map[name], "wb")
            self._fh.write(self._headers[i])
            self._open_index = i
        t = tensor.detach().to(self.dtype).contiguous().cpu()
        self._fh.write(memoryview(t.view(torch.uint8).reshape(-1).numpy()))
        self.total_bytes += t.numel() * t.element_size()
        self._next += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._next != len(self._order):
            raise ValueError(f"StreamingSafetensorsWriter: {len(self._order) - self._next} planned tensors never came")
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": self.weight_map}
        (self.out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


class McoreCheckpointReader:
    """Reads regions of the tensors of a megatron dist_checkpointing (torch_dist) directory.

    No process group: torch DCP reads with a planner that asks for one region per key, so a layer
    of a layer-stacked key ([L, ...], megatron's layout for `decoder.layers.*`) costs one layer.
    """

    def __init__(self, path: str | os.PathLike):
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.path = Path(path)
        backend = self.path / "metadata.json"
        if not backend.is_file():
            raise ConversionError(f"{self.path} is not a megatron dist_checkpointing directory (metadata.json missing)")
        kind = json.loads(backend.read_text()).get("sharded_backend")
        if kind != "torch_dist":
            raise ConversionError(f"{self.path}: sharded_backend={kind!r}; only 'torch_dist' checkpoints are supported")
        self._reader = FileSystemReader(str(self.path))
        md = self._reader.read_metadata().state_dict_metadata
        tensors = {k: v for k, v in md.items() if isinstance(v, TensorStorageMetadata)}
        self.shapes = {k: tuple(v.size) for k, v in tensors.items()}
        self.dtypes = {k: v.properties.dtype for k, v in tensors.items()}

    def read(self, requests: dict[str, tuple[str, int | None]]) -> dict[str, torch.Tensor]:
        """{name: (checkpoint key, layer or None)} -> {name: tensor}: layer `i` of a stacked key
        (its shape without the leading L) or the whole tensor of an unstacked one."""
        import torch.distributed.checkpoint as dcp

        buffers, offsets = {}, {}
        for name, (key, layer) in requests.items():
            shape = self.shapes[key]
            if layer is None:
                buffers[name] = torch.empty(shape, dtype=self.dtypes[key])
                offsets[name] = (key, (0,) * len(shape))
            else:
                buffers[name] = torch.empty((1, *shape[1:]), dtype=self.dtypes[key])
                offsets[name] = (key, (layer,) + (0,) * (len(shape) - 1))
        dcp.load(buffers, storage_reader=self._reader, planner=_RegionPlanner(offsets), no_dist=True)
        return {name: t[0] if requests[name][1] is not None else t for name, t in buffers.items()}


def _region_planner_class():
    from torch.distributed.checkpoint import DefaultLoadPlanner
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex
    from torch.distributed.checkpoint.planner import LoadPlan
    from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

    class RegionPlanner(DefaultLoadPlanner):
        """Loads state_dict[name] from the region of checkpoint key `key` starting at `offset`."""

        def __init__(self, regions: dict[str, tuple[str, tuple[int, ...]]]):
            super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
            self.regions = regions

        def create_local_plan(self) -> LoadPlan:
            items = []
            for name, tensor in self.state_dict.items():
                key, offset = self.regions[name]
                chunk = ChunkStorageMetadata(offsets=torch.Size(offset), sizes=tensor.size())
                for item in create_read_items_for_chunk_list(key, self.metadata.state_dict_metadata[key], [chunk]):
                    # read items name the checkpoint key; our (plain-tensor) buffer is state_dict[name]
                    items.append(dataclasses.replace(item, dest_index=MetadataIndex(name)))
            return LoadPlan(items)

    return RegionPlanner


def _RegionPlanner(regions):  # noqa: N802 - a class built lazily (torch.distributed.checkpoint import)
    return _region_planner_class()(regions)


def write_random_llama(out_dir: str | os.PathLike, cfg: ModelConfig, dtype: torch.dtype = torch.bfloat16,
                       seed: int = 0, std: float = 0.02) -> int:
    """A random Llama checkpoint directory written one layer per safetensors file (for benchmarks):
    config.json, sharded safetensors + index, and a placeholder word-level tokenizer. Never holds
    more than one layer in memory. Returns the bytes of weights written."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    groups: list[list[str]] = [["model.embed_tokens.weight"]]
    groups += [[n for n in hf_shapes(cfg) if n.startswith(f"model.layers.{i}.")] for i in range(cfg.num_layers)]
    groups += [["model.norm.weight", "lm_head.weight"]]
    shapes = hf_shapes(cfg)
    weight_map, total = {}, 0
    for k, names in enumerate(groups, start=1):
        fname = f"model-{k:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for n in names:
            t = torch.randn(shapes[n], generator=g) * std if len(shapes[n]) == 2 else torch.rand(shapes[n], generator=g) + 0.5
            tensors[n] = t.to(dtype)
            total += tensors[n].numel() * tensors[n].element_size()
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in names})
        del tensors
    (out / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (out / "config.json").write_text(hf_config_from_model_config(cfg, dtype=dtype).to_json_string())
    write_placeholder_tokenizer(out)
    return total


def write_placeholder_tokenizer(out_dir: str | os.PathLike, num_words: int = 50) -> None:
    """A word-level HF tokenizer with the Llama-3 chat specials (a stand-in for tests and benchmarks)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"w{i}": len(SPECIAL_TOKENS) + i for i in range(num_words)})
    vocab["<unk>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<|begin_of_text|>",
                            eos_token="<|end_of_text|>").save_pretrained(str(out_dir))
