"""Packing against hand-computed rows."""

from __future__ import annotations

import pytest
import torch

from sweet_megatron.data.packing import Sequence, block_causal_mask, cu_seqlens, pack_groups, pack_sequences


def test_two_dialogues_in_one_row_hand_computed():
    a = Sequence(ids=[1, 2, 3, 4], turn_of_token=[-1, -1, 0, 0])
    b = Sequence(ids=[5, 6, 7], turn_of_token=[-1, 0, -1])
    (row,) = pack_sequences([a, b], seq_length=10, pad_id=0)
    assert row.tokens.tolist() == [1, 2, 3, 4, 5, 6, 7, 0, 0, 0]
    # position t predicts t+1, never across the boundary between a and b
    assert row.labels.tolist() == [2, 3, 4, 0, 6, 7, 0, 0, 0, 0]
    assert row.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2]
    assert row.doc_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert row.segment_ids.tolist() == [-1, 0, 0, -1, 1, -1, -1, -1, -1, -1]
    assert row.loss_mask.tolist() == [0, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    assert row.segments == [(0, 0), (1, 0)]


def test_block_causal_mask_blocks_other_documents():
    doc = torch.tensor([[0, 0, 1, 1, 1]])
    allowed = ~block_causal_mask(doc)[0, 0]
    expect = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(allowed, expect)
    assert cu_seqlens(doc[0]).tolist() == [0, 2, 5]


def test_groups_stay_together_and_first_fit_decreasing():
    seqs = [Sequence([1] * n, [0] * n) for n in (6, 5, 4, 3)]
    rows, flat = pack_groups([[seqs[0], seqs[3]], [seqs[1]], [seqs[2]]], seq_length=10, pad_id=0)
    placement = [sorted(r.sequence_index) for r in rows]
    assert [0, 1] in placement  # the pair (6 + 3 tokens) shares a row
    assert sorted(i for p in placement for i in p) == [0, 1, 2, 3]
    assert all(sum(len(flat[i].ids) for i in p) <= 10 for p in placement)


def test_too_long_group_names_the_fix():
    with pytest.raises(ValueError, match="model.seq_length"):
        pack_sequences([Sequence([1] * 11, [0] * 11)], seq_length=10, pad_id=0)


def test_context_weight_covers_the_rest_of_the_sequence_but_not_padding():
    # 5 tokens, the last two an agent action: labels at positions 0..3, positions 2..3 predict the action
    seq = Sequence([1, 2, 3, 4, 5], [-1, -1, -1, 0, 0], weight=2.0, context_weight=0.25)
    (row,) = pack_sequences([seq], 8, pad_id=0)
    assert row.loss_mask.tolist() == [0.25, 0.25, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    (plain,) = pack_sequences([Sequence([1, 2, 3, 4, 5], [-1, -1, -1, 0, 0])], 8, pad_id=0)
    assert plain.loss_mask.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
