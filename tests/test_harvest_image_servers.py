"""Canvas images and region crops fetched from three real, independent IIIF image servers
(IIPImage behind lighttpd, the `iiif` reference server, a static level-0 tree) match the same
crop made locally with Pillow from the original file.

Canvases are twice the size of their images (and one paints its image on part of a larger
canvas), so a mix-up of canvas and image coordinates shows as a crop of the wrong place.
"""
from __future__ import annotations

from PIL import Image
from sqlalchemy import select

from harvest.http import Fetcher
from harvest.images import InfoCache, fetch_canvas_derivatives
from harvest.manifests import harvest_sources
from harvest.politeness import PolitenessPolicy
from harvest.regions import RegionGrid, fetch_region_derivatives, plan_regions
from manuscripts_search.store.db import session_scope
from manuscripts_search.store.derivatives import DerivativeStore
from manuscripts_search.models import Canvas, Region
from tests.helpers.crops import TOLERANCE, difference, expected_crop
from tests.helpers.scripted_server import ScriptedServer

LONG_EDGE = 160
GRID = RegionGrid((2,), 0.25)


def service_description(server_name: str, service_id: str) -> dict:
    if "reference" in server_name:
        return {"id": service_id, "type": "ImageService3", "profile": "level1"}
    level = "level0" if "static" in server_name else "level1"
    return {"@context": "http://iiif.io/api/image/2/context.json", "@id": service_id,
            "profile": f"http://iiif.io/api/image/2/{level}.json"}


def manifest_for(server, base: str, offset_canvas: bool) -> dict:
    """A v3 manifest: per image a canvas twice its size; optionally one canvas that paints the
    image at an offset on a larger canvas."""
    canvases = []
    for name, service_id in sorted(server.services.items()):
        with Image.open(server.sources[name]) as image:
            width, height = image.size
        layouts = [("double", (width * 2, height * 2), None)]
        if offset_canvas:
            layouts.append(("offset", (width + 300, height + 100), (200, 60, width, height)))
        for layout, (cw, ch), target in layouts:
            canvas_id = f"{base}/canvas/{name}-{layout}"
            on = canvas_id + (f"#xywh={','.join(map(str, target))}" if target else "")
            canvases.append({
                "id": canvas_id, "type": "Canvas", "width": cw, "height": ch, "label": {"none": [name]},
                "items": [{"id": f"{canvas_id}/page", "type": "AnnotationPage", "items": [{
                    "id": f"{canvas_id}/image", "type": "Annotation", "motivation": "painting", "target": on,
                    "body": {"id": f"{service_id}/full/max/0/default.jpg", "type": "Image",
                             "format": "image/jpeg", "service": [service_description(server.name, service_id)]}}]}]})
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/manifest.json",
            "type": "Manifest", "label": {"en": [server.name]}, "items": canvases}


