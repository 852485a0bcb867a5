"""sweet-convert on a tiny random transformers Llama (GQA, vocab 1001): HF -> megatron at TP2xPP2 gives
transformers' logits; megatron -> HF gives back identical tensors; bad inputs fail cleanly."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from sweet_megatron.checkpoint.convert import main
from tests.dist import run_distributed
from tests.weights.common import TINY, preimport, write_hf_llama

preimport()
# A milder init than TINY's (whose peaked logits serve the greedy tests): logits of order 1, so the
# 1e-5 bound measures the layout, not fp32 rounding of large logits.
MODEL = dataclasses.replace(TINY, init_method_std=0.05)
pytestmark = pytest.mark.dist

TOKENS = torch.tensor([[5, 17, 300, 999, 42, 7, 1000, 3], [1, 2, 3, 4, 5, 6, 7, 8]])


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hf") / "tiny-llama"
    write_hf_llama(path, MODEL, max_shard_size="60KB")  # ~18 safetensors files + index
    return path


@pytest.fixture(scope="module")
def mcore_dir(hf_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mcore") / "tp2pp2"
    assert main(["hf-to-mcore", "--hf-dir", str(hf_dir), "--out", str(out), "--tp", "2", "--pp", "2"]) == 0
    return out


def _megatron_logits(rank, world_size, ckpt, layout, tokens):
    from sweet_megatron.checkpoint.model_io import load_model_checkpoint, model_config_from_meta, read_meta
    from sweet_megatron.model import build_model
    from sweet_megatron.parallel import ParallelConfig, initialize
    from sweet_megatron.rollout.probe import megatron_logits

    cfg = model_config_from_meta(read_meta(ckpt))
    pc = ParallelConfig(**layout)
    chunks = build_model(cfg, pc, initialize(pc, seed=123))  # random init, then overwritten
    load_model_checkpoint(ckpt, chunks)
    return megatron_logits(chunks, tokens, cfg)


def _hf_logits(path, tokens):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=tokens).logits


def test_layout_and_meta(mcore_dir):
    meta = json.loads((mcore_dir / "sweet_meta.json").read_text())
    assert meta["model"]["vocab_size"] == 1001 and meta["model"]["num_query_groups"] == 2
    assert meta["tokenizer"] == {"kind": "hf", "path": "tokenizer"}
    assert (mcore_dir / "tokenizer" / "tokenizer.json").is_file()
    assert not list(mcore_dir.parent.glob("*.tmp-*"))


def test_hf_to_mcore_tp2pp2_matches_transformers(hf_dir, mcore_dir):
    expected = _hf_logits(hf_dir, TOKENS)
    layout = {"tensor_parallel": 2, "pipeline_parallel": 2}
    for logits in run_distributed(_megatron_logits, 4, args=(str(mcore_dir), layout, TOKENS)):
        diff = (logits - expected).abs().max().item()
        assert diff < 1e-5, f"megatron (TP2xPP2) logits differ from transformers' by {diff}"
    print(f"TP2xPP2 max |logit diff| vs transformers: {diff:.2e} (logits up to {expected.abs().max():.2f})")


def test_mcore_to_hf_round_trip_is_exact(hf_dir, mcore_dir, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "back"
    assert main(["mcore-to-hf", "--ckpt", str(mcore_dir), "--out", str(out), "--max-shard-size", "100KB"]) == 0
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    original = json.loads((hf_dir / "model.safetensors.index.json").read_text())["weight_map"]
    assert set(index["weight_map"]) == set(original)
    for name, file in index["weight_map"].items():
        with safe_open(str(out / file), "pt") as f, safe_open(str(hf_dir / original[name]), "pt") as g:
            assert torch.equal(f.get_tensor(name), g.get_tensor(name)), name
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.num_key_value_heads == 2 and model.config.vocab_size == 1001
    assert AutoTokenizer.from_pretrained(str(out)).convert_tokens_to_ids("<|eot_id|>") is not None


def test_any_layout_loads_the_converted_checkpoint(hf_dir, mcore_dir):
    """The TP2xPP2 checkpoint loads at PP2 with virtual stages (dist_checkpointing reshards)."""
    expected = _hf_logits(hf_dir, TOKENS)
    layout = {"pipeline_parallel": 2, "virtual_pipeline": 2}
    for logits in run_distributed(_megatron_logits, 2, args=(str(mcore_dir), layout, TOKENS)):
        assert (logits - expected).abs().max().item() < 1e-5


def test_bf16_checkpoint_stays_bf16_and_loads_into_fp32(tmp_path):
    hf = tmp_path / "bf16"
    write_hf_llama(hf, MODEL, max_shard_size=None, dtype=torch.bfloat16)  # single model.safetensors
    out = tmp_path / "mcore"
    assert main(["hf-to-mcore", "--hf-dir", str(hf), "--out", str(out), "--tp", "2"]) == 0
    assert json.loads((out / "sweet_meta.json").read_text())["dtype"] == "bfloat16"
    (logits,) = run_distributed(_megatron_logits, 1, args=(str(out), {}, TOKENS))
    expected = _hf_logits(hf, TOKENS)  # bf16 weights are exact in fp32 (rope computed in fp32 on both sides)
    assert (logits - expected).abs().max().item() < 1e-5


# ---------------------------------------------------------------------------------------------
# errors: a clear message, exit code 2, nothing written


def _fails(args, capsys, match: str, out: Path):
    existed = out.exists()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "sweet-convert: error:" in err and match in err, err
    assert out.exists() == existed
    assert not list(out.parent.glob(f"{out.name}.tmp-*"))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_not_a_llama_directory(hf_dir, tmp_path, capsys):
    out = tmp_path / "out"
    _fails(["hf-to-mcore", "--hf-dir", str(tmp_path), "--out", str(out)], capsys, "config.json is missing", out)
    bad = _copy(hf_dir, tmp_path / "gpt2")
    cfg = json.loads((bad / "config.json").read_text())
    cfg.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    (bad / "config.json").write_text(json.dumps(cfg))
    _fails(["hf-to-mcore", "--hf-dir", str(bad), "--out", str(out)], capsys, "only Llama", out)


def test_mismatched_shapes(hf_dir, tmp_path, capsys):
    bad = _copy(hf_dir, tmp_path / "shapes")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["intermediate_size"] = 192
    (bad / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    _fails(["hf-to-mcore", "--hf-dir", str(bad), "--out", str(out)], capsys, "do not match config.json", out)


def test_missing_shard(hf_dir, tmp_path, capsys):
    bad = _copy(hf_dir, tmp_path / "missing")
    (bad / "model-00003-of-00018.safetensors").unlink()
    out = tmp_path / "out"
    _fails(["hf-to-mcore", "--hf-dir", str(bad), "--out", str(out)], capsys, "model-00003-of-00018.safetensors", out)


def test_existing_output_is_never_overwritten(hf_dir, mcore_dir, tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep").write_text("mine")
    _fails(["hf-to-mcore", "--hf-dir", str(hf_dir), "--out", str(out)], capsys, "exists", out)
    _fails(["mcore-to-hf", "--ckpt", str(mcore_dir), "--out", str(out)], capsys, "exists", out)
    assert (out / "keep").read_text() == "mine"


def test_not_a_megatron_checkpoint(hf_dir, tmp_path, capsys):
    out = tmp_path / "out"
    _fails(["mcore-to-hf", "--ckpt", str(hf_dir), "--out", str(out)], capsys, "sweet_meta.json is missing", out)


def test_layout_that_does_not_fit(hf_dir, tmp_path, capsys):
    out = tmp_path / "out"
    _fails(["hf-to-mcore", "--hf-dir", str(hf_dir), "--out", str(out), "--tp", "4"], capsys, "num_query_groups", out)


def test_tied_embeddings_convert_both_ways_and_match_transformers(tmp_path):
    """A tied Llama (as Llama 3.2 1B/3B): one shared matrix in megatron at TP2, transformers'
    logits, and back to HF without an lm_head tensor."""
    from safetensors import safe_open

    tied = dataclasses.replace(MODEL, tie_embeddings=True)
    hf = tmp_path / "tied"
    write_hf_llama(hf, tied, max_shard_size=None)
    assert json.loads((hf / "config.json").read_text())["tie_word_embeddings"] is True
    out = tmp_path / "mcore"
    assert main(["hf-to-mcore", "--hf-dir", str(hf), "--out", str(out), "--tp", "2"]) == 0
    assert json.loads((out / "sweet_meta.json").read_text())["model"]["tie_embeddings"] is True
    expected = _hf_logits(hf, TOKENS)
    for logits in run_distributed(_megatron_logits, 2, args=(str(out), {"tensor_parallel": 2}, TOKENS)):
        assert (logits - expected).abs().max().item() < 1e-5
    back = tmp_path / "back"
    assert main(["mcore-to-hf", "--ckpt", str(out), "--out", str(back)]) == 0
    written = {}
    for file in back.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            written |= {name: f.get_tensor(name) for name in f.keys()}
    with safe_open(str(hf / "model.safetensors"), "pt") as g:
        assert set(written) == set(g.keys()) and "lm_head.weight" not in written
        for name, tensor in written.items():
            assert torch.equal(tensor, g.get_tensor(name)), name
