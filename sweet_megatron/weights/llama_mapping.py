"""The one mapping between megatron-core's Llama parameters and Hugging Face's `LlamaForCausalLM`.

Used by rollout weight resharding (megatron TP shards -> full HF tensors) and by checkpoint
conversion (both directions). Everything here is a pure function of tensors and a `ModelConfig`:
no communication, no files.

Shape legend: V vocab (true), Vp vocab padded for TP (`cfg.padded_vocab_size(T)`), H hidden,
F ffn hidden (per gate and per up), G query groups (KV heads), Q query heads per group,
D head dim, T tensor-parallel size, r tensor-parallel rank.

Layout facts (checked against transformers to 0.0 in fp32; see shared/FINDINGS.md):
- `linear_qkv` [G*(Q+2)*D, H] is grouped per query group: each group holds its Q query heads,
  then its key head, then its value head. TP shard r holds groups [r*G/T, (r+1)*G/T).
- `linear_fc1` [2F, H] is [gate; up] *per TP shard*: shard r is [gate_r; up_r].
- `linear_proj` and `linear_fc2` are row-parallel: TP shards split the input dim (dim 1).
- `word_embeddings` and `output_layer` are vocab-parallel [Vp/T, H] shards; rows >= V are padding,
  dropped on export and zero-filled on import.
- Norms are replicated.

Names: megatron's local spec says `input_layernorm` / `pre_mlp_layernorm`; the Transformer Engine
spec (and megatron's checkpoint keys) fuse them as `linear_qkv.layer_norm_weight` /
`linear_fc1.layer_norm_weight`. Both are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from sweet_megatron.model import ModelConfig

Kind = Literal["replicated", "qkv", "fc1", "row", "vocab"]

# Llama-3.1 rope scaling constants that megatron-core hard-codes (rotary_pos_embedding._apply_scaling).
ROPE_LOW_FREQ_FACTOR = 1.0
ROPE_HIGH_FREQ_FACTOR = 4.0
ROPE_ORIGINAL_MAX_POSITIONS = 8192

# Reads (a slice of) a named HF tensor: read(name, rows, cols) -> Tensor. `rows`/`cols` slice
# dims 0/1 (None = all), so a safetensors reader loads only what one TP rank needs.
HFReader = Callable[[str, "slice | None", "slice | None"], torch.Tensor]


@dataclass(frozen=True)
class WeightSpec:
    """One megatron parameter and the HF tensors it corresponds to."""

    mcore_name: str
    """Global megatron name, local-spec form (layer index is the global one)."""
    kind: Kind
    hf_names: tuple[str, ...]
    """HF names in the order `to_hf` returns them: (q, k, v) for qkv, (gate, up) for fc1."""
    layer: int | None = None
    """Global layer index, None for embedding / final norm / output layer."""


_LAYER_RE = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")

# megatron suffix inside a layer -> (kind, HF suffixes inside `model.layers.{i}.`)
_LAYER_PARAMS: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "input_layernorm.weight": ("replicated", ("input_layernorm.weight",)),
    "self_attention.linear_qkv.weight": (
        "qkv", ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight")
    ),
    "self_attention.linear_proj.weight": ("row", ("self_attn.o_proj.weight",)),
    "pre_mlp_layernorm.weight": ("replicated", ("post_attention_layernorm.weight",)),
    "mlp.linear_fc1.weight": ("fc1", ("mlp.gate_proj.weight", "mlp.up_proj.weight")),
    "mlp.linear_fc2.weight": ("row", ("mlp.down_proj.weight",)),
}
# Transformer Engine spec names (and megatron checkpoint keys) for the fused norms.
_TE_ALIASES = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
}
_GLOBAL_PARAMS: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "embedding.word_embeddings.weight": ("vocab", ("model.embed_tokens.weight",)),
    "decoder.final_layernorm.weight": ("replicated", ("model.norm.weight",)),
    "output_layer.weight": ("vocab", ("lm_head.weight",)),
}


def parse_mcore_name(name: str, layer_offset: int = 0) -> WeightSpec:
    """The spec of a megatron parameter name (local or TE spec naming).

    `layer_offset` turns a model chunk's local layer index into the global one (pipeline stages
    number their layers from 0). Raises KeyError for names that are not Llama weights.
    """
    name = name.removeprefix("module.")
    if name in _GLOBAL_PARAMS:
        kind, hf = _GLOBAL_PARAMS[name]
        return WeightSpec(name, kind, hf)
    m = _LAYER_RE.match(name)
    if m is None:
        raise KeyError(f"{name!r} is not a megatron Llama weight")
    layer = int(m.group(1)) + layer_offset
    suffix = _TE_ALIASES.get(m.group(2), m.group(2))
    if suffix not in _LAYER_PARAMS:
        raise KeyError(f"{name!r} is not a megatron Llama weight (unknown layer parameter {m.group(2)!r})")
    kind, hf = _LAYER_PARAMS[suffix]
    return WeightSpec(f"decoder.layers.{layer}.{suffix}", kind, tuple(f"model.layers.{layer}.{s}" for s in hf), layer)


def weight_specs(cfg: ModelConfig) -> list[WeightSpec]:
    """Every weight of the model in canonical order: embedding, layers 0..L-1, final norm, output."""
    names = ["embedding.word_embeddings.weight"]
    names += [f"decoder.layers.{i}.{s}" for i in range(cfg.num_layers) for s in _LAYER_PARAMS]
    names += ["decoder.final_layernorm.weight"] + ([] if cfg.tie_embeddings else ["output_layer.weight"])
    return [parse_mcore_name(n) for n in names]


def hf_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Expected HF tensor shapes, in canonical order."""
    H, F, V = cfg.hidden_size, cfg.ffn_hidden_size, _vocab(cfg)
    qd, kvd = cfg.num_attention_heads * cfg.head_dim, cfg.num_query_groups * cfg.head_dim
    per_layer = {
        "input_layernorm.weight": (H,),
        "self_attn.q_proj.weight": (qd, H),
        "self_attn.k_proj.weight": (kvd, H),
        "self_attn.v_proj.weight": (kvd, H),
        "self_attn.o_proj.weight": (H, qd),
        "post_attention_layernorm.weight": (H,),
        "mlp.gate_proj.weight": (F, H),
        "mlp.up_proj.weight": (F, H),
        "mlp.down_proj.weight": (H, F),
    }
    shapes = {"model.embed_tokens.weight": (V, H)}
    for i in range(cfg.num_layers):
        shapes.update({f"model.layers.{i}.{k}": v for k, v in per_layer.items()})
    shapes["model.norm.weight"] = (H,)
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (V, H)
    return shapes


