"""Local worker processes for the command-line tools (sweet-convert, sweet-bench).

`run_local_workers(fn, world, args)` forks `world` processes joined by torch.distributed over gloo
(MASTER_ADDR/PORT, RANK, WORLD_SIZE set as torchrun would) and returns fn(rank, world, *args) by
rank. The first failure stops the others and raises `WorkerError` with that worker's message.
Fork, not spawn: the workers inherit the imports already done (megatron-core takes ~10 s to
import), so call it before the parent holds much memory (children count inherited pages in RSS).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from collections.abc import Callable
from typing import Any

from sweet_megatron.parallel import free_port


class WorkerError(RuntimeError):
    """A worker process failed; the message holds its error."""


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes() -> int:
    """This process's current resident set size (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _worker_main(fn, rank: int, world: int, port: int, args: tuple, queue, threads: int) -> None:
    try:
        import torch

        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
        torch.set_num_threads(threads)
        queue.put((rank, True, fn(rank, world, *args)))
    except BaseException as exc:  # noqa: BLE001 - report every failure to the parent
        msg = f"{type(exc).__name__}: {exc}" if isinstance(exc, ValueError) else traceback.format_exc()
        queue.put((rank, False, msg))
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def run_local_workers(fn: Callable[..., Any], world: int, args: tuple = (), threads: int | None = None) -> list[Any]:
    """fn(rank, world, *args) on `world` forked gloo processes; their results by rank."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    port = free_port()
    threads = threads or max(1, (os.cpu_count() or 1) // world)
    procs = [ctx.Process(target=_worker_main, args=(fn, r, world, port, args, queue, threads)) for r in range(world)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    try:
        while len(results) < world:
            rank, ok, payload = queue.get()
            if not ok:
                raise WorkerError(f"worker {rank} failed: {payload}")
            results[rank] = payload
    finally:
        for p in procs:
            p.join(timeout=10 if len(results) == world else 0.1)
            if p.is_alive():
                p.kill()
                p.join()
    return [results[r] for r in range(world)]
