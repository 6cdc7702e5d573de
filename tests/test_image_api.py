"""IIIF Image API: info.json parsing, URL syntax, fetch planning, stitching, canvas mapping.

End-to-end tests fetch from a real HTTP server (tests/helpers/iiif_server.py) and compare pixels with
crops of the original made by Pillow.
"""
from __future__ import annotations

import gc
import io
import json
import math
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from manuscripts_search.iiif.fetch_plans import FetchPlan, TileRequest, plan_fetch
from manuscripts_search.iiif.image_coordinates import canvas_to_image_xywh, image_to_canvas_xywh
from manuscripts_search.iiif.image_requests import image_request_url
from manuscripts_search.iiif.info_json import ImageInfo, TileSpec, parse_info_json
from manuscripts_search.iiif.tile_stitching import stitch_tiles
from manuscripts_search.iiif.model import ImageServiceRef

CORPUS = Path("/work/shared/corpus")
SPEC_BASE = "http://www.example.org/image-service/abcd1234/1E34750D-38DB-4825-A38A-B60A345E591C"
# JPEG round trips and resampling differences stay well under this mean absolute difference (0-255).
PIXEL_TOLERANCE = 6.0


# ------------------------------------------------------------------------------------------------
# helpers


def find_service(path: Path, service_id: str) -> dict:
    """The embedded image service with this id in a corpus document."""
    def walk(node):
        if isinstance(node, dict):
            if service_id in (node.get("@id"), node.get("id")) and "profile" in node:
                return node
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            return None
        for child in children:
            found = walk(child)
            if found is not None:
                return found
        return None

    found = walk(json.loads(path.read_text(encoding="utf-8")))
    assert found is not None, f"{service_id} not in {path}"
    return found


def fetch(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), dict(error.headers)


def fetch_image(url: str) -> Image.Image:
    status, body, _ = fetch(url)
    assert status == 200, f"{url}: {status} {body[:200]!r}"
    with Image.open(io.BytesIO(body)) as image:
        return image.convert("RGB")


def fetch_info(service_id: str) -> ImageInfo:
    status, body, _ = fetch(service_id + "/info.json")
    assert status == 200
    return parse_info_json(json.loads(body))


def execute(plan: FetchPlan) -> Image.Image:
    return stitch_tiles(plan, [fetch_image(request.url) for request in plan.requests])


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size, (a.size, b.size)
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def reference_crop(original: Image.Image, xywh, size) -> Image.Image:
    x, y, w, h = xywh
    return original.crop((x, y, x + w, y + h)).resize(size, Image.Resampling.LANCZOS)


def assert_same_pixels(fetched: Image.Image, original: Image.Image, xywh) -> None:
    """``fetched`` shows ``xywh`` of ``original``: close in value, and best aligned at zero offset.

    JPEG noise on parchment is about as large as a one-pixel shift, so the tolerance alone cannot
    catch off-by-one tiling; comparing against the region moved by up to 2 pixels can.
    """
    x, y, w, h = xywh
    scores = {
        (dx, dy): mean_abs_diff(fetched, reference_crop(original, (x + dx, y + dy, w, h), fetched.size))
        for dx in range(-2, 3) for dy in range(-2, 3)
        if x + dx >= 0 and y + dy >= 0 and x + dx + w <= original.width and y + dy + h <= original.height
    }
    assert scores[(0, 0)] < PIXEL_TOLERANCE, scores[(0, 0)]
    assert min(scores, key=scores.get) == (0, 0), sorted(scores.items(), key=lambda item: item[1])[:3]


@pytest.fixture(scope="module")
def page() -> Image.Image:
    """A real manuscript page, decoded at reduced size (JPEG draft) to keep the tests fast."""
    with Image.open(CORPUS / "images" / "ms_bml_plut-33.31_40r.jpg") as source:
        source.draft("RGB", (1000, 1300))
        image = source.convert("RGB")
    assert image.size == (1000, 1304)
    return image


def v2_info(**overrides) -> ImageInfo:
    values = {"id": "http://x.test/iiif/a", "api_version": 2, "level": 2, "width": 1000, "height": 800}
    values.update(overrides)
    return ImageInfo(**values)


def service_for(info: ImageInfo) -> ImageServiceRef:
    return ImageServiceRef(id=info.id, api_version=info.api_version, level=info.level)


# ------------------------------------------------------------------------------------------------
# info.json parsing