def mcore_shard_shape(spec: WeightSpec, cfg: ModelConfig, tp: int) -> tuple[int, ...]:
    """Shape of one TP shard of a megatron parameter."""
    H, F = cfg.hidden_size, cfg.ffn_hidden_size
    G, Q, D = cfg.num_query_groups, cfg.num_attention_heads // cfg.num_query_groups, cfg.head_dim
    if spec.kind == "replicated":
        return (H,)
    if spec.kind == "qkv":
        return (G // tp * (Q + 2) * D, H)
    if spec.kind == "fc1":
        return (2 * F // tp, H)
    if spec.kind == "vocab":
        return (cfg.padded_vocab_size(tp) // tp, H)
    if spec.mcore_name.endswith("linear_proj.weight"):
        return (H, cfg.num_attention_heads * D // tp)
    return (H, F // tp)  # linear_fc2


def _vocab(cfg: ModelConfig) -> int:
    if cfg.vocab_size is None:
        raise ValueError("model.vocab_size is unset: the mapping needs the true vocabulary size")
    return cfg.vocab_size


# ---------------------------------------------------------------------------------------------
# megatron -> HF


def to_hf_views(spec: WeightSpec, shards: torch.Tensor, cfg: ModelConfig) -> list[tuple[str, torch.Tensor]]:
    """HF tensors from all TP shards of one parameter, without copying.

    shards: [T, *shard_shape] (TP rank order; `param.unsqueeze(0)` at T=1).
    Returns (hf_name, view) pairs whose views hold the HF tensor's elements in row-major order but
    may have a factored shape (e.g. q as [G, Q, D, H]): `dest.view(t.shape).copy_(t)` fills a
    contiguous HF-shaped `dest` with no temporary; `to_hf` gives HF shapes directly.
    """
    T = shards.shape[0]
    H, F = cfg.hidden_size, cfg.ffn_hidden_size
    G, Q, D = cfg.num_query_groups, cfg.num_attention_heads // cfg.num_query_groups, cfg.head_dim
    if spec.kind == "replicated":
        return [(spec.hf_names[0], shards[0])]
    if spec.kind == "qkv":
        x = shards.view(G, Q + 2, D, H)  # the groups of consecutive shards are consecutive
        q, k, v = x[:, :Q], x[:, Q], x[:, Q + 1]
        return list(zip(spec.hf_names, (q, k, v)))
    if spec.kind == "fc1":
        x = shards.view(T, 2, F // T, H)  # each shard is [gate_r; up_r]
        return list(zip(spec.hf_names, (x[:, 0], x[:, 1])))
    if spec.kind == "row":
        return [(spec.hf_names[0], shards.permute(1, 0, 2))]  # [T, out, in/T] -> [out, T, in/T]
    # vocab: [T, Vp/T, H] -> [Vp, H], drop the padding rows
    return [(spec.hf_names[0], shards.reshape(-1, H)[: _vocab(cfg)])]


def to_hf(spec: WeightSpec, shards: torch.Tensor | Sequence[torch.Tensor], cfg: ModelConfig) -> list[tuple[str, torch.Tensor]]:
    """Full HF tensors (HF shapes, contiguous) from all TP shards of one megatron parameter.

    shards: [T, *shard_shape] or a list of T shards in TP rank order.
    """
    if not isinstance(shards, torch.Tensor):
        shards = torch.stack(list(shards))
    shapes = hf_shapes_of(spec, cfg)
    return [(n, t.reshape(shapes[n]).contiguous()) for n, t in to_hf_views(spec, shards, cfg)]


def hf_shapes_of(spec: WeightSpec, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """HF shapes of the tensors one megatron parameter maps to."""
    H, F, V = cfg.hidden_size, cfg.ffn_hidden_size, _vocab(cfg)
    qd, kvd = cfg.num_attention_heads * cfg.head_dim, cfg.num_query_groups * cfg.head_dim
    if spec.kind == "replicated":
        shapes = [(H,)]
    elif spec.kind == "qkv":
        shapes = [(qd, H), (kvd, H), (kvd, H)]
    elif spec.kind == "fc1":
        shapes = [(F, H), (F, H)]
    elif spec.kind == "vocab":
        shapes = [(V, H)]
    elif spec.mcore_name.endswith("linear_proj.weight"):
        shapes = [(H, qd)]
    else:
        shapes = [(H, F)]
    return dict(zip(spec.hf_names, shapes))


# ---------------------------------------------------------------------------------------------
# HF -> megatron


def hf_to_mcore_shard(spec: WeightSpec, read: HFReader, cfg: ModelConfig, tp_rank: int, tp_size: int) -> torch.Tensor:
    """TP shard `tp_rank` of a megatron parameter, reading only the HF rows/columns it needs.

    read(name, rows, cols) returns that slice of the named HF tensor. Returns shard_shape
    (see `mcore_shard_shape`); vocab padding rows are zero.
    """
    r, T = tp_rank, tp_size
    H, F = cfg.hidden_size, cfg.ffn_hidden_size
    G, Q, D = cfg.num_query_groups, cfg.num_attention_heads // cfg.num_query_groups, cfg.head_dim
    if spec.kind == "replicated":
        return read(spec.hf_names[0], None, None)
    if spec.kind == "qkv":
        Gl = G // T
        g0, g1 = r * Gl, (r + 1) * Gl
        q = read(spec.hf_names[0], slice(g0 * Q * D, g1 * Q * D), None).reshape(Gl, Q, D, H)
        k = read(spec.hf_names[1], slice(g0 * D, g1 * D), None).reshape(Gl, 1, D, H)
        v = read(spec.hf_names[2], slice(g0 * D, g1 * D), None).reshape(Gl, 1, D, H)
        return torch.cat([q, k, v], dim=1).reshape(Gl * (Q + 2) * D, H)
    if spec.kind == "fc1":
        rows = slice(r * F // T, (r + 1) * F // T)
        return torch.cat([read(spec.hf_names[0], rows, None), read(spec.hf_names[1], rows, None)], dim=0)
    if spec.kind == "row":
        inner = cfg.num_attention_heads * D if spec.mcore_name.endswith("linear_proj.weight") else F
        return read(spec.hf_names[0], None, slice(r * inner // T, (r + 1) * inner // T))
    # vocab: rows [r*Vp/T, (r+1)*Vp/T) of the padded table; rows >= V are zero
    V, Vs = _vocab(cfg), cfg.padded_vocab_size(T) // T
    a, b = r * Vs, (r + 1) * Vs
    real = read(spec.hf_names[0], slice(a, min(b, V)), None) if a < V else None
    if real is not None and real.shape[0] == Vs:
        return real
    out = torch.zeros(Vs, H, dtype=real.dtype if real is not None else torch.float32)
    if real is not None:
        out[: real.shape[0]] = real
    return out


def dict_reader(state_dict: dict[str, torch.Tensor]) -> HFReader:
    """An HFReader over in-memory HF tensors (e.g. `LlamaForCausalLM.state_dict()`)."""

    def read(name: str, rows: slice | None = None, cols: slice | None = None) -> torch.Tensor:
        t = state_dict[name]
        if rows is not None:
            t = t[rows]
        if cols is not None:
            t = t[:, cols]
        return t

    return read


# ---------------------------------------------------------------------------------------------
# configs


def hf_config_from_model_config(cfg: ModelConfig, dtype: torch.dtype | None = None):
    """A `transformers.LlamaConfig` describing the same model as `cfg` (unpadded vocabulary)."""
    from transformers import LlamaConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=_vocab(cfg),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.ffn_hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_query_groups,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        # The llama3 rope ignores max_position_embeddings; HF only requires it above the original 8192.
        max_position_embeddings=max(cfg.seq_length, 131072) if cfg.rope_scaling else cfg.seq_length,
        rms_norm_eps=cfg.norm_epsilon,
        initializer_range=cfg.init_method_std,
        tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        rope_theta=float(cfg.rotary_base),
        rope_scaling=_rope_scaling(cfg),
        architectures=["LlamaForCausalLM"],
        bos_token_id=None,
        eos_token_id=None,
    )
    if dtype is not None:
        kwargs["torch_dtype" if _transformers_major() < 5 else "dtype"] = dtype
    return LlamaConfig(**kwargs)


def _rope_scaling(cfg: ModelConfig) -> dict[str, Any] | None:
    if not cfg.rope_scaling:
        return None
    return {
        "rope_type": "llama3",
        "factor": float(cfg.rope_scaling_factor),
        "low_freq_factor": ROPE_LOW_FREQ_FACTOR,
        "high_freq_factor": ROPE_HIGH_FREQ_FACTOR,
        "original_max_position_embeddings": ROPE_ORIGINAL_MAX_POSITIONS,
    }


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


class NotALlamaError(ValueError):
    """A Hugging Face config this mapping cannot represent; the message says why."""


def model_config_from_hf_config(hf: dict[str, Any], name: str = "hf", seq_length: int | None = None,
                                make_vocab_size_divisible_by: int = 128) -> ModelConfig:
    """The `ModelConfig` of an HF Llama `config.json` (a dict); NotALlamaError if it is not one we support.

    Accepts transformers 4 (`rope_scaling`, `rope_theta`) and 5 (`rope_parameters`) spellings.
    """
    archs = hf.get("architectures") or []
    if hf.get("model_type") != "llama" and "LlamaForCausalLM" not in archs:
        raise NotALlamaError(
            f"model_type={hf.get('model_type')!r}, architectures={archs}: only Llama (LlamaForCausalLM) is supported"
        )
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if key not in hf:
            raise NotALlamaError(f"config.json lacks {key!r}")
    if hf.get("hidden_act", "silu") != "silu":
        raise NotALlamaError(f"hidden_act={hf['hidden_act']!r}: only silu (SwiGLU) is supported")
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            raise NotALlamaError(f"{key}=true: the megatron Llama here has no biases")
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    if head_dim * heads != hf["hidden_size"]:
        raise NotALlamaError(f"head_dim={head_dim} * heads={heads} != hidden_size={hf['hidden_size']}: unsupported")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "llama3":
        expected = {"low_freq_factor": ROPE_LOW_FREQ_FACTOR, "high_freq_factor": ROPE_HIGH_FREQ_FACTOR,
                    "original_max_position_embeddings": ROPE_ORIGINAL_MAX_POSITIONS}
        for k, v in expected.items():
            if float(rope.get(k, v)) != v:
                raise NotALlamaError(f"rope {k}={rope[k]}: megatron-core's llama3 rope scaling fixes it at {v}")
    elif rope_type != "default":
        raise NotALlamaError(f"rope_type={rope_type!r}: only 'llama3' scaling or none is supported")
    max_pos = int(hf.get("max_position_embeddings", 8192))
    return ModelConfig(
        name=name,
        num_layers=hf["num_hidden_layers"],
        hidden_size=hf["hidden_size"],
        ffn_hidden_size=hf["intermediate_size"],
        num_attention_heads=heads,
        num_query_groups=hf.get("num_key_value_heads") or heads,
        vocab_size=hf["vocab_size"],
        make_vocab_size_divisible_by=make_vocab_size_divisible_by,
        seq_length=seq_length or min(max_pos, 8192),
        rotary_base=int(theta) if float(theta).is_integer() else theta,
        rope_scaling=rope_type == "llama3",
        rope_scaling_factor=float(rope.get("factor", 8.0)),
        norm_epsilon=float(hf.get("rms_norm_eps", 1e-5)),
        init_method_std=float(hf.get("initializer_range", 0.02)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        transformer_impl="auto",
    )
