"""Packed rows attended piece by piece (attention.attend_pieces, data.packing.attention_pieces and
concat_rows) against the dense block mask and against each sequence computed alone, in float64:
forward values and gradients, odd lengths, several documents and shared-prefix trees per row."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from megatron.core.transformer.transformer_config import TransformerConfig

from sweet_megatron.attention import DocumentPieces, attend_pieces
from sweet_megatron.data.packing import (
    attention_pieces,
    block_causal_mask,
    concat_rows,
    pack_groups,
)
from tests.multirank.test_shared_prefix import groups
from tests.unit.test_sdpa_attention import one_rank_core_attention


def rows(seed: int = 0):
    """Tree rows (several groups each, padding tails), flat rows, and one row concatenating them all."""
    g = groups(seed)
    tree, _ = pack_groups(g, 181, pad_id=0, share_prefix=True)
    flat, _ = pack_groups(g[:3], 181, pad_id=0)
    return tree + flat + [concat_rows(tree + flat, pad_id=0)]


def allowed_by(pieces, S: int) -> torch.Tensor:
    allowed = torch.zeros(S, S, dtype=torch.bool)
    for start, end, pre in pieces:
        allowed[start:end, start:end] = torch.ones(end - start, end - start, dtype=torch.bool).tril()
        if pre >= 0:
            allowed[start:end, pieces[pre][0] : pieces[pre][1]] = True
    return allowed


def test_pieces_allow_exactly_what_the_block_mask_allows():
    rs = rows()
    assert any(r.branch_ids is not None for r in rs) and any(r.branch_ids is None for r in rs)
    for r in rs:
        pieces = attention_pieces(r.doc_ids, r.branch_ids)
        assert pieces[0][0] == 0 and pieces[-1][1] == r.tokens.shape[0]
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))  # in order, no gap
        mask = block_causal_mask(r.doc_ids[None], None if r.branch_ids is None else r.branch_ids[None])
        assert torch.equal(allowed_by(pieces, r.tokens.shape[0]), ~mask[0, 0])
    with pytest.raises(ValueError, match="no shared prefix"):
        attention_pieces(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1]))


def test_concat_rows_keeps_every_position():
    rs = rows()[:-1]
    merged = concat_rows(rs, pad_id=0)
    assert merged.used == sum(r.used for r in rs) and merged.tokens.shape[0] % 16 == 0
    assert merged.sequence_index == [s for r in rs for s in r.sequence_index]
    off = 0
    for r in rs:
        n = r.used
        for name in ("tokens", "labels", "loss_mask", "position_ids"):
            assert torch.equal(getattr(merged, name)[off : off + n], getattr(r, name)[:n]), name
        seg = r.segment_ids[:n]
        got = merged.segment_ids[off : off + n]
        assert torch.equal(got < 0, seg < 0)
        assert [merged.segments[int(j)] for j in got[got >= 0]] == [r.segments[int(j)] for j in seg[seg >= 0]]
        off += n
    assert merged.loss_mask[off:].abs().sum() == 0


@pytest.mark.parametrize("heads,groups_", [(6, 6), (6, 2)])
def test_piece_attention_matches_dense_mask_float64(heads, groups_):
    g = torch.Generator().manual_seed(heads + groups_)
    rs = rows(1)
    for pair in ([rs[0], rs[1]], [rs[-1]]):  # two rows of one length in a batch; the long concatenated row
        S = pair[0].tokens.shape[0]
        q = torch.randn(len(pair), heads, S, 5, generator=g, dtype=torch.float64, requires_grad=True)
        k, v = (torch.randn(len(pair), groups_, S, 5, generator=g, dtype=torch.float64, requires_grad=True)
                for _ in range(2))
        w = torch.randn(len(pair), heads, S, 5, generator=g, dtype=torch.float64)
        pieces = [attention_pieces(r.doc_ids, r.branch_ids) for r in pair]
        got = attend_pieces(q, k, v, pieces, scale=None)
        grads = torch.autograd.grad((got * w).sum(), (q, k, v))
        allowed = torch.stack([allowed_by(p, S) for p in pieces])[:, None]
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=heads != groups_)
        want_grads = torch.autograd.grad((want * w).sum(), (q, k, v))
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        for a, b in zip(grads, want_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_piece_attention_equals_each_sequence_alone_float64():
    """Every sequence's outputs in a packed tree row are those of plain causal attention over that
    sequence's own tokens (prefix + its branch), computed alone."""
    g = torch.Generator().manual_seed(3)
    row = rows(2)[-1]
    S, seqs = row.tokens.shape[0], 0
    q = torch.randn(1, 4, S, 3, generator=g, dtype=torch.float64)
    k, v = (torch.randn(1, 2, S, 3, generator=g, dtype=torch.float64) for _ in range(2))
    pieces = attention_pieces(row.doc_ids, row.branch_ids)
    got = attend_pieces(q, k, v, [pieces], scale=0.7)
    for i, (start, end, pre) in enumerate(pieces):
        if pre < 0 and any(p == i for _, _, p in pieces):
            continue  # a shared prefix: checked with each of its branches
        idx = torch.arange(start, end)
        if pre >= 0:
            idx = torch.cat([torch.arange(pieces[pre][0], pieces[pre][1]), idx])
        alone = F.scaled_dot_product_attention(q[:, :, idx], k[:, :, idx], v[:, :, idx], is_causal=True, scale=0.7,
                                               enable_gqa=True)
        torch.testing.assert_close(got[:, :, idx], alone, rtol=1e-12, atol=1e-12)
        seqs += 1
    assert seqs >= 10


def test_core_attention_module_takes_document_pieces():
    cfg = TransformerConfig(num_layers=1, hidden_size=12, num_attention_heads=4, num_query_groups=2,
                            attention_dropout=0.0, params_dtype=torch.float64)
    attn = one_rank_core_attention(cfg)
    row = rows(4)[0]
    S = row.tokens.shape[0]
    g = torch.Generator().manual_seed(5)
    q = torch.randn(S, 1, 4, 3, generator=g, dtype=torch.float64)
    k, v = (torch.randn(S, 1, 2, 3, generator=g, dtype=torch.float64) for _ in range(2))
    params = DocumentPieces(pieces=[attention_pieces(row.doc_ids, row.branch_ids)], max_seqlen_q=S, max_seqlen_kv=S)
    assert params.qkv_format == "sbhd"  # megatron's layers see an ordinary [s, b, h] batch
    mask = block_causal_mask(row.doc_ids[None], None if row.branch_ids is None else row.branch_ids[None])
    torch.testing.assert_close(attn(q, k, v, None, packed_seq_params=params), attn(q, k, v, mask),
                               rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="not both"):
        attn(q, k, v, mask, packed_seq_params=params)
