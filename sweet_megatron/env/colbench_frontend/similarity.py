"""How close a rendered page is to the reference page: a score in [0, 1] over the WHOLE page.

The reference implementation scores with CLIP image embeddings of a 224-pixel centre crop, which
sees a thin band of a tall page. This metric looks at all of it, from four parts:

    score = 0.4 * visual + 0.2 * colour + 0.2 * layout + 0.2 * text        (WEIGHTS)

- visual: structural similarity (scikit-image's `structural_similarity`, grey levels) averaged over
  a three-level pyramid (block means: the page at 1/4, 1/8 and 1/16 of its width: 320, 160 and 80
  pixels), each level of both pages padded with white to the taller one's height, so missing or extra sections count. This is
  a multi-scale SSIM in spirit (Wang et al. 2003 weight contrast and structure per scale and
  luminance at the coarsest only; here each scale's full SSIM is averaged with equal weights).
- colour: histogram intersection of the two pages' colour distributions (RGB, 8 levels per
  channel, 512 bins, each page's own pixels without padding).
- layout: the rendered element boxes (from the DOM) drawn on a 32-pixel grid, each cell counting
  how many boxes cover it (nesting depth); weighted Jaccard sum(min)/sum(max) of the two grids.
  Section order, sizes and columns move it.
- text: the visible text (innerText) as lower-case words: mean of difflib's sequence ratio (order
  matters) and the bag-of-words F1 (order does not).

Visual and colour are measured as improvement over a blank page: a white page of the reference's
size already shares much structure and colour with a light page, so each is rescaled as
`above_blank(value, blank) = clip((value - blank) / (1 - blank), 0, 1)` where `blank` is what a
white page gets against the same reference. Identical renders score exactly 1; an empty or failed
page (a white viewport, no text, no boxes) scores 0 on every part, the lowest possible.

Optional CLIP term (off unless its weights are on disk): with a CLIP model directory named by
`$SWEET_CLIP_MODEL` (or passed as `clip=ClipScorer(path)`), loaded with transformers' CLIPModel and
CLIPImageProcessor with `local_files_only=True` (nothing is ever downloaded), the score becomes

    score = (1 - CLIP_WEIGHT) * (the four-part score above) + CLIP_WEIGHT * clip      (CLIP_WEIGHT = 0.2)

where `clip` is the cosine of the two pages' CLIP image embeddings over the whole page: each page
is cut into square tiles of its width (the last padded white, the shorter page padded with white
tiles), the cosine taken tile by tile and averaged, and rescaled with `above_blank` against a white
page like visual and colour. When the variable is unset or names no directory the term is off,
`clip_status()` says why (a warning is logged once), and the score is the four-part one.

`win_rate(agent, baseline)`: the share of tasks where the agent's page scores higher than the
baseline agent's page for the same task (ties count half), the paper's frontend metric.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweet_megatron.env.base import win_rate  # noqa: F401 (re-exported: the frontend's win rate)
from sweet_megatron.env.colbench_frontend.render import RenderResult

WEIGHTS = {"visual": 0.4, "colour": 0.2, "layout": 0.2, "text": 0.2}
CLIP_WEIGHT = 0.2
CLIP_ENV = "SWEET_CLIP_MODEL"
log = logging.getLogger(__name__)
GRID_PX = 32
_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")


@dataclass
class PageScore:
    """The score and its parts, each in [0, 1]."""

    score: float
    visual: float
    colour: float
    layout: float
    text: float
    clip: float | None = None
    """The CLIP term (above blank) when it is on, else None."""

    def as_dict(self) -> dict[str, float]:
        out = {"score": self.score, "visual": self.visual, "colour": self.colour,
               "layout": self.layout, "text": self.text}
        if self.clip is not None:
            out["clip"] = self.clip
        return out


def _grey(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 -> [H, W] float64 in [0, 1] (ITU-R 601 luma)."""
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def _pad_to(grey: np.ndarray, height: int) -> np.ndarray:
    if grey.shape[0] >= height:
        return grey
    return np.vstack([grey, np.ones((height - grey.shape[0], grey.shape[1]))])


def pyramid(image: np.ndarray, levels: int = 3) -> list[np.ndarray]:
    """Grey levels of an [H, W, 3] page at 1/4, 1/8, ... of its size (block means)."""
    from skimage.measure import block_reduce

    grey = block_reduce(_grey(image), (4, 4), np.mean, cval=1.0)
    out = [grey]
    for _ in range(levels - 1):
        out.append(block_reduce(out[-1], (2, 2), np.mean, cval=1.0))
    return out


def visual_similarity(a: np.ndarray | list, b: np.ndarray | list) -> float:
    """Mean SSIM over the pyramids of two pages (images or their `pyramid`s), each level padded
    white to the taller page's height."""
    from skimage.metrics import structural_similarity

    pa = pyramid(a) if isinstance(a, np.ndarray) else a
    pb = pyramid(b) if isinstance(b, np.ndarray) else b
    if pa[0].shape[1] != pb[0].shape[1]:
        raise ValueError(f"visual_similarity: pages of different widths ({pa[0].shape[1]} and {pb[0].shape[1]} at 1/4)")
    values = []
    for ga, gb in zip(pa, pb):
        height = max(ga.shape[0], gb.shape[0])
        ga, gb = _pad_to(ga, height), _pad_to(gb, height)
        if min(ga.shape) < 7:
            break
        values.append(structural_similarity(ga, gb, data_range=1.0))
    return float(np.clip(np.mean(values), 0.0, 1.0))


