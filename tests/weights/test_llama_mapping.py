"""The megatron <-> HF Llama mapping as pure functions (single process; the multi-rank tests check
it against megatron's own forward)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sweet_megatron.weights.llama_mapping import (
    NotALlamaError,
    dict_reader,
    hf_config_from_model_config,
    hf_shapes,
    hf_to_mcore_shard,
    mcore_shard_shape,
    model_config_from_hf_config,
    parse_mcore_name,
    to_hf,
    to_hf_views,
    weight_specs,
)
from tests.weights.common import TINY, random_hf_llama


@pytest.fixture(scope="module")
def hf_sd():
    return random_hf_llama(TINY, seed=1).state_dict()


def test_names_local_te_wrapped_and_offset():
    s = parse_mcore_name("module.decoder.layers.1.self_attention.linear_qkv.layer_norm_weight", layer_offset=2)
    assert s.mcore_name == "decoder.layers.3.input_layernorm.weight"
    assert s.hf_names == ("model.layers.3.input_layernorm.weight",) and s.layer == 3
    s = parse_mcore_name("decoder.layers.0.mlp.linear_fc1.layer_norm_weight")
    assert s.hf_names == ("model.layers.0.post_attention_layernorm.weight",)
    assert parse_mcore_name("decoder.layers.0.mlp.linear_fc1.weight").hf_names == (
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight")
    assert parse_mcore_name("output_layer.weight").hf_names == ("lm_head.weight",)
    with pytest.raises(KeyError):
        parse_mcore_name("decoder.layers.0.self_attention.core_attention.weight")


def test_every_hf_tensor_is_covered_once():
    names = [n for s in weight_specs(TINY) for n in s.hf_names]
    assert sorted(names) == sorted(hf_shapes(TINY)) and len(names) == len(set(names))
    assert set(hf_shapes(TINY)) == set(random_hf_llama(TINY).state_dict())


@pytest.mark.parametrize("tp", [1, 2])
def test_shard_then_gather_is_identity(hf_sd, tp):
    read = dict_reader(hf_sd)
    for spec in weight_specs(TINY):
        shards = [hf_to_mcore_shard(spec, read, TINY, r, tp) for r in range(tp)]
        assert all(tuple(s.shape) == mcore_shard_shape(spec, TINY, tp) for s in shards), spec
        for name, t in to_hf(spec, shards, TINY):
            assert torch.equal(t, hf_sd[name]), name
        for name, v in to_hf_views(spec, torch.stack(shards), TINY):  # views: the HF elements in order
            assert torch.equal(v.reshape(hf_sd[name].shape), hf_sd[name]), name


def test_megatron_layouts(hf_sd):
    """The layout facts: QKV grouped per query group, fc1 = [gate_r; up_r] per shard, padded vocab zero."""
    read = dict_reader(hf_sd)
    D, H, F = TINY.head_dim, TINY.hidden_size, TINY.ffn_hidden_size
    qkv = parse_mcore_name("decoder.layers.0.self_attention.linear_qkv.weight")
    shard1 = hf_to_mcore_shard(qkv, read, TINY, 1, 2).view(1, 4, D, H)  # TP rank 1 holds group 1: q2, q3, k1, v1
    q, k, v = (hf_sd[f"model.layers.0.self_attn.{p}_proj.weight"].view(-1, D, H) for p in "qkv")
    assert torch.equal(shard1[0, 0], q[2]) and torch.equal(shard1[0, 1], q[3])
    assert torch.equal(shard1[0, 2], k[1]) and torch.equal(shard1[0, 3], v[1])
    fc1 = hf_to_mcore_shard(parse_mcore_name("decoder.layers.0.mlp.linear_fc1.weight"), read, TINY, 1, 2)
    assert torch.equal(fc1[: F // 2], hf_sd["model.layers.0.mlp.gate_proj.weight"][F // 2 :])
    assert torch.equal(fc1[F // 2 :], hf_sd["model.layers.0.mlp.up_proj.weight"][F // 2 :])
    emb = hf_to_mcore_shard(parse_mcore_name("embedding.word_embeddings.weight"), read, TINY, 1, 2)
    assert emb.shape[0] == TINY.padded_vocab_size(2) // 2 == 504
    assert torch.equal(emb[: 1001 - 504], hf_sd["model.embed_tokens.weight"][504:]) and not emb[1001 - 504 :].any()


def test_hf_config_round_trip_and_rope_matches_megatron():
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf = hf_config_from_model_config(TINY)
    assert (hf.vocab_size, hf.num_key_value_heads, hf.tie_word_embeddings, hf.attention_bias) == (1001, 2, False, False)
    back = model_config_from_hf_config(hf.to_dict(), name=TINY.name, seq_length=TINY.seq_length,
                                       make_vocab_size_divisible_by=TINY.make_vocab_size_divisible_by)
    assert back == TINY
    inv_hf, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    mc = RotaryEmbedding(TINY.head_dim, 1.0, rotary_base=TINY.rotary_base, rope_scaling=True,
                         rope_scaling_factor=TINY.rope_scaling_factor, use_cpu_initialization=True)
    torch.testing.assert_close(mc.inv_freq.float(), inv_hf.float(), rtol=1e-6, atol=0)
    plain = dataclasses.replace(TINY, rope_scaling=False)
    assert model_config_from_hf_config(hf_config_from_model_config(plain).to_dict()).rope_scaling is False


def test_transformers_4_spelling_and_unsupported_configs():
    v4 = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1001, "rope_theta": 500000.0,
          "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192}}
    cfg = model_config_from_hf_config(v4)
    assert cfg.rotary_base == 500000 and cfg.rope_scaling and cfg.rope_scaling_factor == 32.0
    for bad, match in [({"model_type": "mistral", "architectures": ["MistralForCausalLM"]}, "only Llama"),
                       ({"attention_bias": True}, "biases"),
                       ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_type"),
                       ({"rope_scaling": {**v4["rope_scaling"], "high_freq_factor": 2.0}}, "high_freq_factor")]:
        with pytest.raises(NotALlamaError, match=match):
            model_config_from_hf_config({**v4, **bad})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_safetensors_slices_match_the_library(tmp_path, dtype):
    from safetensors.torch import load_file, save_file

    from sweet_megatron.weights.hf_io import SafetensorsFile

    tensors = {"a": torch.randn(37, 23).to(dtype), "b": torch.randn(11).to(dtype), "c": torch.randn(5, 4, 3).to(dtype)}
    save_file(tensors, str(tmp_path / "x.safetensors"))
    ref = load_file(str(tmp_path / "x.safetensors"))
    f = SafetensorsFile(tmp_path / "x.safetensors", block_bytes=64)  # column reads in blocks of a few rows
    assert torch.equal(f.read("a"), ref["a"]) and torch.equal(f.read("b"), ref["b"]) and torch.equal(f.read("c"), ref["c"])
    assert torch.equal(f.read("a", slice(3, 20)), ref["a"][3:20])
    assert torch.equal(f.read("a", None, slice(5, 17)), ref["a"][:, 5:17])
    assert torch.equal(f.read("a", slice(30, 37), slice(0, 4)), ref["a"][30:, :4])
    assert torch.equal(f.read("c", slice(1, 3), slice(1, 2)), ref["c"][1:3, 1:2])
