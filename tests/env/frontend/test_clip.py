"""The optional CLIP term of the page similarity, with a tiny randomly initialised CLIPModel saved to
a temporary directory (no weights are downloaded): identical pages give cosine 1, the term enters
the score with its documented weight, and it is off (and says so) when no model is configured."""

import logging

import numpy as np
import pytest

from sweet_megatron.env.colbench_frontend import similarity
from sweet_megatron.env.colbench_frontend.render import Box, RenderResult
from sweet_megatron.env.colbench_frontend.similarity import (
    CLIP_ENV,
    CLIP_WEIGHT,
    WEIGHTS,
    ClipScorer,
    clip_status,
    page_similarity,
)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    out = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "vocab_size": 64, "max_position_embeddings": 16,
                                  "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
                     vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                     projection_dim=8)
    CLIPModel(cfg).save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def page(seed: int, height: int = 200, width: int = 96) -> RenderResult:
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 255, np.uint8)
    image[20:120, 10:80] = rng.integers(0, 255, 3, dtype=np.uint8)
    image[130:180] = rng.integers(0, 255, (50, width, 3), dtype=np.uint8)
    return RenderResult(image, f"page {seed} words", [Box(10, 20, 70, 100, "div", None, (0, 0, 0), "x")], height)


def test_identical_pages_give_cosine_one(tiny_clip_dir):
    scorer = ClipScorer(tiny_clip_dir)
    a, b = page(0), page(1)
    ea = scorer.page_embeddings(a)
    assert ea.shape == (3, 8)  # 200 rows / 96 wide -> 3 square tiles
    assert np.allclose(np.linalg.norm(ea, axis=1), 1.0, atol=1e-5)
    assert scorer.cosine(ea, scorer.page_embeddings(page(0)), 96) == pytest.approx(1.0, abs=1e-5)
    assert scorer.similarity(a, page(0)) == pytest.approx(1.0, abs=1e-5)
    assert scorer.cosine(ea, scorer.page_embeddings(b), 96) < 1.0 - 1e-4
    assert 0.0 <= scorer.similarity(b, a) < 1.0


def test_embedding_is_clips_own(tiny_clip_dir):
    """Our tile embedding equals CLIPModel.forward's normalised image_embeds for the same pixels."""
    import torch

    scorer = ClipScorer(tiny_clip_dir)
    tile = ClipScorer.tiles(page(2).image)[1]
    pixels = scorer.processor(images=[tile], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = scorer.model(input_ids=torch.tensor([[0, 5, 1]]), pixel_values=pixels).image_embeds
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    assert np.allclose(scorer.embed([tile]), ref, atol=1e-5)


def test_clip_term_enters_the_score_with_its_weight(tiny_clip_dir):
    scorer = ClipScorer(tiny_clip_dir)
    a, b = page(0), page(1)
    base = page_similarity(b, a, clip=None)
    with_clip = page_similarity(b, a, clip=scorer)
    assert base.clip is None and "clip" not in base.as_dict()
    four = sum(WEIGHTS[k] * getattr(base, k) for k in WEIGHTS)
    assert base.score == pytest.approx(four)
    assert with_clip.clip == pytest.approx(scorer.similarity(b, a))
    assert with_clip.score == pytest.approx((1 - CLIP_WEIGHT) * four + CLIP_WEIGHT * with_clip.clip)
    assert page_similarity(a, page(0), clip=scorer).score == pytest.approx(1.0, abs=1e-5)


def test_env_var_turns_it_on_and_its_absence_off(tiny_clip_dir, tmp_path, monkeypatch, caplog):
    similarity._default_clip.clear()
    a, b = page(0), page(1)
    monkeypatch.delenv(CLIP_ENV, raising=False)
    assert clip_status().startswith(f"CLIP term off: {CLIP_ENV} is unset")
    assert page_similarity(b, a).clip is None
    missing = tmp_path / "no-such-clip"
    monkeypatch.setenv(CLIP_ENV, str(missing))
    with caplog.at_level(logging.WARNING, logger=similarity.__name__):
        assert page_similarity(b, a).clip is None
    assert f"CLIP term off: {CLIP_ENV}={missing} is not a directory" in caplog.text
    monkeypatch.setenv(CLIP_ENV, str(tiny_clip_dir))
    assert clip_status().startswith("CLIP term on")
    assert page_similarity(b, a).clip == pytest.approx(ClipScorer(tiny_clip_dir).similarity(b, a))
    similarity._default_clip.clear()


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"set {CLIP_ENV}"):
        ClipScorer(tmp_path / "absent")
    with pytest.raises(ValueError, match="clip='on'"):
        page_similarity(page(0), page(1), clip="on")
