"""Re-harvesting is incremental: unchanged documents cost one conditional request (or, from a
server that ignores those, a hash comparison), changed manifests are updated in place with the
vectors of changed canvases marked stale, and manifests that disappear are flagged, not lost."""
from __future__ import annotations

import copy

from sqlalchemy import func, select

from harvest.http import Fetcher
from harvest.manifests import harvest_sources
from harvest.politeness import PolitenessPolicy
from manuscripts_search.store.db import session_scope
from manuscripts_search.models import Canvas, Embedding, FetchedDocument, Manifest, TextAnnotation
from tests.helpers.scripted_server import Reply, ScriptedServer


def v3_manifest(base: str, name: str, images: list[str], label: str = "a book") -> dict:
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/{name}",
            "type": "Manifest", "label": {"en": [label]},
            "items": [{"id": f"{base}/{name}/canvas/{i}", "type": "Canvas", "width": 1000, "height": 1500,
                       "items": [{"id": f"{base}/{name}/p/{i}", "type": "AnnotationPage", "items": [{
                           "id": f"{base}/{name}/a/{i}", "type": "Annotation", "motivation": "painting",
                           "target": f"{base}/{name}/canvas/{i}",
                           "body": {"id": f"{base}/img/{image}.jpg", "type": "Image", "format": "image/jpeg"}}]}],
                       "annotations": [{"id": f"{base}/{name}/text/{i}.json", "type": "AnnotationPage"}]}
                      for i, image in enumerate(images)]}


def text_page(base: str, name: str, index: int, words: str) -> dict:
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/{name}/text/{index}.json",
            "type": "AnnotationPage",
            "items": [{"id": f"{base}/{name}/text/{index}/1", "type": "Annotation", "motivation": "supplementing",
                       "body": {"type": "TextualBody", "value": words, "format": "text/plain", "language": "la"},
                       "target": f"{base}/{name}/canvas/{index}#xywh=10,20,300,40"}]}


def last_modified_route(doc: dict, stamp: str = "Tue, 01 Oct 2024 10:00:00 GMT"):
    """A server that knows Last-Modified but no ETag."""
    import json

    body = json.dumps(doc).encode()

    def route(request):
        if request.headers.get("if-modified-since") == stamp:
            return Reply(304, b"", {"Last-Modified": stamp})
        return Reply(200, body, {"Content-Type": "application/json", "Last-Modified": stamp})

    return route


def unconditional_route(doc: dict):
    """A server that ignores conditional requests: always 200, same bytes."""
    import json

    body = json.dumps(doc).encode()
    return lambda _request: Reply(200, body, {"Content-Type": "application/json"})


def embed_everything(session_factory) -> None:
    with session_scope(session_factory) as session:
        for canvas in session.scalars(select(Canvas)):
            session.add(Embedding(space="test@1", model_id="test", model_revision="1", canvas_id=canvas.id,
                                  dim=2, vector=b"\x00" * 8, stale=False))


def canvases_by_id(session_factory) -> dict:
    with session_scope(session_factory) as session:
        return {c.iiif_id: (c.id, c.image_url) for c in session.scalars(select(Canvas))}


def stale_by_canvas(session_factory) -> dict:
    with session_scope(session_factory) as session:
        return {iiif_id: stale for iiif_id, stale in session.execute(
            select(Canvas.iiif_id, Embedding.stale).join(Embedding, Embedding.canvas_id == Canvas.id))}


