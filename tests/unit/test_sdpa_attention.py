"""SDPACoreAttention against plain float64 masked-softmax attention, written out by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.transformer_config import TransformerConfig

from sweet_megatron.attention import SDPACoreAttention
from sweet_megatron.data.packing import block_causal_mask


class _OneRank:
    def size(self) -> int:
        return 1

    def rank(self) -> int:
        return 0


def one_rank_core_attention(cfg: TransformerConfig) -> SDPACoreAttention:
    """SDPACoreAttention as one tensor-parallel rank builds it, without initialising megatron's
    parallel state: DotProductAttention's constructor reads only `pg_collection.tp.size()`
    (megatron/core/transformer/dot_product_attention.py), and the forward no process group."""
    return SDPACoreAttention(cfg, layer_number=1, attn_mask_type=AttnMaskType.causal, attention_type="self",
                             pg_collection=SimpleNamespace(tp=_OneRank()))


def reference(q, k, v, allowed):
    """q [sq, b, np, hn], k/v [sk, b, ng, hn], allowed [b, sq, sk] bool -> [sq, b, np * hn], by loops."""
    sq, b, np_, hn = q.shape
    group = np_ // k.shape[2]
    out = torch.zeros(sq, b, np_, hn, dtype=torch.float64)
    for bi in range(b):
        for h in range(np_):
            kh, vh = k[:, bi, h // group], v[:, bi, h // group]
            for i in range(sq):
                scores = torch.stack([q[i, bi, h] @ kh[j] / math.sqrt(hn) for j in range(k.shape[0])])
                scores = scores.masked_fill(~allowed[bi, i], float("-inf"))
                out[i, bi, h] = torch.softmax(scores, 0) @ vh
    return out.reshape(sq, b, np_ * hn)


@pytest.mark.parametrize("heads,groups", [(6, 6), (6, 2), (6, 3)])
def test_matches_float64_reference(heads, groups):
    hn, sq, b = 5, 13, 3
    cfg = TransformerConfig(num_layers=1, hidden_size=heads * hn, num_attention_heads=heads, num_query_groups=groups,
                            attention_dropout=0.0, params_dtype=torch.float64)
    attn = one_rank_core_attention(cfg)
    g = torch.Generator().manual_seed(heads * 10 + groups)
    q = torch.randn(sq, b, heads, hn, generator=g, dtype=torch.float64)
    k, v = (torch.randn(sq, b, groups, hn, generator=g, dtype=torch.float64) for _ in range(2))
    # packed rows: three dialogues of odd lengths, one row a single dialogue, one with padding-like tail
    doc_ids = torch.tensor([[0] * 5 + [1] * 7 + [2], [0] * 13, [0] * 2 + [1] * 10 + [2]])
    mask = block_causal_mask(doc_ids)  # megatron's convention: True = may not attend
    got = attn(q, k, v, mask)
    torch.testing.assert_close(got, reference(q, k, v, ~mask[:, 0]), rtol=1e-10, atol=1e-10)
    # no mask: plain causal attention
    causal = torch.ones(sq, sq, dtype=torch.bool).tril().expand(b, sq, sq)
    torch.testing.assert_close(attn(q, k, v, None), reference(q, k, v, causal), rtol=1e-10, atol=1e-10)
