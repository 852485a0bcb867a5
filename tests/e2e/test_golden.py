"""The short embedded-default run of tests/golden/compare.py logs the golden per-step losses of every
trained stage (sft, critic, critic_noref, actor, rft, mtdpo): a refactor that changes numerics fails here."""

from __future__ import annotations

import pytest

from tests.golden import compare

pytestmark = pytest.mark.e2e


def test_tiny_default_matches_golden_losses(tmp_path):
    run_dir = tmp_path / "run"
    compare.run(run_dir)
    got = compare.losses(run_dir)
    want = compare.losses_from(compare.GOLDEN)
    assert {r["stage"] for r in want} == {"sft", "critic", "critic_noref", "actor", "rft", "mtdpo"}
    assert compare.compare(got, want) is None, compare.compare(got, want)
