"""Local-spec checkpoints load into a model that also has Transformer Engine-style `_extra_state`
entries (issue 18 #10); any other mismatch is still refused with the keys named."""

from __future__ import annotations

import pytest
import torch

from sweet_megatron.checkpoint.model_io import tolerated_load_mismatch
from sweet_megatron.model import ModelConfig
from tests.dist import run_distributed

TINY = ModelConfig(num_layers=2, hidden_size=32, ffn_hidden_size=64, num_attention_heads=4, num_query_groups=2,
                   vocab_size=96, seq_length=64)


def test_only_extra_state_may_be_absent():
    tolerated_load_mismatch({"decoder.layers.self_attention.linear_qkv._extra_state"},
                            ["decoder.layers.0.mlp.linear_fc1._extra_state"], [], "ckpt")
    with pytest.raises(RuntimeError, match=r"ckpt: the model needs 1 weights the checkpoint lacks.*linear_qkv.weight"):
        tolerated_load_mismatch({"decoder.layers.self_attention.linear_qkv.weight"}, [], [], "ckpt")
    with pytest.raises(RuntimeError, match="has no place for"):
        tolerated_load_mismatch(set(), [], ["decoder.extra.weight"], "ckpt")


class _WithExtraState(torch.nn.Module):
    """A module with torch's extra-state protocol, as TE's layers have (FP8 metadata)."""

    def __init__(self):
        super().__init__()
        self.state = {"amax": 0.0}

    def get_extra_state(self):
        return self.state

    def set_extra_state(self, state):
        self.state = state


def _load(rank, world_size, ckpt_dir, with_extra):
    from sweet_megatron.checkpoint.model_io import (
        checkpoint_meta,
        load_model_checkpoint,
        save_model_checkpoint,
    )
    from sweet_megatron.model import build_model
    from sweet_megatron.parallel import ParallelConfig, initialize

    par = ParallelConfig()
    platform = initialize(par, seed=0)
    (src,) = build_model(TINY, par, platform)
    save_model_checkpoint(ckpt_dir, [src], checkpoint_meta(TINY))
    torch.manual_seed(99)
    (dst,) = build_model(TINY, par, platform)
    if with_extra:  # the TE spec's extra keys, absent from the local-spec checkpoint
        dst.decoder.te_like = _WithExtraState()
        assert any(k.endswith("_extra_state") for k in dst.sharded_state_dict())
    load_model_checkpoint(ckpt_dir, [dst])
    return max(float((a - b).abs().max()) for a, b in zip(src.parameters(), dst.parameters(), strict=True))


def test_a_local_spec_checkpoint_loads_into_a_model_with_extra_state(tmp_path):
    (diff,) = run_distributed(_load, 1, args=(str(tmp_path / "c"), True))
    assert diff == 0.0
    (diff,) = run_distributed(_load, 1, args=(str(tmp_path / "d"), False))
    assert diff == 0.0
