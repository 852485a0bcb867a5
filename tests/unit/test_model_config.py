"""Named model sizes, layout validation and the config tree's errors."""

from __future__ import annotations

import pytest
import torch

from sweet_megatron.config import ConfigError, load_config
from sweet_megatron.model import SIZES, ModelConfig
from sweet_megatron.parallel import LayoutError, ParallelConfig
from tests.dist import run_distributed


def test_published_sizes():
    # Llama-3.1-8B: 8.03B parameters; 70B: 70.55B (untied embeddings, vocab 128256).
    assert round(SIZES["llama3_8b"].num_parameters() / 1e9, 2) == 8.03
    assert round(SIZES["llama3_70b"].num_parameters() / 1e9, 2) == 70.55
    cfg = load_config(["model=llama3_70b"])
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.model.num_query_groups) == (80, 8192, 8)


def _tiny_forward(rank, world_size):
    from sweet_megatron.model import build_model
    from sweet_megatron.parallel import initialize

    par = ParallelConfig()
    platform = initialize(par, seed=0)
    cfg = ModelConfig(vocab_size=100)
    (model,) = build_model(cfg, par, platform)
    ids = torch.randint(0, 100, (2, 16))
    logits = model(ids, torch.arange(16).expand(2, 16), None)
    return sum(p.numel() for p in model.parameters()), cfg.num_parameters(), tuple(logits.shape)


def test_tiny_forward_shapes():
    # in a child process: this test process must never initialise torch.distributed itself
    (n_params, expected, shape) = run_distributed(_tiny_forward, 1)[0]
    assert n_params == expected + 2 * 4 * 128  # input and output embeddings padded 100 -> 104 rows
    assert shape == (2, 16, 104)


@pytest.mark.parametrize(
    "layout, world, match",
    [
        ({"tensor_parallel": 3}, 3, "num_attention_heads"),
        ({"tensor_parallel": 4}, 4, "num_query_groups"),
        ({"pipeline_parallel": 3}, 3, "num_layers"),
        ({"tensor_parallel": 2}, 3, "world size 3"),
        ({"tensor_parallel": 2, "sequence_parallel": True}, 2, "Transformer Engine"),
        ({"context_parallel": 2}, 2, "context_parallel"),
        ({"pipeline_parallel": 1, "virtual_pipeline": 2}, 1, "pipeline_parallel >= 2"),
    ],
)
def test_bad_layouts_say_the_fix(layout, world, match):
    with pytest.raises(LayoutError, match=match):
        ParallelConfig(**layout).validate(world, ModelConfig(), "local")


def test_tied_embeddings_with_pipeline_stages_is_refused():
    with pytest.raises(LayoutError, match="tie_embeddings"):
        ParallelConfig(pipeline_parallel=2).validate(2, ModelConfig(tie_embeddings=True), "local")
    ParallelConfig(tensor_parallel=2).validate(2, ModelConfig(tie_embeddings=True), "local")


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="train.stepz"):
        load_config(["train.stepz=3"])
    with pytest.raises(ConfigError, match="decay_style"):
        load_config(["train.optim.decay_style=sqrt"])
    with pytest.raises(ConfigError, match="rollout.engine"):
        load_config(["rollout.engine=sglang"])
    with pytest.raises(ConfigError, match="tensor_parallel"):
        load_config(["parallel.tensor_parallel=two"])
    with pytest.raises(ConfigError, match="sweet.critic_pairs"):
        load_config(["sweet.critic_pairs=all"])
    with pytest.raises(ConfigError, match="sweet.actor_scorer"):
        load_config(["sweet.actor_scorer=critics"])
    assert load_config(["sweet.actor_scorer=oracle"]).sweet.actor_scorer == "oracle"
    with pytest.raises(ConfigError, match="sweet.credit_baseline=false"):
        load_config(["sweet.critic_reference=false", "sweet.credit_baseline=true"])
    assert load_config(["sweet.critic_reference=false"]).sweet.critic_reference is False


def test_context_parallel_is_refused_on_the_te_spec_too():
    """Issue 18 #14: nothing splits rows per CP rank yet, so CP>1 is refused everywhere."""
    with pytest.raises(LayoutError, match="not yet split per context-parallel rank"):
        ParallelConfig(context_parallel=2).validate(2, ModelConfig(), "transformer_engine")


def test_mxfp8_needs_blackwell():
    from sweet_megatron.model import fp8_recipe_problem

    assert "Blackwell" in fp8_recipe_problem("mxfp8", (9, 0))  # H100
    assert fp8_recipe_problem("mxfp8", (10, 0)) is None
    assert fp8_recipe_problem("delayed", (9, 0)) is None
