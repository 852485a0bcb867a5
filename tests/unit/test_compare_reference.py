"""`sweet-bench train --compare reference`: the reference way's log-prob against float64 math, and the
two ways agreeing on the first step's loss (same weights, same sequences, two computations)."""

import json
import subprocess
import sys

import torch

from sweet_megatron.bench.compare_reference import reference_logprob_nll


def test_reference_nll_is_log_softmax_gather_in_float64():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 13, generator=g) * 4
    labels = torch.randint(0, 13, (7,), generator=g)
    mask = torch.tensor([0, 1, 1, 0, 1, 1, 1], dtype=torch.float32)
    want = 0.0
    for s in range(7):
        row = logits[s].double()
        want -= float(mask[s]) * float(row[labels[s]] - torch.logsumexp(row, 0))
    assert abs(float(reference_logprob_nll(logits, labels, mask)) - want) < 1e-4


def test_both_ways_train_the_same_model_on_the_same_dialogues(tmp_path):
    out = tmp_path / "cmp.json"
    proc = subprocess.run([sys.executable, "-m", "sweet_megatron.bench.cli", "train", "--compare", "reference",
                           "--pairs", "6", "--steps", "1", "--warmup", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    ours, ref = res["ours"], res["reference"]
    # packed shared-prefix rows with fused log-probs vs one sequence per micro-batch with full logits:
    # the same loss before any update
    assert abs(ours["first_step_loss"] - ref["first_step_loss"]) < 1e-4 * abs(ref["first_step_loss"])
    assert ref["rows_per_step"] == 6 and ours["rows_per_step"] <= 3  # 3 pairs a step, one row per sequence
    assert res["speedup"] == round(ours["tokens_per_s"] / ref["tokens_per_s"], 3) > 0
