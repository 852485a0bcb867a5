"""Probe batch rules for GPU layouts (issue 18 #2, #3): where the tokens go, how long the rows are."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sweet_megatron.rollout.probe import _right_pad, model_device, padded_length


@pytest.mark.parametrize(("longest", "multiple", "want"), [(13, 1, 13), (13, 2, 14), (13, 8, 16), (16, 8, 16),
                                                          (1, 4, 4), (60, 8, 64)])
def test_probe_rows_are_padded_to_a_multiple_of_tp(longest, multiple, want):
    assert padded_length(longest, multiple) == want
    rows = _right_pad([[1] * longest, [2, 3]], pad=0, multiple=multiple)
    assert rows.shape == (2, want)
    assert rows[0, :longest].eq(1).all() and rows[1, 2:].eq(0).all()


def test_bad_lengths_are_refused():
    with pytest.raises(ValueError, match="must be >= 1"):
        padded_length(0, 2)


def test_probe_tokens_follow_the_model_device():
    """The default device is the chunks' parameters' own (a CUDA model gets CUDA tokens)."""
    on_meta = torch.nn.Linear(2, 2, device="meta")
    assert model_device([on_meta]) == torch.device("meta")
    assert model_device([torch.nn.Identity(), on_meta]) == torch.device("meta")


def _pad_multiple(rank, world_size, sp):
    from sweet_megatron.parallel import ParallelConfig, initialize
    from sweet_megatron.rollout.probe import pad_multiple

    initialize(ParallelConfig(tensor_parallel=2), seed=0)
    return pad_multiple([SimpleNamespace(config=SimpleNamespace(sequence_parallel=sp))])


def test_pad_multiple_is_tp_only_with_sequence_parallelism():
    from tests.dist import run_distributed

    assert run_distributed(_pad_multiple, 2, args=(True,)) == [2, 2]
    assert run_distributed(_pad_multiple, 2, args=(False,)) == [1, 1]
