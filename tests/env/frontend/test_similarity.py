"""The whole-page similarity: hand-checked parts, and on the 50 real reference pages: each scores
highest against itself, a page differing in one hidden detail scores in between, a blank page
lowest of all."""

import re

import numpy as np
import pytest

from sweet_megatron.env.colbench_frontend.render import Box, RenderConfig, RenderResult, blank_result
from sweet_megatron.env.colbench_frontend.similarity import (
    colour_similarity,
    layout_similarity,
    page_similarity,
    similarity_matrix,
    text_similarity,
    visual_similarity,
    win_rate,
)


def test_colour_intersection_by_hand():
    a = np.zeros((64, 64, 3), np.uint8)
    b = a.copy()
    b[:16] = 255  # a quarter of b is white, the rest black like a
    assert colour_similarity(a, b) == pytest.approx(0.75)
    assert colour_similarity(a, a) == 1.0


def test_text_similarity_by_hand():
    # words a b c d vs a b d e: ratio 2*3/8 = 0.75 (matching blocks "a b", "d"), bag F1 2*3/8 = 0.75
    assert text_similarity("A b, c d", "a B d e") == pytest.approx(0.75)
    # reversed order: the bag is equal (F1 1), the sequence ratio is 2*1/4 = 0.5
    assert text_similarity("x y z w", "w z y x") == pytest.approx(0.5 * (0.25 + 1.0))
    assert text_similarity("", "") == 1.0 and text_similarity("a", "") == 0.0


def test_layout_by_hand():
    white = np.full((64, 64, 3), 255, np.uint8)
    a = RenderResult(white, boxes=[Box(0, 0, 64, 32, "div", None, (0, 0, 0), "")])
    b = RenderResult(white, boxes=[Box(0, 0, 64, 64, "div", None, (0, 0, 0), "")])
    # a covers the two top rows of 32-px cells (4 cells: rows 0-1 since the box's end lands on row 1),
    # b all of the 2x2 grid: 4 of 4 -> counted on a 2x2 grid a covers all 4 cells as well.
    assert layout_similarity(a, a) == 1.0
    c = RenderResult(white, boxes=[Box(0, 0, 20, 20, "div", None, (0, 0, 0), "")])
    assert layout_similarity(c, b) == pytest.approx(1 / 4)
    assert layout_similarity(RenderResult(white), b) == 0.0


def test_visual_padding_counts_missing_content():
    rng = np.random.default_rng(0)
    page = rng.integers(0, 255, (400, 320, 3), dtype=np.uint8)
    assert visual_similarity(page, page) == pytest.approx(1.0)
    assert visual_similarity(page, page[:200]) < visual_similarity(page, page[:380]) < 1.0


def test_win_rate():
    assert win_rate([0.9, 0.5, 0.3, 0.7], [0.8, 0.6, 0.3, 0.1]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    with pytest.raises(ValueError, match="one of each per task"):
        win_rate([0.1], [])


def one_detail_variant(html: str) -> str:
    """The page with its first background colour class changed (one hidden detail)."""
    m = re.search(r"\bbg-(gray|green|blue|red|yellow|indigo|purple|pink|white|black)(-\d{2,3})?\b", html)
    assert m, html[:300]
    new = "bg-pink-600" if m.group(1) != "pink" else "bg-green-600"
    return html[:m.start()] + new + html[m.end():]


@pytest.mark.slow
def test_real_references_match_themselves_best(reference_renders):
    scores = similarity_matrix(reference_renders, reference_renders)
    assert np.allclose(scores.diagonal(), 1.0)
    assert [int(scores[i].argmax()) for i in range(50)] == list(range(50))
    off = scores[~np.eye(50, dtype=bool)]
    assert off.max() < 0.8


@pytest.mark.slow
def test_one_detail_in_between_and_blank_below(pool, frontend_tasks, reference_renders):
    indices = [0, 7, 13, 21, 34]
    variants = pool.render([one_detail_variant(frontend_tasks[i].ground_truth) for i in indices])
    blank = blank_result(RenderConfig())
    for i, variant in zip(indices, variants):
        ref = reference_renders[i]
        v = page_similarity(variant, ref).score
        others = [page_similarity(reference_renders[j], ref).score for j in range(50) if j != i]
        b = page_similarity(blank, ref).score
        assert b < v < 1.0, (i, b, v)
        assert v > max(others), (i, v, max(others))
        assert b == pytest.approx(0.0, abs=1e-9) and b < min(others), (i, b, min(others))
