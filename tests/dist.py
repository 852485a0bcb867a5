"""Run a function on N real processes joined by a gloo process group (the multi-rank test tier).

    results = run_distributed(fn, world_size=4, args=(x,))   # fn(rank, world_size, *args) -> picklable

Processes are forked from the test process (imports already done, so a launch costs well under a
second instead of torchrun's 11-15 s), each with one intra-op thread. A failure on any rank raises
in the caller with that rank's traceback; a hang fails after `timeout` seconds.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import traceback
from collections.abc import Callable
from typing import Any

from sweet_megatron.parallel import free_port


def _worker(fn, rank, world_size, port, args, queue) -> None:
    try:
        import torch

        torch.set_num_threads(1)
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
            LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size),
        )
        result = fn(rank, world_size, *args)
        # Serialize to bytes here: torch's multiprocessing pickler would pass tensors through shared
        # memory that vanishes when this process exits before the parent reads it.
        buf = io.BytesIO()
        torch.save(result, buf)
        queue.put((rank, True, buf.getvalue()))
    except BaseException:  # noqa: BLE001 - report every failure to the parent
        queue.put((rank, False, traceback.format_exc()))
    finally:
        try:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass


def run_distributed(fn: Callable[..., Any], world_size: int, args: tuple = (), timeout: float = 300) -> list[Any]:
    """Run fn(rank, world_size, *args) on `world_size` forked processes; return results by rank.

    fn must initialise torch.distributed itself (e.g. sweet_megatron.parallel.initialize), reading
    MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE from the environment.
    """
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(fn, r, world_size, port, args, queue)) for r in range(world_size)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    errors: list[str] = []
    try:
        for _ in range(world_size):
            rank, ok, payload = queue.get(timeout=timeout)
            if ok:
                import torch

                results[rank] = torch.load(io.BytesIO(payload), weights_only=False)
            else:
                errors.append(f"--- rank {rank} ---\n{payload}")
                break
    except Exception as exc:  # queue.Empty on timeout
        errors.append(f"timed out after {timeout}s waiting for ranks ({type(exc).__name__})")
    finally:
        for p in procs:
            p.join(timeout=5 if not errors else 0.5)
            if p.is_alive():
                p.kill()
                p.join()
    if errors:
        raise RuntimeError("distributed test failed:\n" + "\n".join(errors))
    return [results[r] for r in range(world_size)]
