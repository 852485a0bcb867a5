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


def test_shared_prefix_tree_row_hand_computed():
    # two candidate actions after the same 9-token state: the state's first 8 tokens are laid out
    # once; each branch starts with the state's last token (its logits predict the action)
    state = list(range(1, 10))
    a = Sequence(state + [50, 51], [-1] * 9 + [0, 0])
    b = Sequence(state + [60], [-1] * 9 + [0])
    (row,), _ = pack_groups([[a, b]], seq_length=16, pad_id=0, share_prefix=True)
    assert row.tokens.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 50, 51, 9, 60, 0, 0, 0]
    assert row.labels.tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 50, 51, 0, 60, 0, 0, 0, 0]
    assert row.position_ids.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 8, 9, 0, 1, 2]
    assert row.branch_ids.tolist() == [0] * 8 + [1, 1, 1, 2, 2] + [0] * 3
    assert row.doc_ids.tolist() == [0] * 13 + [1] * 3
    assert row.segment_ids.tolist() == [-1] * 8 + [0, 0, -1, 1, -1, -1, -1, -1]
    assert row.segments == [(0, 0), (1, 0)] and row.sequence_index == [0, 1]
    allowed = ~block_causal_mask(row.doc_ids[None], row.branch_ids[None])[0, 0]
    assert allowed[11, :8].all() and allowed[11, 11] and not allowed[11, 8:11].any()  # b sees the prefix, not a
    assert allowed[10, :11].all() and not allowed[10, 11:].any()
    assert not allowed[13, :13].any()  # padding is its own document
    # flat packing of the same group is unchanged
    (flat,), _ = pack_groups([[a, b]], seq_length=24, pad_id=0)
    assert flat.branch_ids is None and flat.tokens.tolist()[:21] == a.ids + b.ids


def test_shared_prefix_stops_before_the_first_labelled_token_and_skips_context_loss():
    from sweet_megatron.data.packing import group_length, merge_groups, shared_prefix_length

    head = list(range(1, 21))
    # the first action (tokens 20..21) is common to both, the second differs: the prefix stops
    # before the action (position 19 predicts the first action token, a label)
    a = Sequence(head + [7, 8, 30], [-1] * 20 + [0, 0, 1])
    b = Sequence(head + [7, 8, 40, 41], [-1] * 20 + [0, 0, 1, 1])
    assert shared_prefix_length([a, b]) == 19
    assert group_length([a, b], share_prefix=True) == 23 + 24 - 19
    lm = Sequence(a.ids, a.turn_of_token, context_weight=0.5)
    assert shared_prefix_length([lm, b]) == 0  # context loss on the prefix: never shared
    assert shared_prefix_length([Sequence([1, 2, 3, 4], [-1, -1, 0, 0])] * 2) == 0  # under MIN_SHARED_PREFIX
    # merging: consecutive equal keys while the tree fits
    merged = merge_groups([[a], [b], [a]], keys=[0, 0, 1], seq_length=64)
    assert [len(g) for g in merged] == [2, 1]
    assert [len(g) for g in merge_groups([[a], [b]], keys=[0, 0], seq_length=27)] == [1, 1]
