"""Content-aware region proposals: boxes around what is not plain text on a page (miniatures,
coloured initials, marginal drawings, diagrams), found in the canvas's derivative image with
classical image analysis, so that a detail gets a crop of its own instead of a few percent of a
grid cell.

Three kinds of evidence against the support (parchment, paper), whose colour is estimated from the
page itself:

- **colour**: pixels much more saturated than the support, or of another hue (blue, green, red
  on yellowish parchment). Brown and black inks share the support's hue and are not colour.
- **non-text ink**: dark pixels grouped along rows into line bands; a band is text when it is
  about as tall as the page's typical line (stroke-height statistics), and a tall group is text
  when its row projection profile shows regular gaps between lines. What is left is dense ink:
  drawings, diagrams, large initials.
- **thin coloured lines**, seen in the unblurred image: staves of music (groups of long horizontal
  lines ruled in colour, notes between them) and diagrams drawn in coloured outline (concentric
  circles), which the colour mask's opening loses in a derivative where such a line is under a
  pixel thick (found as their own boxes, see ``_staves`` and ``_line_art``).

The first two masks are grouped by morphological closing at three scales (the thing itself, the thing with
its neighbours, a whole decorated block) with holes filled (a coloured frame and the grisaille or
gold picture it frames are one), connected components become boxes, two long bars side by side
are also proposed as one (the two halves of an initial's frame), boxes are scored by how much of
each is evidence, how solid, compact and large it is, padded a little (a model sees a motif better
with some context), de-duplicated by overlap and capped. Pure function: image in, boxes in canvas coordinates out. The image is
analysed at most at ``ANALYSIS_LONG_EDGE`` pixels; harvest passes the canvas derivative.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from manuscripts_search.iiif.image_coordinates import XYWH, image_to_canvas_xywh

ANALYSIS_LONG_EDGE = 640
DEFAULT_LIMIT = 13  # never more vectors per canvas than the 2x2 + 3x3 grid


@dataclass(frozen=True)
class Proposal:
    x: int
    y: int
    w: int
    h: int
    score: float  # 0..1: how clearly the box holds something that is not plain text

    @property
    def box(self) -> XYWH:
        return self.x, self.y, self.w, self.h


def propose_regions(image: Image.Image, canvas_size: Optional[tuple[float, float]] = None,
                    target_xywh: Optional[Sequence[float]] = None, limit: int = DEFAULT_LIMIT) -> list[Proposal]:
    """Boxes of ``image``'s non-text content, best first, at most ``limit``, in the coordinates
    of a canvas of ``canvas_size`` on which the image is painted at ``target_xywh`` (None: the
    whole canvas; no ``canvas_size``: image pixels)."""
    if limit < 0:
        raise ValueError(f"limit must be at least 0, got {limit}")
    rgb = _analysis_rgb(image)
    height, width = rgb.shape[:2]
    if limit == 0 or min(width, height) < 16:
        return []
    long_edge = max(width, height)
    candidates: list[tuple[float, tuple[int, int, int, int]]] = []
    ink = _ink(rgb)
    labels, _count, slices = _line_bands(ink)
    line_height = _line_height(slices, ink.shape)
    masks = ((_colour_mask(rgb, line_height), "colour"),
             (_non_text_ink_mask(rgb, ink, labels, slices, line_height), "ink"))
    for mask, kind in masks:
        for scale in (0.012, 0.04, 0.1):
            candidates += _components(mask, max(2, round(scale * long_edge)), kind)
    raw = _analysis_rgb(image, blur=False)  # thin lines: a blur would fade them into the support
    candidates += _staves(raw, line_height) + _line_art(raw, line_height)
    candidates += _pairs(sorted(candidates, key=lambda c: -c[0])[:40], long_edge)
    kept = _suppress_duplicates(sorted(candidates, key=lambda c: -c[0]), limit)
    canvas_w, canvas_h = canvas_size if canvas_size else (width, height)
    proposals = []
    for score, (x0, y0, x1, y1) in kept:
        x0, y0, x1, y1 = _pad(x0, y0, x1, y1, width, height)
        try:
            box = image_to_canvas_xywh((x0, y0, x1 - x0, y1 - y0), canvas_w, canvas_h, width, height, target_xywh)
        except ValueError:
            continue  # painted outside the canvas
        proposals.append(Proposal(*box, score=round(float(score), 4)))
    return list({p.box: p for p in proposals}.values())


def _analysis_rgb(image: Image.Image, blur: bool = True) -> np.ndarray:
    image = image.convert("RGB")
    scale = ANALYSIS_LONG_EDGE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BOX)
    pixels = np.asarray(image, dtype=np.float32)
    # A light blur: the texture of parchment and the grain of a photograph are not content.
    return ndimage.uniform_filter(pixels, size=(3, 3, 1)) if blur else pixels


def _support(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The support colour (median of the brighter half: a dark surround or ink is not the page)
    and the spread of its luminance."""
    lum = rgb.mean(axis=2)
    page = rgb[lum >= np.percentile(lum, 50)]
    colour = np.median(page, axis=0)
    spread = float(np.median(np.abs(page.mean(axis=1) - colour.mean())))
    return colour, spread


