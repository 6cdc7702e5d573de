"""Synthetic manuscript pages for region proposals (tests and bench/regions.py): a support colour
with texture, blocks of pseudo-text lines (dark strokes in rows, sometimes a red rubric), and 1-3
small coloured shapes of the tiny CLIP's vocabulary placed anywhere, margins included, at 3-15 %
of the page width. Each page comes with the true boxes of its shapes."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tests.helpers.model_factory import SHAPE_COLOURS, SHAPES


@dataclass(frozen=True)
class PlacedShape:
    colour: str
    shape: str
    box: tuple[int, int, int, int]  # x, y, w, h in page pixels


def _overlaps(a, b, gap):
    return not (a[0] + a[2] + gap <= b[0] or b[0] + b[2] + gap <= a[0]
                or a[1] + a[3] + gap <= b[1] or b[1] + b[3] + gap <= a[1])


def render_page(seed: int, width: int = 1000, height: int = 1400, shapes: int | None = None,
                ) -> tuple[Image.Image, list[PlacedShape]]:
    """One page and its shapes; the same seed gives the same page."""
    rng = np.random.default_rng(seed)
    support = np.array([rng.uniform(215, 240), rng.uniform(195, 220), rng.uniform(150, 185)])
    # Texture: low-frequency blotches plus grain.
    blotches = np.asarray(Image.fromarray((rng.uniform(0, 255, (12, 9))).astype(np.uint8))
                          .resize((width, height), Image.Resampling.BICUBIC), np.float32) / 255 - 0.5
    pixels = support + blotches[..., None] * 18 + rng.normal(0, 6, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)

    placed: list[PlacedShape] = []
    count = shapes if shapes is not None else int(rng.integers(1, 4))
    margin_x, margin_y = round(0.12 * width), round(0.1 * height)
    text_box = (margin_x, margin_y, width - 2 * margin_x, height - 2 * margin_y)
    attempts = 0
    while len(placed) < count and attempts < 200:
        attempts += 1
        side = round(rng.uniform(0.03, 0.15) * width)
        box = (int(rng.integers(0, width - side)), int(rng.integers(0, height - side)), side, side)
        if any(_overlaps(box, p.box, side // 2) for p in placed):
            continue
        placed.append(PlacedShape(str(rng.choice(list(SHAPE_COLOURS))), str(rng.choice(SHAPES)), box))

    # Text: lines of strokes in the text block, not under a shape (a scribe writes around them).
    line_height = max(8, round(height * rng.uniform(0.012, 0.02)))
    pitch = round(line_height * rng.uniform(1.6, 2.2))
    ink = tuple(int(v) for v in rng.uniform(20, 70, 3))
    rubric = (170, 40, 30)
    for top in range(text_box[1], text_box[1] + text_box[3] - line_height, pitch):
        colour = rubric if rng.random() < 0.06 else ink
        x = text_box[0]
        end = text_box[0] + text_box[2] - int(rng.integers(0, text_box[2] // 4))
        while x < end:
            word = int(rng.integers(3, 9))
            for _ in range(word):
                stroke_w = max(1, line_height // 6)
                tall = rng.random() < 0.2
                y0 = top - (line_height // 2 if tall else 0)
                stroke = (x, y0, x + stroke_w, top + line_height)
                if not any(_overlaps((x, y0, stroke_w, top + line_height - y0), p.box, 6) for p in placed):
                    draw.rectangle(stroke, fill=colour)
                x += stroke_w + max(2, line_height // 3)
            x += line_height  # space between words
    for p in placed:
        x, y, side, _ = p.box
        fill = tuple(int(v) for v in np.clip(np.array(SHAPE_COLOURS[p.colour]) + rng.integers(-12, 13, 3), 0, 255))
        if p.shape == "circle":
            draw.ellipse((x, y, x + side - 1, y + side - 1), fill=fill)
        elif p.shape == "square":
            draw.rectangle((x, y, x + side - 1, y + side - 1), fill=fill)
        else:
            r, cx, cy = side / 2, x + side / 2, y + side / 2
            corners = [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in (-90, 30, 150)]
            draw.polygon(corners, fill=fill)
    return image, placed


def box_iou(a, b) -> float:
    """IoU of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def covers(region, target) -> bool:
    """The issue's localisation criterion: IoU >= 0.5, or ``region`` contains ``target`` while
    the target fills at least a quarter of it."""
    if box_iou(region, target) >= 0.5:
        return True
    rx, ry, rw, rh = region
    tx, ty, tw, th = target
    inside = rx <= tx and ry <= ty and tx + tw <= rx + rw and ty + th <= ry + rh
    return inside and tw * th >= 0.25 * rw * rh


