"""Content-aware region proposals (harvest/region_proposals.py) on synthetic pages: a textured
support, rows of pseudo-text (with red rubrics) and 1-3 small coloured shapes anywhere, margins
included, at 3-15 % of the page width, seen as harvest sees them (a 448-pixel derivative)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harvest.region_proposals import DEFAULT_LIMIT, propose_regions
from tests.helpers.synthetic_pages import covers, render_page


def _derivative(page: Image.Image, long_edge: int = 448) -> Image.Image:
    small = page.copy()
    small.thumbnail((long_edge, long_edge))
    return small


@pytest.mark.parametrize("seed", range(12))
def test_every_shape_is_covered_by_a_proposal(seed):
    width = 1000 + (seed * 397) % 2000
    height = int(width * 1.35)
    page, shapes = render_page(seed, width, height)
    proposals = propose_regions(_derivative(page), canvas_size=(width, height))
    assert 1 <= len(proposals) <= DEFAULT_LIMIT
    for shape in shapes:
        assert any(covers(p.box, shape.box) for p in proposals), (shape, proposals)
    # The text is not proposed: at most one box (a rubric, a stray group) beyond the shapes.
    assert len(proposals) <= len(shapes) + 2, proposals


def test_text_alone_gives_few_proposals_and_plain_support_none():
    page, shapes = render_page(5, 1200, 1600, shapes=0)
    assert not shapes
    assert len(propose_regions(_derivative(page))) <= 2
    blank = Image.fromarray(np.full((600, 400, 3), (226, 208, 170), np.uint8))
    assert propose_regions(blank) == []


def test_boxes_follow_the_canvas_and_where_the_image_is_painted():
    page, shapes = render_page(7, 1000, 1400, shapes=1)
    image_box = propose_regions(_derivative(page), canvas_size=(1000, 1400))[0].box
    # The same image painted at (500, 100), at half its size, on a 2,000-wide canvas.
    on_canvas = propose_regions(_derivative(page), canvas_size=(2000, 1000), target_xywh=(500, 100, 500, 700))[0]
    expected = (500 + image_box[0] / 2, 100 + image_box[1] / 2, image_box[2] / 2, image_box[3] / 2)
    assert np.allclose(on_canvas.box, expected, atol=3), (on_canvas.box, expected)
    assert 0 < on_canvas.score <= 1


def test_the_limit_caps_the_proposals_best_first():
    page, _ = render_page(11, 1500, 2000, shapes=3)
    every = propose_regions(_derivative(page), canvas_size=(1500, 2000))
    capped = propose_regions(_derivative(page), canvas_size=(1500, 2000), limit=1)
    assert len(every) >= 3 and capped == every[:1]
    assert [p.score for p in every] == sorted((p.score for p in every), reverse=True)
    assert propose_regions(_derivative(page), limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        propose_regions(page, limit=-1)


def test_tiny_and_odd_images_give_no_error():
    assert propose_regions(Image.new("RGB", (8, 8), "white")) == []
    assert propose_regions(Image.new("L", (300, 200), 128)) == []
    assert isinstance(propose_regions(Image.new("RGBA", (300, 200), (255, 0, 0, 0))), list)
