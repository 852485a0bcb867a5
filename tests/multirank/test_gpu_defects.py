"""GPU-path defects that reproduce on CPU (issue 18): where collective tensors live, and the
distributed optimizer's main params after a weight load on a bf16 model."""

from __future__ import annotations

import dataclasses

import torch

from sweet_megatron.config import OptimConfig
from sweet_megatron.model import ModelConfig
from sweet_megatron.parallel import ParallelConfig
from sweet_megatron.platform import Platform
from tests.dist import run_distributed
from tests.multirank.layout_cases import rows

TINY = ModelConfig(num_layers=2, hidden_size=32, ffn_hidden_size=64, num_attention_heads=4, num_query_groups=2,
                   vocab_size=96, seq_length=64)


def test_collective_device_is_the_gpu_under_nccl_and_the_cpu_under_gloo():
    """#1: NCCL-only groups have no CPU backend; tensors for collectives come from this helper."""
    gpu = Platform(torch.device("cuda", 3), "nccl", torch.bfloat16, cpu_compat=False)
    assert gpu.collective_device == torch.device("cuda", 3)
    cpu = Platform(torch.device("cpu"), "gloo", torch.float32, cpu_compat=True)
    assert cpu.collective_device == torch.device("cpu")


def _reduce_on_dp2(rank, world_size):
    from sweet_megatron.parallel import initialize
    from sweet_megatron.training.runner import ModelRunner

    par = ParallelConfig()
    platform = initialize(par, seed=0)
    runner = ModelRunner(TINY, par, platform, optim=None)
    # The metrics vector is allocated on the platform's collective device: point the platform at
    # "meta" and the allocation must follow it (a CPU-default allocation would not).
    runner.platform = dataclasses.replace(platform, device=torch.device("meta"))
    runner.dp_size = 1  # no collective on a meta tensor
    try:
        runner._reduce_metrics([{"a": torch.tensor(1.0)}], ["a"])
        followed = False
    except (RuntimeError, NotImplementedError):  # a meta tensor cannot be read back
        followed = True
    runner.platform, runner.dp_size = platform, 2
    got = runner._reduce_metrics([{"a": torch.tensor(rank + 1.0), "b": torch.tensor(2.0)}], ["a", "b"])
    return followed, got


def test_metrics_reduce_uses_the_platform_device_and_sums_over_dp_ranks():
    results = run_distributed(_reduce_on_dp2, 2)
    for followed, got in results:
        assert followed, "the metrics vector was not allocated on platform.collective_device"
        assert got == {"a": 3.0, "b": 4.0}


def _init_then_step(rank, world_size, ckpt_dir, reload):
    from sweet_megatron.checkpoint.model_io import checkpoint_meta, save_model_checkpoint
    from sweet_megatron.parallel import initialize
    from sweet_megatron.training.runner import ModelRunner, sft_loss

    par = ParallelConfig()
    fp32 = initialize(par, seed=1)
    bf16 = dataclasses.replace(fp32, params_dtype=torch.bfloat16)  # what a GPU run builds
    optim = OptimConfig(lr=1e-6, min_lr=1e-6, warmup_steps=0, weight_decay=0.0)
    # "pretrained" weights: another seed, saved as a checkpoint
    torch.manual_seed(123)
    source = ModelRunner(TINY, par, bf16, optim=None)
    save_model_checkpoint(ckpt_dir, source.chunks, checkpoint_meta(TINY))
    loaded = {k: v.detach().clone().float() for k, v in source.modules()[0].state_dict().items()
              if torch.is_tensor(v) and v.is_floating_point()}
    torch.manual_seed(7)
    runner = ModelRunner(TINY, par, bf16, optim=optim)
    assert next(runner.modules()[0].parameters()).dtype == torch.bfloat16
    if reload:
        runner.load_weights(ckpt_dir)
    else:  # the old order: weights loaded behind the optimizer's back
        from sweet_megatron.checkpoint.model_io import load_model_checkpoint

        load_model_checkpoint(ckpt_dir, runner.chunks)
    # the optimizer's fp32 main params, reassembled from this rank's shards
    main_vs_loaded = 0.0
    opt = runner.optimizer.chained_optimizers[0] if hasattr(runner.optimizer, "chained_optimizers") else runner.optimizer
    for group in opt.shard_fp32_from_float16_groups:
        for main in group:
            assert main.dtype == torch.float32
    runner.train_step(rows(), sft_loss, [])
    after = runner.modules()[0].state_dict()
    for k, want in loaded.items():
        main_vs_loaded = max(main_vs_loaded, float((after[k].float() - want).abs().max()))
    return main_vs_loaded


