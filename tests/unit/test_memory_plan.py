"""The memory plan (training/memory.py) against hand-computed numbers, and its refusals."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from sweet_megatron.model import SIZES
from sweet_megatron.parallel import ParallelConfig
from sweet_megatron.training.memory import (
    GB,
    MemoryPlanError,
    activation_bytes,
    check_fits,
    choose_engine_tp,
    layer_params,
    params_per_gpu,
    plan_memory,
)

L70, L8 = SIZES["llama3_70b"], SIZES["llama3_8b"]
H100_70B = ParallelConfig(tensor_parallel=8, pipeline_parallel=4, virtual_pipeline=5, sequence_parallel=True)
H100_8B = ParallelConfig(tensor_parallel=4, sequence_parallel=True)


def test_parameter_counts_by_hand():
    # 70B layer: h(h+2kv) + h^2 + 3hf + 2h with h=8192, kv=8*128, f=28672
    assert layer_params(L70) == 8192 * 10240 + 8192**2 + 3 * 8192 * 28672 + 2 * 8192 == 855_654_400
    # h100_70b worst stage: 20 layers / TP 8 + one padded vocab matrix (129024 rows) / 8 + final norm
    assert params_per_gpu(L70, H100_70B) == 20 * 855_654_400 // 8 + 129024 * 8192 // 8 + 8192 == 2_271_264_768
    # the whole 70B model: 80 layers + 2 x 128256 x 8192 + norm = 70.55 B (published: 70.6 B)
    assert abs(L70.num_parameters() - 70.55e9) < 0.01e9


def test_activations_by_hand():
    # 8B at TP4 with SP, no recompute: per token per layer (12h + 4kv + 6f) / t bytes, s = 8192, 32 layers
    per_layer = 8192 * (12 * 4096 + 4 * 1024 + 6 * 14336) / 4
    assert per_layer == 285_212_672
    assert activation_bytes(L8, H100_8B) == 32 * per_layer
    # 70B with full recompute on h100_70b: layer inputs 2 s h / t for 80 layers x (1 + 3/20), plus one layer
    full = replace(L70, recompute="full")
    stored = 2 * 8192 * 8192 / 8
    one_layer = 8192 * (12 * 8192 + 4 * 1024 + 6 * 28672) / 8
    assert activation_bytes(full, H100_70B) == pytest.approx(80 * stored * 1.15 + one_layer)


def test_trainable_runner_bytes_by_hand():
    plan = plan_memory(L8, H100_8B, 8)
    n = params_per_gpu(L8, H100_8B)
    sft = next(p for p in plan.phases if p.name == "sft")
    assert sft.parts["actor (training)"] == pytest.approx(n * (2 + 4 + 12 / 2))  # DP = 2 with DistOpt
    actor = next(p for p in plan.phases if p.name == "actor")
    assert actor.parts["actor_ref"] == actor.parts["actor (idle)"] == 2 * n
    assert plan.host_bytes_per_gpu == pytest.approx(12 * n / 2)


def test_shipped_layouts_fit_and_one_node_70b_is_refused():
    p70 = plan_memory(replace(L70, recompute="full"), H100_70B, 32)
    assert p70.fits and p70.engine_tp == 8 and max(p.total for p in p70.phases) < 80 * GB
    p8 = plan_memory(L8, H100_8B, 8)
    assert p8.fits and p8.engine_tp == 1 and max(p.total for p in p8.phases) < 80 * GB
    one_node = plan_memory(replace(L70, recompute="full"), ParallelConfig(tensor_parallel=8, sequence_parallel=True), 8)
    assert not one_node.fits
    with pytest.raises(MemoryPlanError, match="phase sft needs .* more GPUs"):
        check_fits(one_node)


def test_without_recompute_70b_is_refused_naming_the_key():
    plan = plan_memory(L70, H100_70B, 32)
    assert not plan.fits and any("model.recompute=full" in p for p in plan.problems)


def test_engine_tp_is_sized_to_the_model_and_a_too_small_one_is_refused():
    assert choose_engine_tp(L8, 80 * GB, 0.5, 8) == 1  # 16 GB of weights in a 40 GB budget
    assert choose_engine_tp(L70, 80 * GB, 0.5, 32) == 8  # 141 GB: 17.6 GB per GPU at TP 8
    plan = plan_memory(replace(L70, recompute="full"), H100_70B, 32, engine_tp=1)
    assert any("rollout.vllm_tensor_parallel=1" in p for p in plan.problems)


def test_throughput_reproduces_megatron_published_70b_figure():
    """megatron-core's Llama-3 70B FP8 on H100: ~730 model TFLOP/s per GPU, ~1,600 tokens/s/GPU. The
    plan's FLOPs per token (6N + 6 L h s) turn the first into the second."""
    plan = plan_memory(L70, H100_70B, 32, mfu=730e12 / 989e12)
    assert plan.tokens_per_s_per_gpu == pytest.approx(1600, rel=0.02)


@pytest.mark.parametrize(("args", "code", "says"), [
    (["model=llama3_70b", "parallel=h100_70b", "rollout=vllm"], 0, "actor"),
    (["model=llama3_8b", "parallel=h100_8b", "rollout=vllm"], 0, "actor"),
    (["model=llama3_70b", "parallel=h100_70b", "rollout=vllm", "world_size=8"], 1, "needs 32 GPUs"),
    (["model=llama3_70b", "parallel=h100_8b", "rollout=vllm"], 1, "REFUSED: phase sft"),
])
def test_sweet_bench_plan(args, code, says):
    proc = subprocess.run([sys.executable, "-m", "sweet_megatron.bench.cli", "plan", *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert says in proc.stdout + proc.stderr
