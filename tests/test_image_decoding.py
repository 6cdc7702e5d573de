"""The one decompression-bomb-safe decoder (manuscripts_search.image_decoding) and each of its
callers: the harvester, the web app's query images, ``msearch search --image``, local publishing."""
from __future__ import annotations

import pytest
from PIL import Image

from manuscripts_search.image_decoding import (ImageDecodeError, ImageTooLargeError, UnreadableImageError,
                                               decode_image, open_bounded)
from tests.helpers.images import png_bytes, png_claiming


@pytest.mark.parametrize("size", [(20_000, 20_000), (100_000, 100_000), (16_000, 16_000)])
def test_decompression_bomb_images_are_refused_from_the_header(size):
    data = png_claiming(*size)
    assert len(data) < 2000
    with pytest.raises(ValueError, match="decompression bomb") as caught:
        decode_image(data, max_pixels=200_000_000)
    assert isinstance(caught.value, ImageTooLargeError) and (caught.value.width, caught.value.height) == size


def test_a_normal_image_decodes_to_rgb_from_bytes_or_a_path(tmp_path):
    data = png_bytes(Image.new("L", (64, 48), 200))
    image = decode_image(data, max_pixels=64 * 48)  # the limit is inclusive
    assert image.size == (64, 48) and image.mode == "RGB" and image.getpixel((3, 3)) == (200, 200, 200)
    path = tmp_path / "page.png"
    path.write_bytes(data)
    assert decode_image(path, max_pixels=10_000).size == (64, 48)
    with pytest.raises(ImageTooLargeError, match="64×48 pixels exceeds the limit of 3071"):
        decode_image(path, max_pixels=64 * 48 - 1)


def test_the_limit_is_the_callers_not_pillows_global():
    # 100 MP is above Pillow's own warning threshold (~89 MP), which the old decoders turned into a
    # refusal whatever limit the caller asked for; a 1-bit image keeps the test's memory small.
    data = png_bytes(Image.new("1", (10_000, 10_000)))
    before = Image.MAX_IMAGE_PIXELS
    with open_bounded(data, max_pixels=120_000_000) as image:
        image.load()
        assert image.size == (10_000, 10_000)
    with pytest.raises(ImageTooLargeError):
        with open_bounded(data, max_pixels=99_999_999):
            pass
    assert Image.MAX_IMAGE_PIXELS in (None, before)


@pytest.mark.parametrize("data, detail", [(b"not an image", False), (b"GIF89a" + b"\0" * 100, None),
                                          (b"", False)])
def test_unreadable_bytes_are_an_oserror_that_says_so(data, detail):
    with pytest.raises(UnreadableImageError) as caught:
        decode_image(data, max_pixels=1_000_000)
    error = caught.value
    assert isinstance(error, OSError) and isinstance(error, ImageDecodeError)
    if detail is False:
        assert error.detail is None and "not an image format" in str(error)


def test_a_truncated_image_is_unreadable_with_the_reason():
    buffer = png_bytes(Image.effect_noise((200, 200), 60).convert("RGB"))
    with pytest.raises(UnreadableImageError) as caught:
        decode_image(buffer[: len(buffer) // 2], max_pixels=1_000_000)
    assert caught.value.detail and str(caught.value).startswith("cannot be decoded: ")


@pytest.mark.own_database  # the default SQLite file under a fresh data dir
def test_the_cli_query_image_has_a_pixel_cap(tmp_path):
    from click.testing import CliRunner

    from manuscripts_search.cli import cli

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(30_000, 30_000))
    env = {"MSEARCH_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    result = CliRunner().invoke(cli, ["search", "--image", str(bomb)], env=env)
    assert result.exit_code == 1, result.output
    assert "the query image cannot be decoded" in result.output and "30000×30000 pixels exceeds" in result.output


def test_publishing_refuses_an_oversized_source_and_leaves_pillow_alone(tmp_path, monkeypatch):
    from harvest import publish

    monkeypatch.setattr(publish, "MAX_SOURCE_PIXELS", 1_000)
    source = tmp_path / "big.png"
    source.write_bytes(png_bytes(Image.new("RGB", (40, 30))))
    with pytest.raises(ValueError, match="40×30 pixels exceeds the limit of 1000"):
        publish._open_source(source)
    assert Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS < 400_000_000
