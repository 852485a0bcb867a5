"""Benchmark: fused (chunked) label log-probs vs the naive full-logits path, time and peak memory.

    python -m sweet_kernels.bench_segment_logprob --tokens 4096 --hidden 512 --vocab 32000

Both paths compute logp_T for all T tokens and backpropagate a random grad_T into hidden and weight
(T tokens, H hidden dim, V vocab). Each path runs in its own fresh process, so one path's freed
memory (kept by the allocator) cannot hide the other's peak. Peak memory is the growth over the
process's footprint once the inputs exist: on CUDA `torch.cuda.max_memory_allocated`, on the CPU the
growth of the resident set's high-water mark (see `PeakMemory`). Times (wall, and CPU time of all
threads) are medians over --repeats after one warm-up; on a shared machine trust the CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import psutil
import torch

from sweet_kernels import default_chunk_size, fused_linear_logprob
from sweet_kernels.reference import full_logits_logprob
from sweet_kernels.segment_logprob import select_backend


class PeakMemory:
    """Peak bytes above the level at entry: CUDA allocator stats, or the CPU process's RSS high-water mark.

    On the CPU the run must come first in a fresh process (the kernel's high-water mark then starts
    at the current RSS), and glibc must hand large blocks straight back to the OS
    (MALLOC_MMAP_THRESHOLD_, set by `main` for its child processes): otherwise freed chunks stay
    in the heap and the RSS measures fragmentation, not live tensors.
    """

    def __init__(self, device: torch.device):
        self.device, self.peak, self.upper_bound = device, 0, False

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = psutil.Process().memory_info().rss
            self.high_water = _max_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            high_water = _max_rss()
            # Unchanged mark: the run stayed below an earlier peak (e.g. imports); the figure is an upper bound.
            self.upper_bound = high_water == self.high_water
            self.peak = high_water - self.base


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_one(path: str, args: argparse.Namespace) -> dict:
    """Time and peak memory of one path ("fused" or "naive"), in this process."""
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    hidden_TH = torch.randn(args.tokens, args.hidden, generator=gen, device=device, dtype=dtype).requires_grad_()
    weight_VH = (torch.randn(args.vocab, args.hidden, generator=gen, device=device) / args.hidden**0.5).to(dtype)
    weight_VH.requires_grad_()
    labels_T = torch.randint(0, args.vocab, (args.tokens,), generator=gen, device=device)
    grad_T = torch.randn(args.tokens, generator=gen, device=device)

    def forward():
        if path == "fused":
            return fused_linear_logprob(hidden_TH, weight_VH, labels_T, chunk_size=args.chunk_size, backend=args.backend)
        return full_logits_logprob(hidden_TH, weight_VH, labels_T)

    def forward_backward():
        forward().backward(grad_T)
        hidden_TH.grad = weight_VH.grad = None

    with PeakMemory(device) as memory:  # first, in a fresh process (see PeakMemory)
        forward_backward()
    forward_backward()  # warm-up for the timings
    times = {}
    for name, fn in (("forward", lambda: forward().sum().item()), ("forward_backward", forward_backward)):
        wall, cpu = [], []
        for _ in range(args.repeats):
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            wall.append(1e3 * (time.perf_counter() - start))
            cpu.append(1e3 * (time.process_time() - start_cpu))
        # CPU time of all this process's threads: steadier than wall time when the machine is shared.
        times[f"{name}_ms"], times[f"{name}_cpu_ms"] = statistics.median(wall), statistics.median(cpu)
    return dict(path=path, peak_mb=memory.peak / 2**20, peak_is_upper_bound=memory.upper_bound, **times)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096, help="T, tokens")
    parser.add_argument("--hidden", type=int, default=512, help="H, hidden dim")
    parser.add_argument("--vocab", type=int, default=32000, help="V, vocabulary")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="inputs' dtype")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="tokens per chunk of the fused path (None: default_chunk_size's rule)")
    parser.add_argument("--backend", default="auto", choices=["auto", "triton", "torch"],
                        help="the fused path's row kernels: triton needs CUDA or TRITON_INTERPRET=1; auto picks")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where both run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path (medians are reported)")
    parser.add_argument("--only", choices=["fused", "naive"], help=argparse.SUPPRESS)  # one path, JSON out
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.only:
        print(json.dumps(run_one(args.only, args)))
        return

    try:  # the child would fail the same way: say why here, in one line
        select_backend(torch.device(args.device), args.backend)
    except RuntimeError as exc:
        sys.exit(f"bench_segment_logprob: --backend {args.backend} on {args.device}: {exc}")
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    results = []
    for path in ("naive", "fused"):
        out = subprocess.run(
            [sys.executable, "-m", "sweet_kernels.bench_segment_logprob", *passthrough, "--only", path],
            capture_output=True, text=True, env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576"},
        )
        if out.returncode != 0:  # the child's reason (its last line), not a bare CalledProcessError
            reason = (out.stderr.strip().splitlines() or ["no output"])[-1]
            sys.exit(f"bench_segment_logprob: the {path} path failed (exit {out.returncode}): {reason}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    element = torch.finfo(getattr(torch, args.dtype)).bits // 8
    chunk = args.chunk_size or default_chunk_size(args.tokens, args.hidden, args.vocab)
    print(
        f"T={args.tokens} H={args.hidden} V={args.vocab} {args.dtype} on {args.device}, chunk={chunk} tokens; "
        f"full logits alone: {args.tokens * args.vocab * element / 2**20:.0f} MB, "
        f"one chunk: {chunk * args.vocab * element / 2**20:.1f} MB"
    )
    print(f"{'path':<8}{'fwd ms':>10}{'fwd+bwd ms':>12}{'fwd+bwd cpu-ms':>16}{'peak MB (fwd+bwd)':>20}")
    for r in results:
        bound = " (upper bound)" if r["peak_is_upper_bound"] else ""
        print(f"{r['path']:<8}{r['forward_ms']:>10.1f}{r['forward_backward_ms']:>12.1f}"
              f"{r['forward_backward_cpu_ms']:>16.1f}{r['peak_mb']:>20.1f}{bound}")
    naive, fused = results
    print(f"fused / naive: fwd+bwd wall x{fused['forward_backward_ms'] / naive['forward_backward_ms']:.2f}, "
          f"cpu x{fused['forward_backward_cpu_ms'] / naive['forward_backward_cpu_ms']:.2f}, "
          f"peak memory x{fused['peak_mb'] / max(naive['peak_mb'], 1e-9):.3f}")


if __name__ == "__main__":
    main()
