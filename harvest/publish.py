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
exactly these files. A re-run only regenerates images whose source file changed.
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

    def as_dict(self) -> dict:
        return {"slug": self.slug, "manifest": self.manifest_url, "folder": str(self.folder),
                "images": len(self.images), "regenerated": sum(i.regenerated for i in self.images),
                "skipped": [{"file": f, "reason": r} for f, r in self.skipped]}


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


def info_json(service_id: str, width: int, height: int, tile: int) -> dict:
    factors = scale_factors(width, height, tile)
    sizes = sorted({(math.ceil(width / s), math.ceil(height / s)) for s in factors})
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


def write_static_image(image, folder: Path, service_id: str, tile: int) -> dict:
    """Write the level-0 tree of ``image`` into ``folder``; returns its info.json."""
    from PIL import Image

    width, height = image.size
    info = info_json(service_id, width, height, tile)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _save(image, folder / "full" / "max" / "0" / "default.jpg")
    for factor in info["tiles"][0]["scaleFactors"]:
        reduced_size = (math.ceil(width / factor), math.ceil(height / factor))
        reduced = image if factor == 1 else image.resize(reduced_size, Image.Resampling.LANCZOS)
        if factor > 1:
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


def publish_folder(source: Path, published_root: Path, base_url: str, slug: Optional[str] = None,
                   label: Optional[str] = None, tile: int = 512) -> PublishResult:
    """Publish every JPEG/PNG/TIFF in ``source`` (sorted naturally) as one manifest.

    Raises PublishError when ``source`` is not a folder or holds no usable image. Files that
    cannot be read are skipped and listed in ``skipped``.
    """
    from iiif_prezi3 import Manifest, ServiceV3

    source = Path(source).expanduser()
    if not source.is_dir():
        raise PublishError(f"{source} is not a folder")
    base_url = base_url.rstrip("/")
    if not re.match(r"^https?://[^/\s]+", base_url):
        raise PublishError(f"base URL must start with http:// or https://, got {base_url!r}")
    slug = slugify(slug or source.resolve().name)
    out = Path(published_root) / slug
    out.mkdir(parents=True, exist_ok=True)
    root_url = f"{base_url}/published/{slug}"
    state_path = out / "publish-state.json"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    files = sorted((p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: _natural_key(p.name))
    result = PublishResult(slug=slug, folder=out, manifest_path=out / "manifest.json",
                           manifest_url=f"{root_url}/manifest.json")
    used: set[str] = set()
    new_state = {}
    for path in files:
        identifier = slugify(path.stem)
        while identifier in used:
            identifier += "_"
        used.add(identifier)
        service_id = f"{root_url}/images/{identifier}"
        digest = _file_digest(path)
        previous = state.get(path.name)
        folder = out / "images" / identifier
        unchanged = (previous and previous.get("sha256") == digest and previous.get("service_id") == service_id
                     and previous.get("tile") == tile and (folder / "info.json").exists())
        if unchanged:
            width, height = previous["width"], previous["height"]
        else:
            try:
                image = _open_source(path)
            except (OSError, ValueError, SyntaxError) as exc:  # Pillow raises all three on bad files
                result.skipped.append((path.name, f"cannot read image: {exc}"))
                continue
            width, height = image.size
            write_static_image(image, folder, service_id, tile)
        new_state[path.name] = {"sha256": digest, "identifier": identifier, "service_id": service_id,
                                "width": width, "height": height, "tile": tile}
        result.images.append(PublishedImage(path.name, identifier, width, height, not unchanged))
    if not result.images:
        raise PublishError(f"no readable JPEG, PNG or TIFF images in {source}"
                           + (f" ({len(result.skipped)} unreadable)" if result.skipped else ""))
    # Trees of images no longer in the folder go, so the manifest and the files agree.
    wanted = {image.identifier for image in result.images}
    for stale in (out / "images").iterdir():
        if stale.is_dir() and stale.name not in wanted:
            shutil.rmtree(stale)

    manifest = Manifest(id=result.manifest_url, label={"none": [label or source.resolve().name]})
    for index, image in enumerate(result.images, start=1):
        service_id = f"{root_url}/images/{image.identifier}"
        canvas = manifest.make_canvas(id=f"{root_url}/canvas/{index}", width=image.width,
                                      height=image.height, label={"none": [image.source]})
        canvas.add_image(image_url=f"{service_id}/full/max/0/default.jpg",
                         anno_page_id=f"{root_url}/canvas/{index}/page", anno_id=f"{root_url}/canvas/{index}/image",
                         format="image/jpeg", width=image.width, height=image.height,
                         service=[ServiceV3(id=service_id, type="ImageService3", profile="level0")])
    result.manifest_path.write_text(manifest.json(indent=2), encoding="utf-8")
    state_path.write_text(json.dumps(new_state, indent=1), encoding="utf-8")
    return result