def test_parse_corpus_v2_level2_service_with_tiles_and_profile_object():
    doc = find_service(CORPUS / "iiif/v2/parser__bl-manifest.json",
                       "https://api.bl.uk/image/iiif/ark:/81055/vdc_100022545676.0x000001")
    info = parse_info_json(doc)
    assert (info.api_version, info.level, info.width, info.height) == (2, 2, 2503, 3375)
    assert info.tiles == (TileSpec(256, 256, (1, 2, 4, 8, 16, 32)),)
    assert info.profile == "http://iiif.io/api/image/2/level2.json"
    assert "gray" in info.extra_qualities and "regionSquare" in info.extra_features


def test_parse_corpus_v3_level1_service_with_extras():
    doc = find_service(
        CORPUS / "iiif/v3/cookbook__0117-add-image-thumbnail.json",
        "https://iiif.io/api/image/3.0/example/reference/4f92cceb12dd53b52433425ce44308c7-ucla_bib1987273_no001_rs_001",
    )
    info = parse_info_json(doc)
    assert (info.api_version, info.level, info.width, info.height) == (3, 1, 3497, 4823)
    assert info.tiles == (TileSpec(512, 512, (1, 2, 4, 8)),)
    assert info.extra_formats == ("png",)
    assert info.extra_qualities == ("default", "color", "gray")


def test_parse_corpus_level0_sizes_sorted_smallest_first():
    doc = find_service(CORPUS / "iiif/v2/parser__manifest-l0.json",
                       "https://apex.dlc.services/thumbs/7/6/c2ad0baa-548c-4ee9-9c7f-11f675677dcc")
    info = parse_info_json(doc)
    assert (info.api_version, info.level) == (2, 0)
    assert info.sizes == ((84, 100), (169, 200), (337, 400), (864, 1024))
    assert "sizeByWhListed" in info.extra_features


def test_parse_v2_service_embedded_in_v3_manifest_with_id_key():
    # v3 manifests embed ImageService2 with "id" instead of "@id": type and profile say version 2.
    doc = find_service(CORPUS / "iiif/v3/helpers__tudelft-novieten.json",
                       "https://dlc.services/iiif-img/7/21/e16c7a6b-9672-d551-70d7-08c88609efb1")
    info = parse_info_json(doc)
    assert (info.api_version, info.level, info.width, info.height) == (2, 1, 3637, 2749)
    assert "native" in info.extra_qualities and "sizeByWh" in info.extra_features
    assert info.sizes[-1] == (1024, 774)


def test_parse_profile_as_single_string_and_at_type():
    doc = find_service(CORPUS / "iiif/collections/parser__wellcome-collection-p3.json",
                       "https://iiif.wellcomecollection.org/thumbs/b29011577_0003.jp2")
    info = parse_info_json(doc)
    assert (info.api_version, info.level, info.width, info.height) == (2, 0, 805, 1024)
    assert len(info.sizes) == 4


def test_parse_rejects_corpus_service_without_dimensions():
    doc = find_service(CORPUS / "iiif/v3/cookbook__0232-image-thumbnail-canvas__manifest-image.json",
                       "https://fixtures.iiif.io/other/level0/Glen/photos/gottingen")
    with pytest.raises(ValueError, match="width and height"):
        parse_info_json(doc)


def test_parse_v3_limits_and_inferred_max_height():
    info = parse_info_json({
        "@context": "http://iiif.io/api/image/3/context.json",
        "id": "https://example.org/iiif/book1-page1/info.json",
        "type": "ImageService3", "protocol": "http://iiif.io/api/image", "profile": "level2",
        "width": 6000, "height": 4000, "maxWidth": 2000, "maxArea": 3_000_000,
        "tiles": [{"width": 512, "scaleFactors": [1, 2, 4, 8, 16]}],
        "sizes": [{"width": 150, "height": 100}, {"width": 600, "height": 400}, {"width": "x"}],
        "extraFeatures": ["sizeUpscaling"],
    })
    assert info.id == "https://example.org/iiif/book1-page1"
    assert (info.api_version, info.level) == (3, 2)
    assert (info.max_width, info.max_height, info.max_area) == (2000, 2000, 3_000_000)
    assert info.tiles == (TileSpec(512, 512, (1, 2, 4, 8, 16)),)  # tile height defaults to width
    assert info.sizes == ((150, 100), (600, 400))
    assert info.extra_features == ("sizeUpscaling",)


