"""The CPU compatibility layer: what it redirects, that it is idempotent, and that it never touches
a CUDA setup."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from sweet_megatron.platform import setup_platform


def test_cpu_layer_redirects_cuda_arguments():
    platform = setup_platform()
    assert platform.backend == "gloo" and platform.device.type == "cpu" and platform.cpu_compat
    assert torch.empty(3, device="cuda").device.type == "cpu"
    assert torch.zeros(2, device=torch.device("cuda", 0)).device.type == "cpu"
    assert torch.ones(2, device=torch.cuda.current_device()).device.type == "cpu"
    t = torch.ones(2)
    assert t.cuda() is t
    assert t.to("cuda:0").device.type == "cpu"
    assert t.type() == "torch.cuda.FloatTensor"  # megatron's param.type() assertion
    assert t.type("torch.cuda.DoubleTensor").dtype == torch.float64


def test_cpu_layer_is_idempotent_and_rng_is_the_cpu_generator():
    from torch.overrides import _get_current_function_mode_stack

    setup_platform()
    setup_platform()
    from sweet_megatron.platform import _CpuDeviceMode

    assert sum(isinstance(m, _CpuDeviceMode) for m in _get_current_function_mode_stack()) == 1
    torch.cuda.manual_seed(7)
    a = torch.rand(3)
    state = torch.cuda.get_rng_state()
    b = torch.rand(3)
    torch.cuda.set_rng_state(state)
    assert torch.equal(torch.rand(3), b)
    torch.manual_seed(7)
    assert torch.equal(torch.rand(3), a)


def test_cuda_setup_is_left_untouched():
    """With CUDA reported available, setup_platform patches nothing and enters no mode."""
    code = textwrap.dedent(
        """
        import torch
        torch.cuda.is_available = lambda: True
        torch.cuda.set_device = lambda i: None
        originals = (torch.cuda.current_device, torch.cuda.synchronize, torch.cuda.get_rng_state,
                     torch.cuda.manual_seed)
        from sweet_megatron.platform import setup_platform, _PATCHED
        p = setup_platform()
        from torch.overrides import _get_current_function_mode_stack
        assert p.backend == "nccl" and p.device.type == "cuda" and not p.cpu_compat, p
        assert p.params_dtype == torch.bfloat16
        assert (torch.cuda.current_device, torch.cuda.synchronize, torch.cuda.get_rng_state,
                torch.cuda.manual_seed) == originals
        assert not _PATCHED and not _get_current_function_mode_stack()
        print("untouched")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "untouched" in out.stdout


def test_gpu_stack_differences_are_named():
    from sweet_megatron.platform import GPU_STACK, stack_differences

    same = dict(GPU_STACK, torch=GPU_STACK["torch"] + "+cu126")
    assert stack_differences(same) == []
    diff = stack_differences(dict(GPU_STACK, vllm="0.32.0", triton=None))
    assert diff == [f"vllm 0.32.0 (tested stack: {GPU_STACK['vllm']})",
                    f"triton not installed (tested stack: {GPU_STACK['triton']})"]