class RecordingFetcher(Fetcher):
    """The real client, remembering every URL it was asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.urls: list[str] = []

    def get(self, source, **kwargs):
        self.urls.append(source)
        return super().get(source, **kwargs)


def harvest_with_regions(server, session_factory, tmp_path, offset_canvas: bool):
    with ScriptedServer() as scripted:
        url = scripted.add_json("/manifest.json", manifest_for(server, scripted.base_url, offset_canvas))
        fetcher = RecordingFetcher("manuscripts-search-tests", timeout=30, retries=1,
                                   policy=PolitenessPolicy(max_per_host=2, backoff_base=0.1))
        report = harvest_sources([url], session_factory, fetcher)
        assert not report.failures, report.failures
    derivatives = DerivativeStore(tmp_path / "derivatives")
    infos = InfoCache(fetcher, session_factory)
    images = fetch_canvas_derivatives(session_factory, fetcher, derivatives, long_edge=LONG_EDGE, threads=2,
                                      infos=infos)
    assert not images.failures, images.failures
    assert plan_regions(session_factory, GRID) == 4 * (4 if offset_canvas else 2)
    fetcher.urls.clear()  # from here on: the region pass only
    regions = fetch_region_derivatives(session_factory, fetcher, derivatives, long_edge=LONG_EDGE, threads=2,
                                       infos=infos)
    assert not regions.failures, regions.failures
    return derivatives, fetcher.urls


def check_against_originals(server, session_factory, derivatives) -> int:
    checked = 0
    with session_scope(session_factory) as session:
        for canvas in session.scalars(select(Canvas)):
            name = canvas.label["none"][0]
            with Image.open(server.sources[name]) as image:
                original = image.convert("RGB")
            target = tuple(map(int, canvas.target_xywh.split(","))) if canvas.target_xywh else None
            whole = derivatives.open_image(canvas.derivative_sha256)
            assert max(whole.size) == LONG_EDGE
            assert difference(whole, original) < TOLERANCE
            regions = session.scalars(select(Region).where(Region.canvas_id == canvas.id).order_by(Region.id)).all()
            assert len(regions) == 4
            for region in regions:
                fetched = derivatives.open_image(region.derivative_sha256)
                box = (region.x, region.y, region.w, region.h)
                right = expected_crop(original, box, (canvas.width, canvas.height), target)
                error = difference(fetched, right)
                assert error < TOLERANCE, (server.name, canvas.iiif_id, box, error)
                # ... and closer to it than to the same box moved by 4% in any direction.
                for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    moved = (box[0] + dx * box[2] // 25, box[1] + dy * box[3] // 25, box[2], box[3])
                    assert error < difference(fetched, expected_crop(original, moved, (canvas.width, canvas.height),
                                                                     target)), (server.name, box, dx, dy)
                checked += 1
    return checked


def image_requests(urls: list[str], server) -> list[str]:
    """The image requests made to ``server``, as "region/size" strings."""
    found = []
    for url in urls:
        for service_id in server.services.values():
            if url.startswith(service_id + "/") and not url.endswith("/info.json"):
                region, size = url[len(service_id) + 1:].split("/")[:2]
                found.append(f"{region}/{size}")
    return found


def test_iipsrv_regions_match_local_crops(iipsrv_server, session_factory, tmp_path):
    derivatives, urls = harvest_with_regions(iipsrv_server, session_factory, tmp_path, offset_canvas=False)
    assert check_against_originals(iipsrv_server, session_factory, derivatives) == 8
    # Level 1: one request per region, scaled by the server with the "w," form level 1 promises.
    requests = image_requests(urls, iipsrv_server)
    regions = [r for r in requests if not r.startswith("full/")]
    assert len(regions) == 8 and all(r.split("/")[0].count(",") == 3 and r.endswith(",") for r in regions)


def test_reference_server_regions_match_local_crops(iiif_reference_server, session_factory, tmp_path):
    derivatives, urls = harvest_with_regions(iiif_reference_server, session_factory, tmp_path, offset_canvas=True)
    assert check_against_originals(iiif_reference_server, session_factory, derivatives) == 16
    regions = [r for r in image_requests(urls, iiif_reference_server) if not r.startswith("full/")]
    assert len(regions) == 16


def test_static_level0_regions_are_stitched_from_tiles(static_level0_server, session_factory, tmp_path):
    derivatives, urls = harvest_with_regions(static_level0_server, session_factory, tmp_path, offset_canvas=False)
    assert check_against_originals(static_level0_server, session_factory, derivatives) == 8
    requests = image_requests(urls, static_level0_server)
    # Only files a level-0 tree has (tiles "x,y,w,h/w,", sizes "full/w,"); in the region pass
    # each tile is fetched once per canvas although overlapping regions share it.
    tiles = [r for r in requests if not r.startswith("full/")]
    assert tiles and all(r.split("/")[0].count(",") == 3 and r.endswith(",") for r in tiles)
    assert all(r.split("/")[1].endswith(",") for r in requests)
    assert len(tiles) == len(set(tiles))