def test_parse_v2_limits_inside_profile_object():
    info = parse_info_json({
        "@context": "http://iiif.io/api/image/2/context.json", "@id": "https://example.org/iiif/x",
        "protocol": "http://iiif.io/api/image", "width": 4000, "height": 3000,
        "profile": ["http://iiif.io/api/image/2/level1.json",
                    {"maxWidth": 1000, "maxHeight": 800, "maxArea": 640000, "supports": ["sizeByConfinedWh"]}],
    })
    assert (info.api_version, info.level) == (2, 1)
    assert (info.max_width, info.max_height, info.max_area) == (1000, 800, 640000)
    assert info.extra_features == ("sizeByConfinedWh",)


def test_parse_image_api_1_1_document():
    info = parse_info_json({
        "@context": "http://library.stanford.edu/iiif/image-api/1.1/context.json",
        "@id": "http://iiif.example.com/prefix/1E34750D-38DB-4825-A38A-B60A345E591C",
        "width": 6000, "height": 4000, "scale_factors": [1, 2, 4], "tile_width": 1024, "tile_height": 512,
        "formats": ["jpg", "png"], "qualities": ["native", "grey"],
        "profile": "http://library.stanford.edu/iiif/image-api/1.1/compliance.html#level1",
    })
    assert (info.api_version, info.level) == (1, 1)
    assert info.tiles == (TileSpec(1024, 512, (1, 2, 4)),)
    assert info.extra_qualities == ("native", "grey")


@pytest.mark.parametrize(
    "doc, message",
    [
        ([], "JSON object, not list"),
        ("info", "JSON object, not str"),
        ({"width": 10, "height": 10}, "no @id/id"),
        ({"@id": "  ", "width": 10, "height": 10}, "no @id/id"),
        ({"@id": "http://x/a"}, "width=None"),
        ({"@id": "http://x/a", "width": "wide", "height": 10}, "width='wide'"),
        ({"@id": "http://x/a", "width": 10, "height": -5}, "height=-5"),
        ({"@id": "http://x/a", "width": True, "height": 10}, "width=True"),
        ({"@id": "http://x/a", "width": 10.5, "height": 10}, "width=10.5"),
    ],
)
def test_parse_rejects_garbage_with_precise_message(doc, message):
    with pytest.raises(ValueError) as raised:
        parse_info_json(doc)
    assert message in str(raised.value)


def test_parse_tolerates_broken_tiles_and_unknown_profile():
    info = parse_info_json({
        "@id": "http://x/a", "width": "640", "height": 480.0, "profile": ["http://example.org/custom"],
        "tiles": [None, {"scaleFactors": [1]}, {"width": 256, "scaleFactors": ["2", 1, -1, "x"]}],
    })
    assert (info.width, info.height, info.level, info.api_version) == (640, 480, None, 2)
    assert info.tiles == (TileSpec(256, 256, (1, 2)),)
    assert info.profile == "http://example.org/custom"


# ------------------------------------------------------------------------------------------------
# URL syntax (examples from the Image API 2.1 and 3.0 specifications)


@pytest.mark.parametrize(
    "kwargs, expected_tail",
    [
        ({}, "full/full/0/default.jpg"),
        ({"size": "max"}, "full/full/0/default.jpg"),
        ({"region": "125,15,120,140"}, "125,15,120,140/full/0/default.jpg"),
        ({"region": "pct:41.6,7.5,40,70"}, "pct:41.6,7.5,40,70/full/0/default.jpg"),
        ({"region": (125, 15, 200, 200), "size": "150,"}, "125,15,200,200/150,/0/default.jpg"),
        ({"size": ",150"}, "full/,150/0/default.jpg"),
        ({"size": "pct:50"}, "full/pct:50/0/default.jpg"),
        ({"size": "225,100"}, "full/225,100/0/default.jpg"),
        ({"size": "!225,100"}, "full/!225,100/0/default.jpg"),
        ({"region": "square", "rotation": 22.5}, "square/full/22.5/default.jpg"),
        ({"quality": "gray", "fmt": "png"}, "full/full/0/gray.png"),
        ({"quality": "native"}, "full/full/0/default.jpg"),
    ],
)
def test_v2_url_syntax(kwargs, expected_tail):
    assert image_request_url(SPEC_BASE, 2, **kwargs) == f"{SPEC_BASE}/{expected_tail}"


@pytest.mark.parametrize(
    "kwargs, expected_tail",
    [
        ({}, "full/max/0/default.jpg"),
        ({"size": "full"}, "full/max/0/default.jpg"),
        ({"region": "125,15,120,140", "size": "90,"}, "125,15,120,140/90,/0/default.jpg"),
        ({"size": "^max"}, "full/^max/0/default.jpg"),
        ({"size": "^!360,360"}, "full/^!360,360/0/default.jpg"),
        ({"size": "!225,100", "quality": "color"}, "full/!225,100/0/color.jpg"),
    ],
)
def test_v3_url_syntax(kwargs, expected_tail):
    assert image_request_url(SPEC_BASE, 3, **kwargs) == f"{SPEC_BASE}/{expected_tail}"