def render_shape_in_clutter(colour: str, shape: str, size: int = 64, seed: int = 0) -> Image.Image:
    """A crop of a synthetic page around one shape, as a region proposal cuts it: the textured
    support, rows of pseudo-text (sometimes a red rubric) around the shape, the shape filling
    35-85 % of the crop's width, anywhere in it and at times partly cut off, and the crop's
    aspect between 0.7 and 1.4. For training a tiny CLIP that has seen what real crops hold
    (``train_tiny_clip(clutter=...)``). The same seed gives the same crop."""
    if colour not in SHAPE_COLOURS:
        raise ValueError(f"unknown colour {colour!r}; known: {', '.join(SHAPE_COLOURS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    rng = np.random.default_rng(seed)
    width = size
    height = max(8, round(size / rng.uniform(0.7, 1.4)))
    support = np.array([rng.uniform(215, 240), rng.uniform(195, 220), rng.uniform(150, 185)])
    blotches = np.asarray(Image.fromarray(rng.uniform(0, 255, (3, 3)).astype(np.uint8))
                          .resize((width, height), Image.Resampling.BICUBIC), np.float32) / 255 - 0.5
    pixels = support + blotches[..., None] * 18 + rng.normal(0, 6, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    side = max(4, round(rng.uniform(0.35, 0.85) * min(width, height)))
    # Up to a fifth of the shape may fall outside the crop (a proposal that clips it).
    overhang = round(0.2 * side)
    x = int(rng.integers(-overhang, width - side + overhang + 1))
    y = int(rng.integers(-overhang, height - side + overhang + 1))
    box = (x, y, side, side)
    if rng.random() < 0.85:  # most crops hold some text; some only the support
        line_height = max(2, round(size * rng.uniform(0.04, 0.1)))
        pitch = max(line_height + 1, round(line_height * rng.uniform(1.6, 2.2)))
        ink = tuple(int(v) for v in rng.uniform(20, 70, 3))
        stroke_w = max(1, line_height // 6)
        for top in range(int(rng.integers(-line_height, pitch)), height, pitch):
            fill = (170, 40, 30) if rng.random() < 0.1 else ink
            sx = int(rng.integers(0, max(1, line_height)))
            while sx < width:
                for _ in range(int(rng.integers(3, 9))):
                    tall = rng.random() < 0.2
                    y0 = top - (line_height // 2 if tall else 0)
                    if not _overlaps((sx, y0, stroke_w, top + line_height - y0), box, max(1, size // 20)):
                        draw.rectangle((sx, y0, sx + stroke_w, top + line_height), fill=fill)
                    sx += stroke_w + max(1, line_height // 3)
                sx += line_height
    fill = tuple(int(v) for v in np.clip(np.array(SHAPE_COLOURS[colour]) + rng.integers(-12, 13, 3), 0, 255))
    if shape == "circle":
        draw.ellipse((x, y, x + side - 1, y + side - 1), fill=fill)
    elif shape == "square":
        draw.rectangle((x, y, x + side - 1, y + side - 1), fill=fill)
    else:
        r, cx, cy = side / 2, x + side / 2, y + side / 2
        corners = [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in (-90, 30, 150)]
        draw.polygon(corners, fill=fill)
    return image