def _hue_chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hue angle (radians) and chroma (0..~255) from the opponent axes of RGB."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    a = r - (g + b) / 2
    c = (g - b) * (np.sqrt(3) / 2)
    return np.arctan2(c, a), np.hypot(a, c)


def _ink(rgb: np.ndarray) -> np.ndarray:
    support, spread = _support(rgb)
    return rgb.mean(axis=2) < support.mean() - max(55.0, 5 * spread)


def _line_bands(mask: np.ndarray, join: int = 0) -> tuple[np.ndarray, int, list]:
    """The mask's strokes joined along rows across gaps of ``join`` pixels (default: a 60th of
    the width; text becomes thin bands about one line high): labels, count, slices."""
    width = mask.shape[1]
    bands = ndimage.binary_closing(mask, structure=np.ones((1, max(3, join or width // 60)), bool))
    labels, count = ndimage.label(bands)
    return labels, count, ndimage.find_objects(labels)


def _line_height(slices: list, shape: tuple[int, int]) -> float:
    """The typical height of a line of text: the median height of the long thin bands."""
    height, width = shape
    heights = np.array([s[0].stop - s[0].start for s in slices] or [0])
    widths = np.array([s[1].stop - s[1].start for s in slices] or [0])
    line_like = (widths > 3 * heights) & (widths > width // 20)
    return float(np.median(heights[line_like])) if line_like.any() else max(3.0, height / 60)


def _colour_mask(rgb: np.ndarray, line_height: float) -> np.ndarray:
    """Colour that is not text: rubrics (lines written in red or blue) are removed as bands of
    about a line's height."""
    support, _ = _support(rgb)
    hue, chroma = _hue_chroma(rgb)
    support_hue, support_chroma = _hue_chroma(support[None, None, :])
    hue_gap = np.abs(np.angle(np.exp(1j * (hue - support_hue[0, 0]))))
    lum = rgb.mean(axis=2)
    more_saturated = chroma > support_chroma[0, 0] + 45
    other_hue = (hue_gap > np.radians(50)) & (chroma > 22) & (lum > 35)
    mask = ndimage.binary_opening(more_saturated | other_hue, structure=np.ones((2, 2), bool))
    # Solid colour (a painted shape, an initial's body) is kept out of the bands, lest a rubric
    # that runs into a picture makes one tall band with it; the bands join across the gaps
    # between words, since a rubric's words are each too short to look like a line.
    side = max(3, round(line_height / 2))  # thicker than a pen stroke
    solid = ndimage.binary_dilation(ndimage.binary_opening(mask, structure=np.ones((side, side), bool)),
                                    structure=np.ones((side, side), bool))
    labels, count, slices = _line_bands(mask & ~solid, round(2.5 * line_height))
    rubric = np.zeros(count + 1, bool)
    for index, (rows, cols) in enumerate(slices, start=1):
        h, w = rows.stop - rows.start, cols.stop - cols.start
        rubric[index] = h <= 2 * line_height and w > 2.5 * h
    return mask & (solid | ~rubric[labels])


def _colour_excess(raw: np.ndarray) -> np.ndarray:
    """How much more saturated than the support each pixel is (0 where it is not)."""
    support, _ = _support(raw)
    _, chroma = _hue_chroma(raw)
    _, support_chroma = _hue_chroma(support[None, None, :])
    return np.clip(chroma - support_chroma[0, 0], 0, None)


def _staves(raw: np.ndarray, line_height: float) -> list[tuple[float, tuple[int, int, int, int]]]:
    """Music: staves ruled in colour (red on most medieval pages), groups of long thin horizontal
    lines a few pixels apart, the notes and words between them. A derivative leaves a staff line
    less than a pixel thick, so the colour is averaged along rows (a line adds up, a rubric's
    separate strokes and the texture do not) and kept where it stands above the rows two up and
    two down (a stain, or a line of rubric, is as coloured there). A block of at least four such
    lines is a piece of music; the page's edge or a single ruled line is not."""
    height, width = raw.shape[:2]
    run = max(8, width // 12)
    along = ndimage.uniform_filter(_colour_excess(raw), size=(1, run))
    around = np.maximum(np.pad(along, ((2, 0), (0, 0)), mode="edge")[:-2],
                        np.pad(along, ((0, 2), (0, 0)), mode="edge")[2:])
    lines = ndimage.binary_opening(along - around > 5, structure=np.ones((1, run // 2), bool))
    # A staff's lines and the staves of one piece (a line of words between them) are one block.
    joined = _closing(lines, max(3, round(3 * line_height))) | lines
    labels, _count = ndimage.label(joined)
    found = []
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        mine = lines[rows, cols] & (labels[rows, cols] == index)
        filled = mine.any(axis=1)
        count = int(np.count_nonzero(filled[1:] & ~filled[:-1])) + int(filled[0])
        h, w = rows.stop - rows.start, cols.stop - cols.start
        if count < 4 or h < 2 * line_height or w < run or h * w > 0.5 * height * width:
            continue
        found.append((0.6 + 0.2 * min(1.0, count / 10), (cols.start, rows.start, cols.stop, rows.stop)))
    return found


def _line_art(raw: np.ndarray, line_height: float) -> list[tuple[float, tuple[int, int, int, int]]]:
    """Diagrams drawn in thin coloured lines (concentric circles, figures in red): in the unblurred
    image their strokes stand out in colour, too thin for the colour mask's opening. Joined into a
    figure and its holes filled, a diagram is a large compact blob; a rubric is a long thin band."""
    height, width = raw.shape[:2]
    long_edge = max(height, width)
    strokes = _colour_excess(raw) > 25
    # Rubrics out first, as bands about a line high (as in the colour mask).
    labels, count, slices = _line_bands(strokes, round(2.5 * line_height))
    rubric = np.zeros(count + 1, bool)
    for index, (rows, cols) in enumerate(slices, start=1):
        h, w = rows.stop - rows.start, cols.stop - cols.start
        rubric[index] = h <= 2 * line_height and w > 2.5 * h
    strokes &= ~rubric[labels]
    figure = ndimage.binary_fill_holes(_closing(strokes, max(3, round(0.02 * long_edge))) | strokes)
    labels, _count = ndimage.label(figure)
    found = []
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        y0, y1, x0, x1 = rows.start, rows.stop, cols.start, cols.stop
        w, h = x1 - x0, y1 - y0
        if max(w, h) < 0.08 * long_edge or min(w, h) < 0.6 * max(w, h) or h < 4 * line_height \
                or w * h > 0.25 * width * height:
            continue
        evidence = float(strokes[y0:y1, x0:x1].mean())
        if not 0.03 <= evidence <= 0.5:  # no line drawing, or solid colour (the colour mask's part)
            continue
        # Below the colour mask's boxes: where both see a thing (an initial's frame), its box wins.
        found.append((0.35 + 0.2 * min(w, h) / max(w, h), (x0, y0, x1, y1)))
    return found


def _non_text_ink_mask(rgb: np.ndarray, ink: np.ndarray, labels: np.ndarray, slices: list,
                       line_height: float) -> np.ndarray:
    """Dark pixels that do not belong to text lines (``labels``/``slices``: the ink's line bands)."""
    height, width = ink.shape
    keep = np.zeros(len(slices) + 1, bool)
    for index, (rows, cols) in enumerate(slices, start=1):
        h, w = rows.stop - rows.start, cols.stop - cols.start
        if h <= 3 * line_height or w <= 2 * line_height or h * w > 0.6 * height * width:
            continue  # a line or two of text, a speck, or the dark surround of the photograph
        if _looks_like_text_block(labels[rows, cols] == index, line_height):
            continue
        keep[index] = True
    return keep[labels] & ink


def _looks_like_text_block(component: np.ndarray, line_height: float) -> bool:
    """Lines that touch (descenders on ascenders) make one tall band: their row projection
    profile still falls between lines, about once a line height; a picture's does not."""
    profile = component.mean(axis=1)
    valleys = profile < 0.35 * np.percentile(profile, 90)
    runs = int(np.count_nonzero(valleys[1:] & ~valleys[:-1]))
    expected = profile.size / max(line_height * 3, 1.0)  # lines are about two line heights apart
    return runs >= 1 and runs >= 0.5 * expected and valleys.mean() > 0.12


def _components(mask: np.ndarray, join: int, kind: str) -> list[tuple[float, tuple[int, int, int, int]]]:
    """Boxes (x0, y0, x1, y1) of the mask's parts joined across gaps of ``join`` pixels, scored."""
    height, width = mask.shape
    grouped = _closing(mask, join) | mask
    grouped = ndimage.binary_fill_holes(grouped)  # a frame and what it frames (grisaille, gold) are one
    labels, count = ndimage.label(grouped)
    found = []
    min_side = max(4, round(0.012 * max(width, height)))
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        y0, y1, x0, x1 = rows.start, rows.stop, cols.start, cols.stop
        w, h = x1 - x0, y1 - y0
        if max(w, h) < min_side or min(w, h) < 2 or w * h > 0.7 * width * height:
            continue
        evidence = float(mask[y0:y1, x0:x1].mean())
        if evidence < 0.04:
            continue
        solid = float((labels[y0:y1, x0:x1] == index).mean())  # a blob fills its box; a scatter does not
        compact = min(w, h) / max(w, h)  # rubric lines are long and thin; pictures are not
        size = min(1.0, np.sqrt(w * h / (width * height)) / 0.15)  # a picture is worth more than a speck
        score = (0.2 * min(1.0, evidence / 0.3) + 0.3 * solid + 0.25 * compact + 0.25 * size) \
            * (1.0 if kind == "colour" else 0.85)
        found.append((score, (x0, y0, x1, y1)))
    return found


def _pairs(candidates, long_edge: int) -> list[tuple[float, tuple[int, int, int, int]]]:
    """Unions of two boxes side by side (or one above the other) with a gap between them: the
    two coloured halves of an initial around a grisaille or gold picture, which no closing
    joins without joining the whole page."""
    def bar(box):  # a half of a frame is long and narrow, and large; a whole motif is not
        w, h = box[2] - box[0], box[3] - box[1]
        return min(w, h) < 0.6 * max(w, h) and max(w, h) >= 0.12 * long_edge

    found = []
    candidates = [c for c in candidates if bar(c[1])]
    for i, (score_a, a) in enumerate(candidates):
        for score_b, b in candidates[i + 1:]:
            gap_x = max(a[0], b[0]) - min(a[2], b[2])
            gap_y = max(a[1], b[1]) - min(a[3], b[3])
            overlap_y = min(a[3], b[3]) - max(a[1], b[1])
            overlap_x = min(a[2], b[2]) - max(a[0], b[0])
            side_by_side = gap_x > 0 and overlap_y >= 0.6 * min(a[3] - a[1], b[3] - b[1])
            stacked = gap_y > 0 and overlap_x >= 0.6 * min(a[2] - a[0], b[2] - b[0])
            if (side_by_side and gap_x < 0.2 * long_edge) or (stacked and gap_y < 0.2 * long_edge):
                union = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                found.append((0.95 * (score_a + score_b) / 2, union))
    return found


def _closing(mask: np.ndarray, side: int) -> np.ndarray:
    """Binary closing by a ``side`` x ``side`` square, as a row then a column (the same result as
    the square, many times faster at the largest scale)."""
    row, column = np.ones((1, side), bool), np.ones((side, 1), bool)
    grown = ndimage.binary_dilation(ndimage.binary_dilation(mask, row), column)
    return ndimage.binary_erosion(ndimage.binary_erosion(grown, row), column)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _suppress_duplicates(candidates, limit: int):
    """Best-first, dropping a box that mostly repeats one kept (a box nested in a much larger
    one is kept: the motif and its group are both worth a vector)."""
    kept = []
    for score, box in candidates:
        if all(_iou(box, other) < 0.6 for _, other in kept):
            kept.append((score, box))
            if len(kept) == limit:
                break
    return kept


def _pad(x0: int, y0: int, x1: int, y1: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Grow a box by a tenth of its size on each side (and at least two pixels), within the image."""
    px, py = max(2, round(0.1 * (x1 - x0))), max(2, round(0.1 * (y1 - y0)))
    return max(0, x0 - px), max(0, y0 - py), min(width, x1 + px), min(height, y1 + py)
