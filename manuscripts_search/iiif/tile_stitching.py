"""Stitching: the responses to a fetch plan's requests assembled into the one image it describes.

Kept apart from planning because it is the only step that needs Pillow (imported when called)
and the only one that sees what servers actually returned, which may differ by a pixel or so from
what the plan expected.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from manuscripts_search.iiif.image_coordinates import outer_box

if TYPE_CHECKING:
    from PIL import Image

    from manuscripts_search.iiif.fetch_plans import FetchPlan


def stitch_tiles(plan: FetchPlan, tile_images: Sequence[Image.Image]) -> Image.Image:
    """Assemble the responses to ``plan.requests`` (same order) into one RGB image.

    A response whose size differs from what the plan expected (servers round differently) is
    resized to the expected size for a mosaic; for a single response the crop box is scaled instead.

    Raises:
        ValueError: the number of images differs from the number of requests, or the crop is empty.
    """
    from PIL import Image

    if len(tile_images) != len(plan.requests):
        raise ValueError(f"plan has {len(plan.requests)} requests but {len(tile_images)} images were given")
    if plan.is_single:
        image = tile_images[0].convert("RGB")
        if plan.crop_box is None:
            return image
        expected = plan.mosaic_size or image.size
        sx, sy = image.width / expected[0], image.height / expected[1]
        left, top, right, bottom = plan.crop_box
        box = outer_box(left * sx, top * sy, right * sx, bottom * sy, image.width, image.height)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"crop box {plan.crop_box} is empty for a {image.width}x{image.height} response")
        return image.crop(box)

    if plan.mosaic_size is None:
        raise ValueError("a plan with several requests needs a mosaic_size")
    mosaic = Image.new("RGB", plan.mosaic_size)
    for request, tile in zip(plan.requests, tile_images):
        tile = tile.convert("RGB")
        expected = (request.width or tile.width, request.height or tile.height)
        if tile.size != expected:
            tile = tile.resize(expected, Image.Resampling.BICUBIC)
        mosaic.paste(tile, (request.x, request.y))
    return mosaic.crop(plan.crop_box) if plan.crop_box else mosaic