def test_v1_url_uses_native_and_grey():
    assert image_request_url(SPEC_BASE, 1) == f"{SPEC_BASE}/full/full/0/native.jpg"
    assert image_request_url(SPEC_BASE, 1, quality="gray").endswith("/0/grey.jpg")


def test_url_strips_info_json_and_slashes_and_keeps_escapes():
    assert image_request_url(SPEC_BASE + "/info.json", 3) == f"{SPEC_BASE}/full/max/0/default.jpg"
    assert image_request_url(SPEC_BASE + "/", 3) == f"{SPEC_BASE}/full/max/0/default.jpg"
    escaped = "https://example.org/iiif/ark:%2F12025%2Fpage%201"
    assert image_request_url(escaped, 2).startswith(escaped + "/full/")
    assert image_request_url("https://example.org/iiif/page 1", 2).startswith("https://example.org/iiif/page%201/")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"api_version": 4}, "unsupported Image API version"),
        ({"region": (0, 0, 0, 10)}, "w, h > 0"),
        ({"region": (0, 0, "a", 10)}, "four integers"),
        ({"rotation": 400}, "rotation"),
        ({"service_id": ""}, "non-empty"),
    ],
)
def test_url_rejects_bad_arguments(kwargs, message):
    arguments = {"service_id": SPEC_BASE, "api_version": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        image_request_url(**arguments)


def test_urls_are_accepted_by_the_reference_implementation_parser():
    # zimeon/iiif is the IIIF editors' reference implementation: its parser is an independent check.
    from iiif.request import IIIFRequest

    cases = [
        (2, "2.1", {"region": (10, 20, 300, 400), "size": "150,"}),
        (2, "2.1", {"size": "!224,224"}),
        (2, "2.0", {}),
        (3, "3.0", {}),
        (3, "3.0", {"region": (10, 20, 300, 400), "size": "150,200"}),
        (3, "3.0", {"size": "^!512,512", "quality": "gray"}),
        (1, "1.1", {"size": "pct:25"}),
    ]
    for version, reference_version, kwargs in cases:
        url = image_request_url(SPEC_BASE, version, **kwargs)
        parsed = IIIFRequest(api_version=reference_version, baseurl=SPEC_BASE.rsplit("/", 1)[0] + "/").parse_url(url)
        assert parsed.identifier == "1E34750D-38DB-4825-A38A-B60A345E591C", url
    # and the reference parser does reject 2.x syntax as 3.0, so the check has teeth
    from iiif.error import IIIFError

    with pytest.raises(IIIFError):
        IIIFRequest(api_version="3.0", baseurl=SPEC_BASE.rsplit("/", 1)[0] + "/").parse_url(
            image_request_url(SPEC_BASE, 2)
        )


# ------------------------------------------------------------------------------------------------
# fetch planning (pure)


def test_level2_whole_image_uses_confined_size():
    info = v2_info(width=1000, height=1304)
    plan = plan_fetch(info, service_for(info), 224)
    assert plan.url == "http://x.test/iiif/a/full/!224,224/0/default.jpg"
    assert plan.output_size == (172, 224)


def test_level1_uses_width_only_syntax_unless_confined_is_advertised():
    info = v2_info(level=1, width=1000, height=1304)
    assert plan_fetch(info, service_for(info), 224).url.endswith("/full/172,/0/default.jpg")
    confined = v2_info(level=1, width=1000, height=1304, extra_features=("sizeByConfinedWh",))
    assert plan_fetch(confined, service_for(confined), 224).url.endswith("/full/!224,224/0/default.jpg")


def test_region_is_never_upscaled():
    for version, full in ((2, "full"), (3, "max")):
        info = v2_info(api_version=version)
        plan = plan_fetch(info, service_for(info), 512, (100, 50, 120, 80))
        assert plan.url == f"http://x.test/iiif/a/100,50,120,80/{full}/0/default.jpg"
        assert plan.output_size == (120, 80) and plan.region_xywh == (100, 50, 120, 80)


def test_region_is_clamped_to_the_image_and_rejected_outside_it():
    info = v2_info()
    plan = plan_fetch(info, service_for(info), 100, (900, 700, 300, 300))
    assert plan.region_xywh == (900, 700, 100, 100)
    assert "/900,700,100,100/" in plan.url
    with pytest.raises(ValueError, match="outside"):
        plan_fetch(info, service_for(info), 100, (1000, 0, 10, 10))
    with pytest.raises(ValueError, match="target_long_edge"):
        plan_fetch(info, service_for(info), 0)


def test_server_limits_are_respected():
    info = v2_info(api_version=3, width=6000, height=4000, max_width=1000, max_height=1000)
    plan = plan_fetch(info, service_for(info), 2000)
    assert max(plan.output_size) <= 1000
    assert plan.url.endswith("/full/!1000,1000/0/default.jpg") and plan.output_size == (1000, 666)
    area = v2_info(level=1, width=6000, height=4000, max_area=1_000_000)
    plan = plan_fetch(area, service_for(area), 3000)
    w, h = plan.output_size
    assert w * h <= 1_000_000 and plan.url.endswith(f"/full/{w},/0/default.jpg")


def test_level0_picks_smallest_listed_size_reaching_target():
    info = v2_info(level=0, width=864, height=1024, sizes=((84, 100), (169, 200), (337, 400), (864, 1024)))
    plan = plan_fetch(info, service_for(info), 224)
    assert plan.url == "http://x.test/iiif/a/full/337,/0/default.jpg" and plan.output_size == (337, 400)
    assert plan_fetch(info, service_for(info), 1000).url == "http://x.test/iiif/a/full/full/0/default.jpg"
    v3 = v2_info(api_version=3, level=0, width=864, height=1024, sizes=info.sizes)
    assert plan_fetch(v3, service_for(v3), 224).url == "http://x.test/iiif/a/full/337,400/0/default.jpg"
    assert plan_fetch(v3, service_for(v3), 1000).url == "http://x.test/iiif/a/full/max/0/default.jpg"


def test_level0_falls_back_to_largest_size_or_to_tiles_when_they_reach_further():
    sizes = ((125, 100), (250, 200))
    info = v2_info(level=0, sizes=sizes)
    plan = plan_fetch(info, service_for(info), 600)
    assert plan.url.endswith("/full/250,/0/default.jpg")
    tiled = v2_info(level=0, sizes=sizes, tiles=(TileSpec(256, 256, (1, 2, 4)),))
    plan = plan_fetch(tiled, service_for(tiled), 450)
    assert len(plan.requests) == 4 and plan.output_size == (500, 400)  # scale factor 2, 2x2 tiles
    assert {r.url.rsplit("/a/", 1)[1] for r in plan.requests} == {
        "0,0,512,512/256,/0/default.jpg", "512,0,488,512/244,/0/default.jpg",
        "0,512,512,288/256,/0/default.jpg", "512,512,488,288/244,/0/default.jpg",
    }


@pytest.mark.parametrize("version, sizes", [(2, ("256,", "244,")), (3, ("256,256", "244,256"))])
def test_level0_region_uses_tiles_with_offsets_and_crop(version, sizes):
    info = v2_info(api_version=version, level=0, tiles=(TileSpec(256, 256, (1, 2, 4)),))
    plan = plan_fetch(info, service_for(info), 150, (300, 200, 400, 300))
    # long edge 400: scale factor 2 gives 200 px >= 150, scale factor 4 only 100
    assert [(r.url.rsplit("/a/", 1)[1], r.x, r.y, r.width, r.height) for r in plan.requests] == [
        (f"0,0,512,512/{sizes[0]}/0/default.jpg", 0, 0, 256, 256),
        (f"512,0,488,512/{sizes[1]}/0/default.jpg", 256, 0, 244, 256),
    ]
    assert plan.mosaic_size == (500, 256)
    assert plan.crop_box == (150, 100, 350, 250)
    assert plan.output_size == (200, 150)


def test_level0_region_without_tiles_crops_a_listed_size():
    info = v2_info(level=0, sizes=((250, 200), (500, 400)))
    plan = plan_fetch(info, service_for(info), 100, (200, 400, 400, 400))
    assert plan.url.endswith("/full/250,/0/default.jpg")  # region becomes 100x100 at 250 wide
    assert plan.crop_box == (50, 100, 150, 200)


def test_unknown_level_prefers_listed_sizes_then_scales_like_level1():
    info = v2_info(level=None, sizes=((250, 200), (500, 400)))
    assert plan_fetch(info, service_for(info), 300).url.endswith("/full/500,/0/default.jpg")
    assert plan_fetch(info, service_for(info), 700).url.endswith("/full/700,/0/default.jpg")


def test_plans_without_info_json():
    sized = ImageServiceRef(id="http://x.test/s/info.json", api_version=3, width=1000, height=2000)
    assert plan_fetch(None, sized, 300).url == "http://x.test/s/full/150,/0/default.jpg"
    level2 = ImageServiceRef(id="http://x.test/s", api_version=2, level=2, width=1000, height=2000)
    assert plan_fetch(None, level2, 300).url == "http://x.test/s/full/!300,300/0/default.jpg"
    bare = ImageServiceRef(id="http://x.test/s/", api_version=3)
    plan = plan_fetch(None, bare, 300)
    assert plan.url == "http://x.test/s/full/!300,300/0/default.jpg" and plan.output_size is None
    region = plan_fetch(None, bare, 300, (10, 10, 100, 50))
    assert region.url == "http://x.test/s/10,10,100,50/max/0/default.jpg"
    level0 = ImageServiceRef(id="http://x.test/s", api_version=2, level=0, width=1000, height=2000)
    plan = plan_fetch(None, level0, 300, (10, 20, 100, 50))
    assert plan.url == "http://x.test/s/full/full/0/default.jpg" and plan.crop_box == (10, 20, 110, 70)


# ------------------------------------------------------------------------------------------------
# stitching (pure)


def test_stitch_scales_crop_when_server_returns_another_size():
    plan = FetchPlan(requests=(TileRequest("u", 0, 0, 100, 100),), mosaic_size=(100, 100), crop_box=(50, 0, 100, 50))
    source = Image.new("RGB", (200, 200), "black")
    source.paste((255, 0, 0), (100, 0, 200, 100))  # the top-right quarter is red
    result = stitch_tiles(plan, [source])
    assert result.size == (100, 100) and result.getpixel((50, 50)) == (255, 0, 0)


def test_stitch_rejects_wrong_number_of_images():
    plan = FetchPlan(requests=(TileRequest("a"), TileRequest("b")), mosaic_size=(2, 1))
    with pytest.raises(ValueError, match="2 requests but 1 images"):
        stitch_tiles(plan, [Image.new("RGB", (1, 1))])


# ------------------------------------------------------------------------------------------------
# canvas <-> image coordinates


def test_canvas_to_image_scales_each_axis():
    assert canvas_to_image_xywh((200, 300, 400, 600), 2000, 3000, 1000, 1500) == (100, 150, 200, 300)
    # anisotropic: canvas 1000x1000, image 500x2000
    assert canvas_to_image_xywh((100, 100, 100, 100), 1000, 1000, 500, 2000) == (50, 200, 50, 200)


def test_canvas_to_image_with_image_painted_on_part_of_canvas():
    target = (100, 200, 800, 1200)  # image 400x600 painted at half scale into this box
    assert canvas_to_image_xywh((100, 200, 800, 1200), 1000, 1600, 400, 600, target) == (0, 0, 400, 600)
    assert canvas_to_image_xywh((500, 800, 200, 200), 1000, 1600, 400, 600, target) == (200, 300, 100, 100)
    # partly outside the painted area: clamped to the image
    assert canvas_to_image_xywh((0, 0, 300, 400), 1000, 1600, 400, 600, target) == (0, 0, 100, 100)
    with pytest.raises(ValueError, match="does not overlap"):
        canvas_to_image_xywh((0, 0, 50, 50), 1000, 1600, 400, 600, target)


def test_canvas_image_round_trip_covers_the_original_box():
    target = (30, 40, 700, 900)
    for box in [(35, 47, 123, 211), (100, 100, 1, 1), (30, 40, 700, 900)]:
        image_box = canvas_to_image_xywh(box, 800, 1000, 1234, 1777, target)
        back = image_to_canvas_xywh(image_box, 800, 1000, 1234, 1777, target)
        x, y, w, h = box
        bx, by, bw, bh = back
        assert bx <= x and by <= y and bx + bw >= x + w and by + bh >= y + h
        assert bx >= x - 2 and by >= y - 2 and bx + bw <= x + w + 2 and by + bh <= y + h + 2


@pytest.mark.parametrize(
    "args",
    [
        ((0, 0, 10, 10), 0, 100, 10, 10),
        ((0, 0, 10, 10), 100, 100, 10, -1),
        ((0, 0, 0, 10), 100, 100, 10, 10),
        ((0, 0, "a", 10), 100, 100, 10, 10),
        ((0, 0, float("nan"), 10), 100, 100, 10, 10),
    ],
)
def test_mapping_rejects_bad_input(args):
    with pytest.raises(ValueError):
        canvas_to_image_xywh(*args)
    with pytest.raises(ValueError):
        image_to_canvas_xywh(*args)


# ------------------------------------------------------------------------------------------------
# end to end against the real HTTP server


REGION = (130, 210, 260, 200)


@pytest.mark.parametrize("flavour", ["v2", "v3", "level0", "level0_v3"])
def test_region_fetch_matches_pillow_crop(iiif_server, page, flavour):
    services = iiif_server.add_image("page", page, tile_size=128)
    info = fetch_info(services[flavour])
    assert info.level == (0 if flavour.startswith("level0") else 2)
    service = ImageServiceRef(id=services[flavour], api_version=info.api_version)
    for target in (96, 256):  # 96: scaled down (tile scale factor 2 at level 0); 256: full resolution
        plan = plan_fetch(info, service, target, REGION)
        if flavour.startswith("level0"):
            assert len(plan.requests) > 1  # really stitched from tiles
        fetched = execute(plan)
        assert fetched.size == plan.output_size
        assert max(fetched.size) >= min(target, max(REGION[2:]))
        assert_same_pixels(fetched, page, REGION)


@pytest.mark.parametrize("flavour", ["v2", "v3", "level0", "level0_v3"])
def test_whole_image_fetch_matches_pillow_resize(iiif_server, page, flavour):
    services = iiif_server.add_image("page", page, tile_size=128)
    info = fetch_info(services[flavour])
    plan = plan_fetch(info, ImageServiceRef(id=services[flavour], api_version=info.api_version), 224)
    fetched = execute(plan)
    assert fetched.size == plan.output_size and max(fetched.size) >= 224
    assert_same_pixels(fetched, page, (0, 0, *page.size))


def test_level0_refuses_requests_it_did_not_list(iiif_server, page):
    services = iiif_server.add_image("page", page, tile_size=128)
    base = services["level0"]
    info = fetch_info(base)
    w, h = info.sizes[0]
    assert fetch(f"{base}/full/{w},/0/default.jpg")[0] == 200
    assert fetch(f"{base}/full/{w},{h}/0/default.jpg")[0] == 200  # 2.0's sizeByWhListed form
    assert fetch(f"{base}/0,0,128,128/128,/0/default.jpg")[0] == 200
    refused = [f"full/{w + 1},", "full/!224,224", "full/full", "full/pct:50", "0,0,128,128/64,",
               "1,0,128,128/128,"]
    for path in [p + "/0/default.jpg" for p in refused] + [
        "0,0,128,128/128,/90/default.jpg", "0,0,128,128/128,/0/gray.jpg", "0,0,128,128/128,/0/default.png",
    ]:
        assert fetch(f"{base}/{path}")[0] == 404, path
    v3_base = services["level0_v3"]
    assert fetch(f"{v3_base}/full/{w},{h}/0/default.jpg")[0] == 200
    assert fetch(f"{v3_base}/full/{w},/0/default.jpg")[0] == 404  # 3.0 lists sizes as w,h only


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # zimeon/iiif leaks file handles
def test_level0_tiles_match_reference_static_generator(tmp_path, page):
    """Tile URLs the planner builds for a 2.x level-0 service exist in a tree made by zimeon/iiif."""
    from iiif.static import IIIFStatic

    source = tmp_path / "page.jpg"
    small = page.resize((page.width // 2, page.height // 2))
    small.save(source, quality=95)
    IIIFStatic(dst=str(tmp_path / "static"), tilesize=128, api_version="2.1", prefix="http://static.test/iiif").generate(
        str(source), identifier="page"
    )
    tree = tmp_path / "static" / "page"
    info = parse_info_json(json.loads((tree / "info.json").read_text()))
    assert (info.level, info.api_version, info.width) == (0, 2, small.width)
    service = ImageServiceRef(id=info.id, api_version=2, level=0)
    with Image.open(source) as decoded:
        original = decoded.convert("RGB")
    for target, region in [(64, (40, 60, 150, 120)), (200, (40, 60, 150, 120)), (100, None)]:
        plan = plan_fetch(info, service, target, region)
        tiles = []
        for request in plan.requests:
            file = tree / request.url[len(info.id) + 1:]
            assert file.is_file(), f"planner asked for {request.url}, which the static tree lacks"
            with Image.open(file) as tile:
                tiles.append(tile.convert("RGB"))
        assert_same_pixels(stitch_tiles(plan, tiles), original, region or (0, 0, *original.size))
    gc.collect()  # release the file handles zimeon/iiif leaves open while the filter below applies


def test_v3_server_follows_upscaling_and_syntax_rules(iiif_server, page):
    base = iiif_server.add_image("page", page)["v3"]
    assert fetch(f"{base}/0,0,100,100/max/0/default.jpg")[0] == 200
    assert fetch(f"{base}/0,0,100,100/full/0/default.jpg")[0] == 400  # "full" size is 2.x syntax
    status, body, _ = fetch(f"{base}/0,0,100,100/200,/0/default.jpg")
    assert status == 400 and b"^" in body
    assert fetch_image(f"{base}/0,0,100,100/^200,/0/default.jpg").size == (200, 200)
    assert fetch_image(f"{base}/0,0,100,100/!300,300/0/default.jpg").size == (100, 100)  # no upscaling
    assert fetch_image(f"{base}/square/pct:50/0/gray.png").size == (page.width // 2, page.width // 2)
    assert fetch(f"{base}/full/max/45/default.jpg")[0] == 400
    assert fetch(f"{base}/full/max/0/default.webp")[0] == 400
    assert fetch(f"{base}/9999,0,10,10/max/0/default.jpg")[0] == 400


def test_v2_server_sizes_rotation_and_qualities(iiif_server, page):
    base = iiif_server.add_image("page", page)["v2"]
    assert fetch_image(f"{base}/0,0,100,50/full/0/default.jpg").size == (100, 50)
    assert fetch_image(f"{base}/0,0,100,50/200,/0/native.jpg").size == (200, 100)  # sizeAboveFull
    assert fetch_image(f"{base}/0,0,100,50/,25/90/default.jpg").size == (25, 50)
    assert fetch_image(f"{base}/pct:0,0,50,50/80,30/!0/color.png").size == (80, 30)
    assert fetch(f"{base}/full/^max/0/default.jpg")[0] == 400
    assert fetch(f"{base}/full/full/0/sepia.jpg")[0] == 400
    assert fetch(f"{base}/full/0,/0/default.jpg")[0] == 400
    assert fetch(f"{base}/full/full/0")[0] == 400


def test_server_info_json_headers_redirect_and_404(iiif_server, page):
    services = iiif_server.add_image("page", page)
    status, body, headers = fetch(services["v3"] + "/info.json")
    doc = json.loads(body)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert doc["type"] == "ImageService3" and doc["profile"] == "level2"
    assert doc["@context"] == "http://iiif.io/api/image/3/context.json"
    v2 = json.loads(fetch(services["v2"] + "/info.json")[1])
    assert v2["@context"] == "http://iiif.io/api/image/2/context.json"
    assert v2["profile"][0] == "http://iiif.io/api/image/2/level2.json" and v2["@id"] == services["v2"]
    with urllib.request.urlopen(services["v2"], timeout=10) as response:  # base URI redirects
        assert response.url == services["v2"] + "/info.json"
    assert fetch(iiif_server.base_url + "/iiif2/missing/info.json")[0] == 404
    assert fetch(iiif_server.base_url + "/elsewhere")[0] == 404
    with Image.open(io.BytesIO(fetch(services["raw"])[1])) as raw:
        assert raw.size == page.size
    assert "/iiif2/page/info.json" in iiif_server.requests


def test_server_serves_json_documents(iiif_server):
    url = iiif_server.add_json("manifests/m1.json", {"id": "m1"})
    status, body, headers = fetch(url)
    assert (status, json.loads(body), headers["Access-Control-Allow-Origin"]) == (200, {"id": "m1"}, "*")
    iiif_server.add_json("/broken.json", b"\xff{not json", headers={"Content-Type": "text/html"})
    status, body, headers = fetch(iiif_server.base_url + "/broken.json")
    assert (status, body, headers["Content-Type"]) == (200, b"\xff{not json", "text/html")
    assert iiif_server.requests == ["/manifests/m1.json", "/broken.json"]


def test_plan_respects_server_max_width(iiif_server, page):
    services = iiif_server.add_image("page", page, max_width=300)
    for flavour in ("v2", "v3"):
        info = fetch_info(services[flavour])
        assert info.max_width == 300 and info.max_height == 300
        plan = plan_fetch(info, ImageServiceRef(id=services[flavour], api_version=info.api_version), 800)
        fetched = execute(plan)
        assert max(fetched.size) <= 300 and math.isclose(fetched.width / fetched.height, page.width / page.height,
                                                         rel_tol=0.02)
    # asking the server directly for more than its maxWidth is refused
    assert fetch(f"{services['v3']}/full/400,/0/default.jpg")[0] == 400
