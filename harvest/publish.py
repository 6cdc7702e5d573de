"""Local folder → IIIF: a level-0 Image API 3.0 service (static files) per image, and a
Presentation 3 manifest listing them, for a small museum without an image server.

Everything is written under ``<data dir>/published/<slug>/`` and served by the web app
(:mod:`web.published`) at ``<base url>/published/<slug>/...``:

    manifest.json
    images/<identifier>/info.json
    images/<identifier>/full/max/0/default.jpg            the whole image
    images/<identifier>/full/<w>,<h>/0/default.jpg         listed sizes
    images/<identifier>/<x>,<y>,<w>,<h>/<w>,<h>/0/default.jpg   tiles, every scale factor

Paths are the Image API 3.0 canonical forms, so any IIIF client (and our own planner) asks for
exactly these files. One listed size (long edge 256-400 px, added when the scale factors give
none) is each canvas's ``thumbnail``. A metadata table beside the images (``SOURCES.tsv``...,
:mod:`harvest.publish_sidecar`) gives the manifest and canvases their labels, metadata,
required statement, rights and navDate.

The **slug** (default: the folder's name) identifies a publication: publishing again under the
same slug updates it in place - only images whose source file changed are regenerated, a new base
URL rewrites the ids (info.json files and the manifest), trees of removed images go, and the
result says which manifest URL it replaced so that the catalogue row can follow
(:func:`manuscripts_search.store.catalogue.move_manifest`). Another folder is refused a slug that
is taken unless asked to replace it.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from manuscripts_search.image_decoding import open_bounded

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
CONTEXT_IMAGE_3 = "http://iiif.io/api/image/3/context.json"
MAX_SOURCE_PIXELS = 400_000_000
THUMBNAIL_EDGE = (256, 400)  # long edge of the size listed as a canvas's thumbnail
STATE_VERSION = 2  # publish-state.json: 2 added the source folder, the manifest URL, thumbnails
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


class PublishError(ValueError):
    """The folder cannot be published; the message says why."""


@dataclass
class PublishedImage:
    source: str  # file name in the folder
    identifier: str
    width: int
    height: int
    regenerated: bool


@dataclass
class PublishResult:
    slug: str
    folder: Path  # where the static tree is
    manifest_path: Path
    manifest_url: str
    images: list[PublishedImage] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    previous_manifest_url: Optional[str] = None  # the URL this publication had before, when it changed
    # Canvas ids of a publication made before canvas ids named the image (/canvas/<n>): old -> new.
    renamed_canvases: dict[str, str] = field(default_factory=dict)
    sidecar: Optional[str] = None  # the metadata table read, by file name
    warnings: list[str] = field(default_factory=list)  # the metadata table's problems

    @property
    def root_url(self) -> str:
        return self.manifest_url.removesuffix("/manifest.json")

    @property
    def previous_root_url(self) -> Optional[str]:
        return self.previous_manifest_url.removesuffix("/manifest.json") if self.previous_manifest_url else None

    def as_dict(self) -> dict:
        return {"slug": self.slug, "manifest": self.manifest_url, "folder": str(self.folder),
                "images": len(self.images), "regenerated": sum(i.regenerated for i in self.images),
                "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
                "replaced_manifest": self.previous_manifest_url, "metadata_table": self.sidecar,
                "warnings": list(self.warnings)}


def slugify(text: str) -> str:
    slug = _SLUG.sub("-", text).strip("-.")
    return slug[:80] or "images"


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def scale_factors(width: int, height: int, tile: int) -> list[int]:
    """1, 2, 4 ... up to the first factor at which the whole image fits in one tile."""
    factors = [1]
    while math.ceil(width / factors[-1]) > tile or math.ceil(height / factors[-1]) > tile:
        factors.append(factors[-1] * 2)
    return factors


def thumbnail_size(width: int, height: int, tile: int) -> tuple[int, int]:
    """The size shown as the thumbnail: the listed size (one per scale factor) whose long edge is
    nearest :data:`THUMBNAIL_EDGE`, or a size with a 400 px long edge when none is in it."""
    low, high = THUMBNAIL_EDGE
    sizes = [(math.ceil(width / s), math.ceil(height / s)) for s in scale_factors(width, height, tile)]
    best = min(sizes, key=lambda size: max(low - max(size), max(size) - high, 0))
    if low <= max(best) <= high or max(width, height) <= high:
        return best
    scale = high / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def info_json(service_id: str, width: int, height: int, tile: int) -> dict:
    factors = scale_factors(width, height, tile)
    sizes = sorted({(math.ceil(width / s), math.ceil(height / s)) for s in factors}
                   | {thumbnail_size(width, height, tile)})
    return {"@context": CONTEXT_IMAGE_3, "id": service_id, "type": "ImageService3",
            "protocol": "http://iiif.io/api/image", "profile": "level0",
            "width": width, "height": height,
            "sizes": [{"width": w, "height": h} for w, h in sizes],
            "tiles": [{"width": tile, "height": tile, "scaleFactors": factors}]}


def _open_source(path: Path):
    """The image as RGB, upright (EXIF orientation applied), first frame of a multi-page TIFF."""
    from PIL import Image, ImageOps

    with open_bounded(path, MAX_SOURCE_PIXELS) as image:
        image.seek(0)
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.getchannel("A"))
            return background
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            image = image.point(lambda v: v / 256).convert("L")
        return image.convert("RGB")


def _save(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)


def size_segment(size: tuple[int, int], width: int, height: int) -> str:
    """The canonical size segment of a request for ``size`` of a ``width`` x ``height`` image."""
    return "max" if size == (width, height) else f"{size[0]},{size[1]}"


def write_static_image(image, folder: Path, service_id: str, tile: int) -> dict:
    """Write the level-0 tree of ``image`` into ``folder``; returns its info.json."""
    from PIL import Image

    width, height = image.size
    info = info_json(service_id, width, height, tile)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _save(image, folder / "full" / "max" / "0" / "default.jpg")
    thumbnail = thumbnail_size(width, height, tile)
    thumbnail_path = folder / "full" / size_segment(thumbnail, width, height) / "0" / "default.jpg"
    if not thumbnail_path.exists():
        _save(image.resize(thumbnail, Image.Resampling.LANCZOS), thumbnail_path)
    for factor in info["tiles"][0]["scaleFactors"]:
        reduced_size = (math.ceil(width / factor), math.ceil(height / factor))
        reduced = image if factor == 1 else image.resize(reduced_size, Image.Resampling.LANCZOS)
        if factor > 1 and reduced_size != thumbnail:
            _save(reduced, folder / "full" / f"{reduced_size[0]},{reduced_size[1]}" / "0" / "default.jpg")
        span = tile * factor
        for y in range(0, height, span):
            for x in range(0, width, span):
                w, h = min(span, width - x), min(span, height - y)
                sw, sh = math.ceil(w / factor), math.ceil(h / factor)
                region = "full" if (x, y, w, h) == (0, 0, width, height) else f"{x},{y},{w},{h}"
                size = "max" if (sw, sh) == (width, height) else f"{sw},{sh}"
                if region == "full" and size == "max":
                    continue  # written above
                left, top = x // factor, y // factor
                _save(reduced.crop((left, top, left + sw, top + sh)),
                      folder / region / size / "0" / "default.jpg")
    (folder / "info.json").write_text(json.dumps(info), encoding="utf-8")
    return info


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_state(path: Path) -> dict:
    """publish-state.json as version 2 ({"source", "manifest_url", "files": {name: ...}}); the
    first version held only the files, its manifest URL is read back from their service ids."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"files": {}}
    if not isinstance(state, dict):
        return {"files": {}}
    if state.get("version") != STATE_VERSION:
        files = {name: entry for name, entry in state.items() if isinstance(entry, dict) and "service_id" in entry}
        root = next((e["service_id"].rsplit("/images/", 1)[0] for e in files.values()
                     if "/images/" in str(e["service_id"])), None)
        # Its canvases were numbered in the order of its files (the order they were written in).
        state = {"files": files, "manifest_url": f"{root}/manifest.json" if root else None,
                 "numbered_canvases": {f"{root}/canvas/{n}": name for n, name in enumerate(files, start=1)}
                 if root else {}}
    state.setdefault("files", {})
    return state


