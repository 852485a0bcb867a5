"""`sweet-bench train`: the model-FLOPs formula against torch's FLOP counter on a Hugging Face Llama,
and the benchmark itself on one rank and on two (tp=2)."""

from __future__ import annotations

import json

import pytest
import torch

from sweet_megatron.bench.train_step import llama_train_flops, main, random_rows
from sweet_megatron.model import ModelConfig
from tests.dist import run_distributed


@pytest.mark.parametrize("layers, hidden, ffn, heads, kv, vocab, n", [(2, 64, 160, 4, 2, 97, 37), (3, 96, 64, 6, 6, 50, 16)])
def test_flops_match_torch_flop_counter_on_hf_llama(layers, hidden, ffn, heads, kv, vocab, n):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaForCausalLM

    from sweet_megatron.weights.llama_mapping import hf_config_from_model_config

    cfg = ModelConfig(num_layers=layers, hidden_size=hidden, ffn_hidden_size=ffn, num_attention_heads=heads,
                      num_query_groups=kv, vocab_size=vocab, seq_length=64, rope_scaling=False)
    hf = hf_config_from_model_config(cfg)
    hf._attn_implementation = "eager"  # attention as two batched matmuls the counter sees
    model = LlamaForCausalLM(hf)
    ids = torch.randint(0, vocab, (1, n))
    counter = FlopCounterMode(display=False)
    with counter:
        model(ids).logits.float().sum().backward()
    assert counter.get_total_flops() == llama_train_flops(layers, hidden, ffn, heads, kv, vocab, [n])


def test_flops_count_each_packed_document_by_hand():
    # one layer, h=2, ffn=1, 1 head, 1 kv head, vocab 3: per token 2*(2*(2+4) + 4 + 6 + 6) = 56 forward
    # matmul FLOPs; attention 4*n^2*2 per document: documents of 3 and 1 tokens add 72 + 8.
    assert llama_train_flops(1, 2, 1, 1, 1, 3, [3, 1]) == 3 * (56 * 4 + 72 + 8)


def test_random_rows_fill_every_row_with_documents():
    rows, lengths = random_rows(3, 100, 50, 20, 45, seed=1)
    assert len(rows) == 3 and sum(lengths) == 300 and all(n <= 45 for n in lengths)
    docs = iter(lengths)
    for row in rows:
        assert int((row.doc_ids < len(row.sequence_index)).sum()) == 100  # no padding
        sizes = torch.bincount(row.doc_ids).tolist()
        assert sizes == [next(docs) for _ in row.sequence_index]  # one block per document, in order


def _bench(rank, world_size, tmp):
    args = ["--model", "tiny", "--parallel", "tp2" if world_size == 2 else "single", "--rows", "2",
            "--seq-length", "128", "--min-doc", "16", "--max-doc", "64", "--warmup", "1", "--steps", "2",
            "--peak-tflops", "1.0", "--json", f"{tmp}/r{world_size}.json"]
    assert main(args) == 0
    return None


@pytest.mark.dist
@pytest.mark.parametrize("world_size", [1, 2])
def test_bench_reports_throughput_and_mfu(tmp_path, world_size):
    run_distributed(_bench, world_size, args=(str(tmp_path),))
    got = json.loads((tmp_path / f"r{world_size}.json").read_text())
    assert got["tokens_per_step"] == 256 and got["padding_fraction"] == 0.0
    assert got["layout"].startswith(f"tp={world_size} pp=1 dp=1 ({world_size} processes")
    assert got["tokens_per_s"] == pytest.approx(256 / got["step_s_median"], rel=1e-3)
    assert got["mfu"] == pytest.approx(got["model_tflops"] / world_size, rel=1e-2)