def colour_histogram(image: np.ndarray, levels: int = 8) -> np.ndarray:
    """[levels**3] normalised joint RGB histogram of an [H, W, 3] uint8 page."""
    q = (image.astype(np.int64) * levels) // 256
    codes = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    hist = np.bincount(codes.ravel(), minlength=levels ** 3).astype(np.float64)
    return hist / hist.sum()


def colour_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram intersection (sum of bin-wise minima) of the two pages' colour histograms."""
    return float(np.minimum(colour_histogram(a), colour_histogram(b)).sum())


def layout_grid(result: RenderResult, width: int, height: int) -> np.ndarray:
    """[ceil(height/32), ceil(width/32)] count of element boxes covering each 32-pixel cell."""
    rows, cols = -(-height // GRID_PX), -(-width // GRID_PX)
    grid = np.zeros((rows + 1, cols + 1), np.float64)
    for box in result.boxes:
        r0, c0 = int(max(box.y, 0) // GRID_PX), int(max(box.x, 0) // GRID_PX)
        r1 = min(int((box.y + box.h) // GRID_PX), rows - 1)
        c1 = min(int((box.x + box.w) // GRID_PX), cols - 1)
        if r1 < r0 or c1 < c0:
            continue
        # A difference array: +1 at the box's corner, -1 past its ends, summed below.
        grid[r0, c0] += 1
        grid[r0, c1 + 1] -= 1
        grid[r1 + 1, c0] -= 1
        grid[r1 + 1, c1 + 1] += 1
    return grid.cumsum(0).cumsum(1)[:rows, :cols]


def layout_similarity(a: RenderResult, b: RenderResult) -> float:
    """Weighted Jaccard of the two pages' box-depth grids (1 when neither has a box)."""
    width = max(a.image.shape[1], b.image.shape[1])
    height = max(a.image.shape[0], b.image.shape[0])
    ga, gb = layout_grid(a, width, height), layout_grid(b, width, height)
    top = np.maximum(ga, gb).sum()
    return 1.0 if top == 0 else float(np.minimum(ga, gb).sum() / top)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def text_similarity(a: str, b: str) -> float:
    """Mean of difflib's ratio over the word sequences and the bag-of-words F1 (1 when both empty)."""
    wa, wb = words(a), words(b)
    return _text_from(_Features([], np.zeros(0), wa, Counter(wa)), _Features([], np.zeros(0), wb, Counter(wb)))


def above_blank(value: float, blank: float) -> float:
    """How much of the way from a blank page's similarity to 1 a page got: (value - blank) / (1 - blank),
    clipped to [0, 1] (value itself when a blank page already matches)."""
    if blank >= 1.0:
        return value
    return float(np.clip((value - blank) / (1.0 - blank), 0.0, 1.0))


@dataclass
class _Features:
    pyramid: list[np.ndarray]
    histogram: np.ndarray
    words: list[str]
    counts: Counter
    blank_visual: float = 0.0
    """visual_similarity of this page against a white page of its size."""
    blank_colour: float = 0.0


def _features(result: RenderResult) -> _Features:
    """Per-page parts of the metric, computed once per RenderResult (kept on the object)."""
    cached = getattr(result, "_similarity_features", None)
    if cached is None:
        w = words(result.text)
        pyr, hist = pyramid(result.image), colour_histogram(result.image)
        white = np.full_like(result.image, 255)
        cached = _Features(pyr, hist, w, Counter(w), visual_similarity(pyr, pyramid(white)),
                           float(np.minimum(hist, colour_histogram(white)).sum()))
        result._similarity_features = cached
    return cached


def _text_from(fa: _Features, fb: _Features) -> float:
    if not fa.words and not fb.words:
        return 1.0
    if not fa.words or not fb.words:
        return 0.0
    ratio = difflib.SequenceMatcher(None, fa.words, fb.words, autojunk=False).ratio()
    common = sum((fa.counts & fb.counts).values())
    return 0.5 * (ratio + 2 * common / (len(fa.words) + len(fb.words)))


# ---------------------------------------------------------------- the optional CLIP term


class ClipScorer:
    """CLIP image embeddings of whole pages, from a local model directory (never downloaded)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", batch_size: int = 16):
        import torch
        from transformers import CLIPImageProcessor, CLIPModel

        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"CLIP model directory {self.path} not found (set {CLIP_ENV} to a directory "
                                    "saved by CLIPModel.save_pretrained with its preprocessor_config.json)")
        self.model = CLIPModel.from_pretrained(self.path, local_files_only=True).to(device).eval()
        self.processor = CLIPImageProcessor.from_pretrained(self.path, local_files_only=True)
        self.device, self.batch_size, self._torch = device, batch_size, torch

    @staticmethod
    def tiles(image: np.ndarray) -> list[np.ndarray]:
        """[H, W, 3] -> square [W, W, 3] tiles from the top, the last one padded white."""
        width = image.shape[1]
        out = []
        for top in range(0, image.shape[0], width):
            tile = image[top:top + width]
            if tile.shape[0] < width:
                tile = np.vstack([tile, np.full((width - tile.shape[0], width, 3), 255, np.uint8)])
            out.append(tile)
        return out

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """[N, D] unit-norm image embeddings of N images ([H, W, 3] uint8)."""
        torch = self._torch
        chunks = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                pixels = self.processor(images=images[i:i + self.batch_size], return_tensors="pt")["pixel_values"]
                # CLIP's image embedding: the vision tower's pooled output through its projection
                # (what get_image_features computes; spelled out, as its return type changed in v5).
                pooled = self.model.vision_model(pixel_values=pixels.to(self.device)).pooler_output
                emb = self.model.visual_projection(pooled)
                chunks.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(chunks)

    def page_embeddings(self, result: RenderResult) -> np.ndarray:
        """[num_tiles, D] embeddings of a rendered page's tiles (kept on the result)."""
        cache = result.__dict__.setdefault("_clip_tiles", {})
        if id(self) not in cache:
            cache[id(self)] = self.embed(self.tiles(result.image))
        return cache[id(self)]

    def white_embedding(self, width: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_white", {})
        if width not in cache:
            cache[width] = self.embed([np.full((width, width, 3), 255, np.uint8)])[0]
        return cache[width]

    def cosine(self, ea: np.ndarray, eb: np.ndarray, width: int) -> float:
        """Mean tile-by-tile cosine of two pages' tile embeddings, the shorter padded with white tiles."""
        n = max(len(ea), len(eb))
        white = self.white_embedding(width)[None]
        ea = np.vstack([ea, np.repeat(white, n - len(ea), 0)])
        eb = np.vstack([eb, np.repeat(white, n - len(eb), 0)])
        return float(np.clip((ea * eb).sum(-1).mean(), -1.0, 1.0))

    def similarity(self, page: RenderResult, reference: RenderResult) -> float:
        """The CLIP term: tile cosine of page and reference, above a white page's (above_blank)."""
        width = reference.image.shape[1]
        ea, eb = self.page_embeddings(page), self.page_embeddings(reference)
        white_page = np.repeat(self.white_embedding(width)[None], len(eb), 0)
        return above_blank(self.cosine(ea, eb, width), self.cosine(white_page, eb, width))


_default_clip: dict[str, ClipScorer | None] = {}


def clip_status() -> str:
    """Whether the CLIP term is on, and why not."""
    path = os.environ.get(CLIP_ENV)
    if not path:
        return f"CLIP term off: {CLIP_ENV} is unset (set it to a local CLIP model directory to turn it on)"
    if not Path(path).is_dir():
        return f"CLIP term off: {CLIP_ENV}={path} is not a directory (nothing is downloaded)"
    return f"CLIP term on: {path} (weight {CLIP_WEIGHT})"


def default_clip_scorer() -> ClipScorer | None:
    """The ClipScorer of $SWEET_CLIP_MODEL (loaded once per path), or None when it is unset or missing
    (logged once with clip_status())."""
    path = os.environ.get(CLIP_ENV) or ""
    if path not in _default_clip:
        status = clip_status()
        _default_clip[path] = ClipScorer(path) if status.startswith("CLIP term on") else None
        (log.info if not path else log.warning)(status)
    return _default_clip[path]


def page_similarity(page: RenderResult, reference: RenderResult, clip: ClipScorer | None | str = "env") -> PageScore:
    """The score of a rendered page against the rendered reference (see the module docstring).
    `clip`: a ClipScorer, None (CLIP term off), or "env" (the default: $SWEET_CLIP_MODEL's, off when unset)."""
    fa, fb = _features(page), _features(reference)
    parts = {
        "visual": above_blank(visual_similarity(fa.pyramid, fb.pyramid), fb.blank_visual),
        "colour": above_blank(float(np.minimum(fa.histogram, fb.histogram).sum()), fb.blank_colour),
        "layout": layout_similarity(page, reference),
        "text": _text_from(fa, fb),
    }
    score = sum(WEIGHTS[k] * v for k, v in parts.items())
    if isinstance(clip, str) and clip != "env":
        raise ValueError(f'page_similarity: clip={clip!r}; pass a ClipScorer, None (off) or "env"')
    scorer = default_clip_scorer() if isinstance(clip, str) else clip
    if scorer is None:
        return PageScore(float(score), **parts)
    clip_part = scorer.similarity(page, reference)
    return PageScore(float((1 - CLIP_WEIGHT) * score + CLIP_WEIGHT * clip_part), **parts, clip=clip_part)


def similarity_matrix(pages: list[RenderResult], references: list[RenderResult],
                      clip: ClipScorer | None | str = "env") -> np.ndarray:
    """[len(pages), len(references)] scores of every page against every reference."""
    return np.array([[page_similarity(p, r, clip).score for r in references] for p in pages])