def publish_folder(source: Path, published_root: Path, base_url: str, slug: Optional[str] = None,
                   label: Optional[str] = None, tile: int = 512, replace: bool = False,
                   metadata_table: Optional[Path] = None) -> PublishResult:
    """Publish every JPEG/PNG/TIFF in ``source`` (sorted naturally) as one manifest, described by
    the metadata table ``metadata_table`` (default: the one in ``source``, if any).

    Raises PublishError when ``source`` is not a folder, holds no usable image, its slug is held
    by another folder (unless ``replace``) or the metadata table cannot be read at all. Files
    that cannot be read are skipped and listed in ``skipped``; the table's problems are warnings.
    """
    from .publish_sidecar import SidecarError, find_sidecar, read_sidecar

    source = Path(source).expanduser()
    if not source.is_dir():
        raise PublishError(f"{source} is not a folder")
    base_url = base_url.rstrip("/")
    if not re.match(r"^https?://[^/\s]+", base_url):
        raise PublishError(f"base URL must start with http:// or https://, got {base_url!r}")
    slug = slugify(slug or source.resolve().name)
    out = Path(published_root) / slug
    root_url = f"{base_url}/published/{slug}"
    state_path = out / "publish-state.json"
    state = _read_state(state_path)
    held_by = state.get("source")
    if held_by and held_by != str(source.resolve()) and not replace:
        raise PublishError(f"the name {slug!r} is taken by {held_by} (published before); give another name "
                           f"(msearch publish --slug NAME) to publish {source.resolve()} beside it, or "
                           "msearch publish --replace to publish it in its place")
    out.mkdir(parents=True, exist_ok=True)
    files = sorted((p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: _natural_key(p.name))
    result = PublishResult(slug=slug, folder=out, manifest_path=out / "manifest.json",
                           manifest_url=f"{root_url}/manifest.json")
    if state.get("manifest_url") and state["manifest_url"] != result.manifest_url:
        result.previous_manifest_url = state["manifest_url"]
    if metadata_table is None:
        metadata_table, extra_tables = find_sidecar(source)
        result.warnings += extra_tables
    sidecar = None
    if metadata_table is not None:
        try:
            sidecar = read_sidecar(Path(metadata_table), [p.name for p in files])
        except SidecarError as exc:
            raise PublishError(f"metadata table: {exc}") from None
        result.sidecar = Path(metadata_table).name
        result.warnings += sidecar.warnings
    used: set[str] = set()
    new_state = {}
    for path in files:
        identifier = slugify(path.stem)
        while identifier in used:
            identifier += "_"
        used.add(identifier)
        service_id = f"{root_url}/images/{identifier}"
        digest = _file_digest(path)
        previous = state["files"].get(path.name)
        folder = out / "images" / identifier
        unchanged = (previous and previous.get("sha256") == digest and previous.get("identifier") == identifier
                     and previous.get("tile") == tile and previous.get("layout") == STATE_VERSION
                     and (folder / "info.json").exists())
        if unchanged:
            width, height = previous["width"], previous["height"]
            if previous.get("service_id") != service_id:  # a new base URL: the pixels stand, the ids move
                (folder / "info.json").write_text(json.dumps(info_json(service_id, width, height, tile)),
                                                  encoding="utf-8")
        else:
            try:
                image = _open_source(path)
            except (OSError, ValueError, SyntaxError) as exc:  # Pillow raises all three on bad files
                result.skipped.append((path.name, f"cannot read image: {exc}"))
                continue
            width, height = image.size
            write_static_image(image, folder, service_id, tile)
        new_state[path.name] = {"sha256": digest, "identifier": identifier, "service_id": service_id,
                                "width": width, "height": height, "tile": tile, "layout": STATE_VERSION}
        result.images.append(PublishedImage(path.name, identifier, width, height, not unchanged))
    if not result.images:
        raise PublishError(f"no readable JPEG, PNG or TIFF images in {source}"
                           + (f" ({len(result.skipped)} unreadable)" if result.skipped else ""))
    identifiers = {image.source: image.identifier for image in result.images}
    result.renamed_canvases = {old: f"{root_url}/canvas/{identifiers[name]}"
                               for old, name in state.get("numbered_canvases", {}).items() if name in identifiers}
    # Trees of images no longer in the folder go, so the manifest and the files agree.
    wanted = {image.identifier for image in result.images}
    for stale in (out / "images").iterdir():
        if stale.is_dir() and stale.name not in wanted:
            shutil.rmtree(stale)
    if sidecar is not None:
        for name in sidecar.files:
            if name not in {image.source for image in result.images}:
                result.warnings.append(f"{result.sidecar}: {name} is described but could not be read; "
                                       "its row is not used")

    manifest = _manifest(result, root_url, label or None, source.resolve().name, sidecar, tile)
    result.manifest_path.write_text(manifest.json(indent=2), encoding="utf-8")
    state_path.write_text(json.dumps({"version": STATE_VERSION, "source": str(source.resolve()),
                                      "manifest_url": result.manifest_url, "files": new_state}, indent=1),
                          encoding="utf-8")
    return result


def _manifest(result: PublishResult, root_url: str, label: Optional[str], folder_name: str, sidecar, tile: int):
    from iiif_prezi3 import Manifest, ServiceV3

    from .publish_sidecar import summarise

    described = sidecar.files if sidecar is not None else {}
    whole = summarise(sidecar.collection if sidecar else None,
                      [described[i.source] for i in result.images if i.source in described])
    manifest = Manifest(id=result.manifest_url, label=_text(label or whole.title or folder_name),
                        **_properties(whole))
    for image in result.images:
        service_id = f"{root_url}/images/{image.identifier}"
        service = [ServiceV3(id=service_id, type="ImageService3", profile="level0")]
        canvas_id = f"{root_url}/canvas/{image.identifier}"
        row = described.get(image.source)
        properties = _properties(row, summary_is_label=True)
        if row is not None:  # the file name stays visible once the table names the image
            properties["metadata"] = ([{"label": _text("File"), "value": _text(image.source)}]
                                      + properties.get("metadata", []))
        title = (row.title or row.summary) if row is not None else None
        canvas = manifest.make_canvas(id=canvas_id, width=image.width, height=image.height,
                                      label=_text(title or image.source), **properties)
        canvas.add_image(image_url=f"{service_id}/full/max/0/default.jpg",
                         anno_page_id=f"{canvas_id}/page", anno_id=f"{canvas_id}/image",
                         format="image/jpeg", width=image.width, height=image.height, service=service)
        thumb_w, thumb_h = thumbnail_size(image.width, image.height, tile)
        canvas.thumbnail = [{"id": f"{service_id}/full/{size_segment((thumb_w, thumb_h), image.width, image.height)}"
                                   "/0/default.jpg",
                             "type": "Image", "format": "image/jpeg", "width": thumb_w, "height": thumb_h,
                             "service": [{"id": service_id, "type": "ImageService3", "profile": "level0"}]}]
    manifest.thumbnail = manifest.items[0].thumbnail
    return manifest


def _text(value: str) -> dict:
    return {"none": [value]}


def _properties(description, summary_is_label: bool = False) -> dict:
    """A sidecar Description as Presentation 3 properties (only those it has); a canvas without a
    title is labelled with its description (``summary_is_label``), not given it twice."""
    properties: dict = {}
    if description is None:
        return properties
    if description.summary and (description.title or not summary_is_label):
        properties["summary"] = _text(description.summary)
    if description.metadata:
        properties["metadata"] = [{"label": _text(k), "value": _text(v)} for k, v in description.metadata]
    if description.required_statement:
        properties["requiredStatement"] = {"label": _text("Attribution"),
                                           "value": _text(description.required_statement)}
    if description.rights:
        properties["rights"] = description.rights
    if description.nav_date:
        properties["navDate"] = description.nav_date
    return properties