def test_unchanged_changed_and_gone(session_factory):
    with ScriptedServer() as server:
        base = server.base_url
        books = {"a.json": ["a0", "a1", "a2"], "b.json": ["b0", "b1"], "c.json": ["c0"], "d.json": ["d0", "d1"]}
        docs = {name: v3_manifest(base, name, images) for name, images in books.items()}
        server.add_json("/a.json", docs["a.json"])
        server.add_json("/b.json", docs["b.json"])
        server.add("/c.json", last_modified_route(docs["c.json"]))
        server.add("/d.json", unconditional_route(docs["d.json"]))
        for name, images in books.items():
            for index in range(len(images)):
                server.add_json(f"/{name}/text/{index}.json", text_page(base, name, index, f"verba {name} {index}"))
        collection = {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/all.json",
                      "type": "Collection", "label": {"en": ["all"]},
                      "items": [{"id": f"{base}/{name}", "type": "Manifest"} for name in books]}
        server.add_json("/all.json", collection)
        fetcher = Fetcher("tests", timeout=2, retries=0, policy=PolitenessPolicy(max_per_host=4))

        first = harvest_sources([f"{base}/all.json"], session_factory, fetcher)
        assert (first.new, first.changed, first.unchanged) == (13, 0, 0)  # 1 + 4 manifests + 8 text pages
        assert first.text_annotations == 8 and not first.failures  # one per referenced text page
        embed_everything(session_factory)
        before = canvases_by_id(session_factory)
        seen = len(server.requests)

        again = harvest_sources([f"{base}/all.json"], session_factory, fetcher)
        requests = server.requests[seen:]
        assert (again.new, again.changed, again.unchanged) == (0, 0, 13)
        assert len(again.manifests) == 4 and len(again.collections) == 1
        assert len(requests) == 13 and len({r.path for r in requests}) == 13  # one request each
        statuses = {r.path: r.status for r in requests}
        assert statuses["/d.json"] == 200 and all(s == 304 for p, s in statuses.items() if p != "/d.json")
        assert requests[0].headers["if-none-match"]  # validators were sent
        assert next(r for r in requests if r.path == "/c.json").headers["if-modified-since"]
        assert canvases_by_id(session_factory) == before
        assert not any(stale_by_canvas(session_factory).values())
        with session_scope(session_factory) as session:
            assert session.scalar(select(func.count()).select_from(TextAnnotation)) == 8  # no duplicates

        # a.json changes: canvas 1 shows another image, canvas 2 is dropped, canvas 3 is new.
        changed = v3_manifest(base, "a.json", ["a0", "a1-rescanned", "a2"], label="a book, revised")
        changed["items"] = changed["items"][:2] + [v3_manifest(base, "a.json", ["x", "x", "x", "a3"])["items"][3]]
        # Its first canvas's text moved to another page: the old page's text must go.
        changed["items"][0]["annotations"] = [{"id": f"{base}/a.json/text/0b.json", "type": "AnnotationPage"}]
        server.add_json("/a.json", changed)
        emended = text_page(base, "a.json", 0, "verba emendata")
        emended["id"] = f"{base}/a.json/text/0b.json"
        server.add_json("/a.json/text/0b.json", emended)
        server.add_json("/a.json/text/3.json", text_page(base, "a.json", 3, "verba nova"))
        server.add("/b.json", lambda _r: Reply(410, b"withdrawn", {"Content-Type": "text/plain"}))
        third = harvest_sources([f"{base}/all.json"], session_factory, fetcher)

        assert third.changed == 1 and third.new == 2  # a.json; text pages 0b and 3 are new
        assert third.gone == [f"{base}/b.json"]
        after = canvases_by_id(session_factory)
        a = f"{base}/a.json/canvas/"
        assert after[a + "0"] == before[a + "0"]  # same row: vectors survive
        assert after[a + "1"][0] == before[a + "1"][0] and after[a + "1"][1].endswith("a1-rescanned.jpg")
        assert a + "2" not in after and a + "3" in after
        stale = stale_by_canvas(session_factory)
        assert stale[a + "0"] is False and stale[a + "1"] is True
        assert a + "2" not in stale  # removed canvas: its vector went with it
        with session_scope(session_factory) as session:
            rows = {m.url: m for m in session.scalars(select(Manifest))}
            assert rows[f"{base}/a.json"].label == {"en": ["a book, revised"]}
            assert rows[f"{base}/a.json"].canvas_count == 3
            gone = rows[f"{base}/b.json"]
            assert gone.error == "gone: HTTP 410" and gone.http_status == 410
            assert gone.canvas_count == 2 and len(gone.canvases) == 2  # data kept
            texts = {t.text: t for t in session.scalars(select(TextAnnotation))}
            assert "verba a.json 0" not in texts and texts["verba emendata"].xywh == "10,20,300,40"
            assert texts["verba nova"].canvas_id is not None
            assert session.scalar(select(FetchedDocument.gone_at).where(
                FetchedDocument.url == f"{base}/b.json")) is not None
        assert all(stale for iiif_id, stale in stale.items() if "/b.json/" in iiif_id)

        # b.json comes back: no longer flagged.
        server.add_json("/b.json", copy.deepcopy(docs["b.json"]))
        fourth = harvest_sources([f"{base}/all.json"], session_factory, fetcher)
        assert fourth.gone == [] and f"{base}/b.json" in fourth.manifests
        with session_scope(session_factory) as session:
            assert session.scalar(select(Manifest.error).where(Manifest.url == f"{base}/b.json")) is None


def test_info_json_is_cached_between_runs(session_factory):
    from datetime import timedelta

    from harvest.images import InfoCache

    info = {"@context": "http://iiif.io/api/image/3/context.json", "id": "", "type": "ImageService3",
            "protocol": "http://iiif.io/api/image", "profile": "level0", "width": 1000, "height": 800,
            "sizes": [{"width": 250, "height": 200}]}
    with ScriptedServer() as server:
        info["id"] = server.url("/iiif/page")
        server.add_json("/iiif/page/info.json", info)
        fetcher = Fetcher("tests", timeout=2, retries=0)
        first = InfoCache(fetcher, session_factory).get(server.url("/iiif/page"))
        assert (first.width, first.height, first.level, first.sizes) == (1000, 800, 0, ((250, 200),))
        assert InfoCache(fetcher, session_factory).get(server.url("/iiif/page/")) == first  # next run: no request
        assert server.count("/iiif/page/info.json") == 1
        refreshed = InfoCache(fetcher, session_factory, max_age=timedelta(0)).get(server.url("/iiif/page"))
        assert refreshed == first and server.requests[-1].status == 304  # stale: revalidated, not refetched
        # A service without a usable info.json is not asked again on every canvas or every run.
        assert InfoCache(fetcher, session_factory).get(server.url("/iiif/missing")) is None
        assert InfoCache(fetcher, session_factory).get(server.url("/iiif/missing")) is None
        assert server.count("/iiif/missing/info.json") == 1
