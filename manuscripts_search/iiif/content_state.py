"""IIIF Content State 1.0: share "this canvas, this region, of this manifest" as one link.

A content state is a JSON annotation (motivation ``contentState``) or just its ``target`` (we
write the annotation, and read both); in a URL's ``iiif-content`` parameter it is
*content-state-encoded*: encodeURIComponent, then base64url without padding (spec section 6).
A plain http(s) URI is passed as it is, never encoded.

Pure functions: :func:`encode_content_state` / :func:`decode_content_state` for the encoding,
:func:`canvas_content_state` to build one, :func:`parse_content_state` to read one back into a
:class:`ContentStateTarget`. Bad input raises :class:`ContentStateError` naming what is wrong.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import quote, unquote

PRESENTATION_3_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
MAX_ENCODED_CHARS = 20_000  # a content state names a few resources; more is not one
# encodeURIComponent leaves these unescaped besides letters and digits; quote() would escape them.
_URI_COMPONENT_SAFE = "-_.!~*'()"
_XYWH_FRAGMENT = re.compile(r"#xywh=(?:pixel:)?(\d+),(\d+),(\d+),(\d+)$")


class ContentStateError(ValueError):
    """A content state that cannot be read; the message says why."""


@dataclass(frozen=True)
class ContentStateTarget:
    """What a content state points at: a canvas (with an optional region) in a manifest, or a
    whole manifest or collection (``canvas_id`` None)."""

    resource_type: str  # Canvas | Manifest | Collection | Range ...
    resource_id: str  # without the #xywh fragment
    manifest_id: Optional[str]  # the manifest a canvas is partOf (the resource itself for a Manifest)
    xywh: Optional[tuple[int, int, int, int]] = None

    @property
    def canvas_id(self) -> Optional[str]:
        return self.resource_id if self.resource_type == "Canvas" else None


def encode_content_state(plain: str) -> str:
    """Content-state-encode ``plain`` (a JSON string): encodeURIComponent, base64url, no padding."""
    uri_encoded = quote(plain, safe=_URI_COMPONENT_SAFE)
    return base64.urlsafe_b64encode(uri_encoded.encode("utf-8")).decode("ascii").rstrip("=")


def decode_content_state(encoded: str) -> str:
    """The JSON string inside a content-state-encoded value.

    Raises ContentStateError when the value is not base64url of a percent-encoded UTF-8 string.
    """
    value = (encoded or "").strip()
    if not value:
        raise ContentStateError("the content state is empty")
    if len(value) > MAX_ENCODED_CHARS:
        raise ContentStateError(f"the content state is longer than {MAX_ENCODED_CHARS} characters")
    if len(value) % 4 == 1 or not re.fullmatch(r"[A-Za-z0-9_-]+=*", value):
        raise ContentStateError("the content state is not base64url-encoded")
    padded = value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4)
    try:
        uri_encoded = base64.urlsafe_b64decode(padded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ContentStateError("the content state is not base64url-encoded UTF-8") from None
    try:
        return unquote(uri_encoded, errors="strict")
    except UnicodeDecodeError:
        raise ContentStateError("the content state holds a bad percent-encoded sequence") from None


def canvas_content_state(canvas_id: str, manifest_id: str, xywh: Optional[str] = None,
                         full_annotation: bool = True) -> dict:
    """The content state of a canvas (or a region of it, ``xywh`` "x,y,w,h") in a manifest.

    The full ``contentState`` annotation by default: the spec allows the compact form (just the
    target) in links, but Clover opens only the annotation, and only one with an ``id`` (it stays
    on "Loading" otherwise); every client that reads one form reads this one. The id is a
    ``urn:uuid`` named by the target, so the same state always gets the same id. The compact form
    with ``full_annotation=False``; :func:`parse_content_state` reads both.
    """
    target_id = f"{canvas_id}#xywh={xywh}" if xywh else canvas_id
    target = {"id": target_id, "type": "Canvas", "partOf": [{"id": manifest_id, "type": "Manifest"}]}
    if not full_annotation:
        return target
    annotation_id = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(target, sort_keys=True))}"
    return {"@context": PRESENTATION_3_CONTEXT, "id": annotation_id, "type": "Annotation",
            "motivation": ["contentState"], "target": target}


def content_state_parameter(state: dict) -> str:
    """The value for ``iiif-content``: the condensed JSON, content-state-encoded."""
    return encode_content_state(json.dumps(state, separators=(",", ":"), ensure_ascii=False))


def parse_content_state(value: str) -> ContentStateTarget:
    """Read an ``iiif-content`` value: an http(s) URI of a resource, or an encoded content state
    (a full annotation or just its target; the first target when there are several).

    Raises ContentStateError for anything else (bad encoding, not JSON, no usable target).
    """
    value = (value or "").strip()
    if value.startswith(("http://", "https://")):
        # A bare URI: the client must dereference it to learn what it is; we only know our own.
        resource_id, xywh = _split_fragment(value)
        return ContentStateTarget("Unknown", resource_id, None, xywh)
    text = decode_content_state(value)
    try:
        state = json.loads(text)
    except ValueError:
        raise ContentStateError("the content state is not JSON") from None
    return _target_of(state)


def _target_of(state: Any) -> ContentStateTarget:
    if isinstance(state, str) and state.startswith(("http://", "https://")):
        resource_id, xywh = _split_fragment(state)
        return ContentStateTarget("Unknown", resource_id, None, xywh)
    if not isinstance(state, dict):
        raise ContentStateError("the content state must be a JSON object")
    if _type_of(state) == "Annotation":
        target = state.get("target")
        if isinstance(target, list):
            if not target:
                raise ContentStateError("the content state annotation has an empty target")
            target = target[0]
        if target is None:
            raise ContentStateError("the content state annotation has no target")
        return _target_of(target)
    resource_type = _type_of(state)
    raw_id = state.get("id") or state.get("@id")
    selector_xywh = None
    if resource_type == "SpecificResource":
        source = state.get("source")
        source_id = source.get("id") or source.get("@id") if isinstance(source, dict) else source
        resource_type = _type_of(source) if isinstance(source, dict) else "Canvas"
        raw_id = source_id
        selector_xywh = _selector_xywh(state.get("selector"))
        state = {**(source if isinstance(source, dict) else {}), "partOf": state.get("partOf")
                 or (source.get("partOf") if isinstance(source, dict) else None)}
    if not isinstance(raw_id, str) or not raw_id.startswith(("http://", "https://")):
        raise ContentStateError("the content state's target has no http(s) id")
    resource_id, xywh = _split_fragment(raw_id)
    xywh = xywh or selector_xywh
    manifest_id = resource_id if resource_type == "Manifest" else _part_of_manifest(state.get("partOf"))
    if resource_type == "Canvas" and manifest_id is None:
        raise ContentStateError("a content state for a canvas must name its manifest (partOf)")
    return ContentStateTarget(resource_type or "Unknown", resource_id, manifest_id, xywh)


def _type_of(obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    value = obj.get("type") or obj.get("@type") or ""
    value = value[0] if isinstance(value, list) and value else value
    return value.split(":")[-1] if isinstance(value, str) else ""  # sc:Canvas -> Canvas


def _part_of_manifest(part_of: Any) -> Optional[str]:
    for item in part_of if isinstance(part_of, list) else [part_of]:
        if isinstance(item, dict) and _type_of(item) == "Manifest":
            found = item.get("id") or item.get("@id")
            if isinstance(found, str):
                return found
        elif isinstance(item, str):
            return item
    return None


def _selector_xywh(selector: Any) -> Optional[tuple[int, int, int, int]]:
    for item in selector if isinstance(selector, list) else [selector]:
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            _, xywh = _split_fragment("x#" + item["value"].lstrip("#"))
            if xywh:
                return xywh
    return None


def _split_fragment(uri: str) -> tuple[str, Optional[tuple[int, int, int, int]]]:
    match = _XYWH_FRAGMENT.search(uri)
    if match:
        box = tuple(int(part) for part in match.groups())
        if box[2] > 0 and box[3] > 0:
            return uri[:match.start()], box  # type: ignore[return-value]
        return uri[:match.start()], None
    return uri.split("#", 1)[0], None
