"""A stop request on any one rank (a signal, or the stop file) stops every rank at the same step."""

import os
import signal

import pytest
import torch

from sweet_megatron.training.preemption import StopRequest
from tests.dist import run_distributed

pytestmark = pytest.mark.dist


def _agree(rank, world_size, stop_file, requester, how):
    import torch.distributed as dist

    dist.init_process_group("gloo")
    stop = StopRequest(torch.device("cpu"), stop_file)
    stop.install()
    seen = []
    for step in range(6):
        if rank == requester and step == 3:
            if how == "file":
                open(stop_file, "w").close()
            else:
                os.kill(os.getpid(), signal.SIGUSR1)
        seen.append(stop.agreed())
    return seen


@pytest.mark.parametrize("how", ["file", "signal"])
def test_every_rank_agrees_on_the_step_a_stop_was_asked(tmp_path, how):
    stop_file = str(tmp_path / "stop")
    seen = run_distributed(_agree, 3, args=(stop_file, 2, how))
    assert seen == [[False, False, False, True, True, True]] * 3


def test_no_request_no_stop(tmp_path):
    stop = StopRequest(torch.device("cpu"), tmp_path / "absent")
    assert not stop.local() and not stop.agreed()