def test_init_weights_survive_the_first_bf16_step_with_the_distributed_optimizer(tmp_path):
    """#4: after `load_weights` one tiny-lr step leaves the weights where the checkpoint put them;
    without `reload_model_params` the step writes the random init back (the guarded failure)."""
    ok = run_distributed(_init_then_step, 2, args=(str(tmp_path / "a"), True))
    bad = run_distributed(_init_then_step, 2, args=(str(tmp_path / "b"), False))
    assert max(ok) < 1e-2, ok  # lr 1e-6 for one step: bf16 rounding only
    assert min(bad) > 0.1, bad  # the random init came back


def _steps(rank, world_size, offload_between):
    from sweet_megatron.parallel import initialize
    from sweet_megatron.training.runner import ModelRunner, sft_loss

    par = ParallelConfig()
    bf16 = dataclasses.replace(initialize(par, seed=1), params_dtype=torch.bfloat16)
    torch.manual_seed(5)
    runner = ModelRunner(TINY, par, bf16, optim=OptimConfig(lr=1e-2, min_lr=1e-2, warmup_steps=0))
    runner.train_step(rows(), sft_loss, [])
    freed = None
    if offload_between:
        runner.offload()
        freed = all(b.grad_data.untyped_storage().size() == 0 for c in runner.chunks for b in c.buffers)
        runner.offload()  # idempotent
    runner.train_step(rows(seed=1), sft_loss, [])  # reloads by itself
    return freed, [p.detach().float().clone() for p in runner.modules()[0].parameters()]


def test_offload_frees_grad_buffers_and_training_continues_identically():
    """#8: an idle runner releases its grad buffers (megatron DDP.offload_grad_buffers) and moves
    optimizer state to host; the next step is bit-identical to one without the round trip."""
    with_offload = run_distributed(_steps, 2, args=(True,))
    without = run_distributed(_steps, 2, args=(False,))
    for (freed, a), (_, b) in zip(with_offload, without, strict=True):
        assert freed
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _grads(rank, world_size, recompute):
    from sweet_megatron.parallel import initialize
    from sweet_megatron.training.runner import ModelRunner, sft_loss

    par = ParallelConfig()
    platform = initialize(par, seed=1)
    torch.manual_seed(5)
    runner = ModelRunner(dataclasses.replace(TINY, recompute=recompute), par, platform,
                         optim=OptimConfig(lr=1e-2, min_lr=1e-2, warmup_steps=0))
    assert runner.tcfg.recompute_granularity == (None if recompute == "none" else "full")
    runner.train_step(rows(), sft_loss, [])
    return [p.detach().clone() for p in runner.modules()[0].parameters()]


def test_full_recompute_gives_the_same_step():
    """#12: model.recompute=full (megatron's full uniform recomputation) changes memory, not the math."""
    (full,) = run_distributed(_grads, 1, args=("full",))
    (none,) = run_distributed(_grads, 1, args=("none",))
    assert max(float((a - b).abs().max()) for a, b in zip(full, none, strict=True)) < 1e-6


def test_gradient_accumulation_fusion_follows_the_spec_and_megatron_s_own_gate():
    """#12: the weight-gradient GEMM accumulates into main_grad on CUDA with TE (its own fused
    wgrad) or with the local spec when megatron finds Apex's kernel; never on CPU."""
    from megatron.core.tensor_parallel import layers

    from sweet_megatron.model import gradient_accumulation_fusion, transformer_config

    gpu = Platform(torch.device("cuda", 0), "nccl", torch.bfloat16, cpu_compat=False)
    cpu = Platform(torch.device("cpu"), "gloo", torch.float32, cpu_compat=True)
    assert gradient_accumulation_fusion("transformer_engine", gpu) is True
    assert gradient_accumulation_fusion("local", gpu) is layers._grad_accum_fusion_available
    assert gradient_accumulation_fusion("transformer_engine", cpu) is False
    assert gradient_accumulation_fusion("local", cpu) is False
    assert transformer_config(TINY, ParallelConfig(), cpu).gradient_accumulation_fusion is False
