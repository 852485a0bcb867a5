"""Progress written to a file or a pipe: a line at the first step, then one per interval, and the last."""

import io
import logging

from sweet_megatron.training.metrics import Progress


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_plain_lines_at_a_steady_interval_when_not_a_terminal(caplog):
    clock = _Clock()
    progress = Progress(True, interval_s=30.0, stream=io.StringIO(), clock=clock)
    task = progress.task("sft", 100)
    with caplog.at_level(logging.INFO, logger="sweet_megatron"):
        for _ in range(100):
            clock.t += 2.0  # a step every 2 s: 200 s in all
            progress.advance(task, "loss 1.2345")
    lines = [r.getMessage() for r in caplog.records]
    # the first step, then every 30 s (15 steps) of steps, then the last one
    assert [int(m.split("step ")[1].split("/")[0]) for m in lines] == [1, 16, 31, 46, 61, 76, 91, 100]
    assert lines[0] == "sft: step 1/100, loss 1.2345, 0.5 steps/s, 3m18s left"
    assert lines[-1] == "sft: step 100/100, loss 1.2345, 0.5 steps/s, done"


def test_disabled_is_silent(caplog):
    progress = Progress(False, stream=io.StringIO())
    with caplog.at_level(logging.INFO, logger="sweet_megatron"):
        progress.advance(progress.task("sft", 3))
    assert not caplog.records


def test_a_silent_phase_gets_heartbeat_lines_and_a_chatty_one_none(caplog):
    """A phase that logs nothing (a rollout, the scripted demonstrations) is named every heartbeat
    interval; while other lines flow (training steps), the heartbeat stays quiet."""
    import time

    from sweet_megatron.training.metrics import PhaseTimer, log

    timer = PhaseTimer(heartbeat_s=0.4)
    with caplog.at_level(logging.INFO, logger="sweet_megatron"):
        with timer("collect_rollout"):
            time.sleep(1.5)
        silent = [r.getMessage() for r in caplog.records if "running" in r.getMessage()]
        caplog.clear()
        with timer("sft"):
            for step in range(15):
                time.sleep(0.1)
                log.info("sft: step %d", step)
        chatty = [r.getMessage() for r in caplog.records if "running" in r.getMessage()]
    assert 2 <= len(silent) <= 4, silent
    assert all(m.startswith("phase collect_rollout: running, ") and m.endswith("s so far") for m in silent)
    assert chatty == []
