"""Backend detection, and the one place that knows the device.

On a GPU node this module only reports CUDA + NCCL and changes nothing. Without CUDA it applies a
small compatibility layer so that megatron-core (which hard-codes CUDA in ~175 places) runs
*unchanged* on CPU under gloo: real GPTModel, pipeline schedules, DDP, optimizer and
dist_checkpointing. The layer is:

1. `torch.cuda.current_device()` returns 0 and `torch.cuda.synchronize()` is a no-op.
2. The CUDA RNG used by `megatron.core.tensor_parallel.random` (tracker, activation
   checkpointing) is redirected to the CPU default generator: `torch.cuda.get_rng_state`,
   `set_rng_state`, `manual_seed`, and that module's private `_get_cuda_rng_state` /
   `_set_cuda_rng_state`.
3. A global `TorchFunctionMode` (`_CpuDeviceMode`) that rewrites every CUDA device argument
   ("cuda", "cuda:N", `torch.device("cuda", N)`, a bare int) to CPU, makes `Tensor.cuda()` a
   no-op, and makes `Tensor.type()` report the CUDA type name (megatron asserts
   `param.type() == "torch.cuda.FloatTensor"`). Function modes are thread-local: the mode is
   entered on the thread that calls `setup_platform()`; call `enter_cpu_mode()` on any other thread
   that runs the model.

Known consequences (measured): megatron logs "CPU RNG state changed
within GPU RNG context" (expected: CPU and "CUDA" RNG are the same generator here); the layer costs
nothing measurable at hidden size 256.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode

log = logging.getLogger(__name__)

_CPU = torch.device("cpu")
_PATCHED: dict[str, object] = {}  # original attributes, for tests and for idempotence
_lock = threading.Lock()


@dataclass(frozen=True)
class Platform:
    """What the process runs on."""

    device: torch.device
    backend: str
    """torch.distributed backend: 'nccl' on CUDA, 'gloo' on CPU."""
    params_dtype: torch.dtype
    """bf16 on GPU, fp32 on CPU."""
    cpu_compat: bool
    """True when the CPU compatibility layer is active."""

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def collective_device(self) -> torch.device:
        """Where tensors passed to torch.distributed collectives must live: this rank's GPU under
        NCCL (an NCCL-only process group has no CPU backend: "No backend type associated with device
        type cpu"), the platform's device (the CPU) under gloo."""
        if self.backend == "nccl" and self.device.type != "cuda":
            return torch.device("cuda", torch.cuda.current_device())
        return self.device


def _is_cuda_device(dev: object) -> bool:
    if isinstance(dev, torch.device):
        return dev.type == "cuda"
    if isinstance(dev, str):
        return dev.startswith("cuda")
    return isinstance(dev, int) and not isinstance(dev, bool)


def _cpu_type_name(name: str) -> str:
    return name.replace("torch.cuda.", "torch.", 1)


class _CpuDeviceMode(TorchFunctionMode):
    """Maps CUDA device arguments to CPU (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type:
            if len(args) == 1 and "dtype" not in kwargs:
                name = func(*args)
                return name if ".cuda." in name else name.replace("torch.", "torch.cuda.", 1)
            if len(args) > 1 and isinstance(args[1], str):
                args = (args[0], _cpu_type_name(args[1]), *args[2:])
            if isinstance(kwargs.get("dtype"), str):
                kwargs["dtype"] = _cpu_type_name(kwargs["dtype"])
            return func(*args, **kwargs)
        if "device" in kwargs and _is_cuda_device(kwargs["device"]):
            kwargs["device"] = _CPU
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], _CPU, *args[2:])
        return func(*args, **kwargs)


def _mode_active() -> bool:
    from torch.overrides import _get_current_function_mode_stack

    return any(isinstance(m, _CpuDeviceMode) for m in _get_current_function_mode_stack())


def enter_cpu_mode() -> None:
    """Enter the CPU device mode on the calling thread (idempotent). No-op on CUDA machines."""
    if torch.cuda.is_available() or _mode_active():
        return
    _CpuDeviceMode().__enter__()  # left entered for the life of the thread, on purpose


def _patch(obj: object, attr: str, value: object) -> None:
    key = f"{getattr(obj, '__name__', obj)}.{attr}"
    if key not in _PATCHED:
        _PATCHED[key] = getattr(obj, attr, None)
    setattr(obj, attr, value)


def apply_cpu_compat() -> None:
    """Install the CPU compatibility layer (idempotent). Refuses to run when CUDA is available."""
    if torch.cuda.is_available():
        raise RuntimeError("apply_cpu_compat() called on a CUDA machine: use setup_platform() instead")
    with _lock:
        if not _PATCHED:
            cpu_gen = torch.random.default_generator

            def get_rng_state(device=None):
                return cpu_gen.get_state()

            def set_rng_state(new_state, device=None, graph_safe=False):
                cpu_gen.set_state(new_state)

            def manual_seed(seed):
                cpu_gen.manual_seed(int(seed))

            def get_cuda_rng_state(device=None, clone=False, graph_safe=False):
                state = cpu_gen.get_state()
                return state.clone() if clone else state

            _patch(torch.cuda, "current_device", lambda: 0)
            _patch(torch.cuda, "synchronize", lambda device=None: None)
            _patch(torch.cuda, "get_rng_state", get_rng_state)
            _patch(torch.cuda, "set_rng_state", set_rng_state)
            _patch(torch.cuda, "manual_seed", manual_seed)
            _patch(torch.cuda, "manual_seed_all", manual_seed)

            from megatron.core.tensor_parallel import random as mc_random

            _patch(mc_random, "_get_cuda_rng_state", get_cuda_rng_state)
            _patch(mc_random, "_set_cuda_rng_state", set_rng_state)
            log.info("CPU compatibility layer for megatron-core installed (no CUDA on this machine)")
    enter_cpu_mode()


def setup_platform(force_cpu: bool | None = None) -> Platform:
    """Detect the platform; on CPU install the compatibility layer. Safe to call repeatedly.

    `force_cpu` (or env SWEET_FORCE_CPU=1) runs on CPU even where CUDA exists: only for debugging,
    since the layer is never installed on a CUDA machine.
    """
    if force_cpu is None:
        force_cpu = os.environ.get("SWEET_FORCE_CPU", "0") == "1"
    if torch.cuda.is_available() and not force_cpu:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        diff = stack_differences(installed_versions())
        if diff and local_rank == 0:
            log.warning("GPU stack differs from the tested one (README, GPU clusters): %s", "; ".join(diff))
        return Platform(torch.device("cuda", local_rank), "nccl", torch.bfloat16, cpu_compat=False)
    if torch.cuda.is_available():
        # Forced CPU on a GPU machine: megatron's CUDA calls would hit the real GPU; keep it simple.
        return Platform(_CPU, "gloo", torch.float32, cpu_compat=False)
    apply_cpu_compat()
    return Platform(_CPU, "gloo", torch.float32, cpu_compat=True)


# The one GPU stack the GPU paths were read against (issue 18): vLLM 0.10.1.1 pins torch==2.7.1 in
# its wheel METADATA, torch 2.7.1 pins triton==3.3.1; megatron-core 0.16.1 is the pinned core.
# Transformer Engine is built against that torch (NGC's PyTorch container or `pip install
# transformer-engine[pytorch]` after torch). Not yet run on a GPU: tests/gpu/acceptance.sh is the check.
GPU_STACK: dict[str, str] = {"torch": "2.7.1", "vllm": "0.10.1.1", "triton": "3.3.1", "megatron-core": "0.16.1"}


def stack_differences(installed: dict[str, str | None], target: dict[str, str] | None = None) -> list[str]:
    """'<package> <installed> (tested stack: <target>)' for each package that differs; None = missing.
    Local version tags (2.7.1+cu126) are ignored."""
    target = GPU_STACK if target is None else target
    out = []
    for name, want in target.items():
        got = installed.get(name)
        if got is None:
            out.append(f"{name} not installed (tested stack: {want})")
        elif got.split("+")[0] != want:
            out.append(f"{name} {got} (tested stack: {want})")
    return out


def installed_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in GPU_STACK:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def has_transformer_engine() -> bool:
    """True when Transformer Engine imports and a CUDA GPU is present (the only place that asks)."""
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine.pytorch  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means: not usable
        return False
    return True
