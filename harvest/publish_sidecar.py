"""The metadata table a small museum keeps beside its images (``SOURCES.tsv``, ``metadata.csv``...),
read for :mod:`harvest.publish`: one row per image file, and optionally one row without a file
that describes the whole set.

Columns are matched by name, case- and punctuation-insensitively, with the usual synonyms:

    file          file, filename, image              the image file the row describes (none: the set)
    title         title, label, name                 label of the manifest or canvas
    description   description, summary, caption      summary (a file row without a title: its label)
    creator       creator, author, artist, maker     metadata "Creator"
    date          date, year, dated, period          metadata "Date", and navDate when it parses
    institution   institution, holding institution,  metadata "Institution", and the attribution
                  repository, library, museum, owner
    licence       licence, license, rights,          ``rights`` when it is a Creative Commons or
                  copyright                          RightsStatements.org URI (or a short name such
                                                     as "CC BY 4.0"); always metadata "Licence"
    attribution   attribution, credit, credit line   ``requiredStatement`` (else institution + licence)

Any other column becomes a metadata entry under its own heading, so nothing in the table is lost.
Problems (an unknown encoding, a row for a file that is not there, a date that does not parse)
are warnings: the set is published with what could be read.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

SIDECAR_NAMES = ("sources.tsv", "sources.csv", "metadata.tsv", "metadata.csv")
MAX_SIDECAR_BYTES = 20_000_000
MAX_CELL_CHARS = 20_000

_SYNONYMS = {
    "file": ("file", "filename", "file_name", "image", "image_file", "image_filename", "path_in_folder"),
    "title": ("title", "label", "name", "object_title"),
    "description": ("description", "summary", "caption"),
    "creator": ("creator", "author", "artist", "maker", "scribe"),
    "date": ("date", "dated", "date_created", "year", "period"),
    "institution": ("institution", "holding_institution", "holder", "repository", "library", "museum",
                    "owner", "owning_institution"),
    "licence": ("licence", "license", "rights", "copyright", "reuse", "terms_of_use"),
    "attribution": ("attribution", "credit", "credit_line", "required_statement"),
}
_FIELD_OF = {name: key for key, names in _SYNONYMS.items() for name in names}
_METADATA_LABELS = {"creator": "Creator", "date": "Date", "institution": "Institution", "licence": "Licence"}


@dataclass
class Description:
    """What one row says, in IIIF terms (plain strings; the manifest writer makes language maps)."""

    title: Optional[str] = None
    summary: Optional[str] = None
    metadata: list[tuple[str, str]] = field(default_factory=list)  # (label, value), in column order
    required_statement: Optional[str] = None
    rights: Optional[str] = None  # a Creative Commons / RightsStatements.org URI
    nav_date: Optional[str] = None  # xsd:dateTime
    fields: dict[str, str] = field(default_factory=dict)  # the recognised columns' raw values


@dataclass
class Sidecar:
    path: Path
    collection: Optional[Description] = None  # the row without a file
    files: dict[str, Description] = field(default_factory=dict)  # by image file name
    warnings: list[str] = field(default_factory=list)


class SidecarError(ValueError):
    """The table cannot be read at all; the message says why."""


def find_sidecar(folder: Path) -> tuple[Optional[Path], list[str]]:
    """The metadata table in ``folder`` (first of :data:`SIDECAR_NAMES`, any case) and warnings
    about others that are ignored."""
    by_name = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_file()}
    found = [by_name[name] for name in SIDECAR_NAMES if name in by_name]
    warnings = [f"{extra.name}: ignored, {found[0].name} is the metadata table used" for extra in found[1:]]
    return (found[0] if found else None), warnings


def decode_table(data: bytes) -> tuple[str, Optional[str]]:
    """The text of a table as a spreadsheet saved it: UTF-8 (with or without BOM), UTF-16 with its
    BOM, else Windows-1252 (Excel's "CSV" on Windows). Returns (text, warning or None)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "replace"), None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace"), None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace"), "not UTF-8: read as Windows-1252 (save it as UTF-8 to be sure)"


def _delimiter(path: Path, text: str) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    first = next((line for line in text.splitlines() if line.strip()), "")
    # A "CSV" from a spreadsheet in a comma-decimal locale uses semicolons; some use tabs.
    return max((",", ";", "\t"), key=first.count) if any(c in first for c in ",;\t") else ","


def _header_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _heading(name: str) -> str:
    text = re.sub(r"[_\s]+", " ", name.strip())
    return text[:1].upper() + text[1:] if text else text


def read_sidecar(path: Path, image_names: list[str]) -> Sidecar:
    """Read the table at ``path`` for a folder holding ``image_names``. Raises SidecarError when
    it is not a table at all (too big, binary, no header)."""
    sidecar = Sidecar(path=path)
    warn = sidecar.warnings.append
    try:
        size = path.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            raise SidecarError(f"{path.name} is {size} bytes; at most {MAX_SIDECAR_BYTES} are read")
        data = path.read_bytes()
    except OSError as exc:
        raise SidecarError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    text, warning = decode_table(data)
    if warning:
        warn(f"{path.name}: {warning}")
    if "\x00" in text:
        raise SidecarError(f"{path.name} is not a text table (it holds NUL bytes)")
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(path, text)))
    except csv.Error as exc:
        raise SidecarError(f"{path.name} is not a readable table: {exc}") from None
    numbered = [(number, [cell.strip() for cell in row]) for number, row in enumerate(rows, start=1)
                if any(cell.strip() for cell in row)]
    if not numbered:
        warn(f"{path.name}: empty; no metadata read")
        return sidecar
    _, header = numbered[0]
    columns = _columns(header, path.name, warn)
    if "file" not in {c[0] for c in columns}:
        warn(f"{path.name}: no 'file' column, so every row describes the whole set "
             f"(columns: {', '.join(h for h in header if h) or 'none'})")
    resolve = _file_resolver(image_names)
    for number, row in numbered[1:]:
        where = f"{path.name} row {number}"
        if len(row) > len(columns):
            extra = [cell for cell in row[len(columns):] if cell]
            if extra:
                warn(f"{where}: {len(extra)} cell(s) beyond the header, kept as 'Column N' metadata")
            columns += [(None, f"Column {i + 1}") for i in range(len(columns), len(row))]
        values: dict[str, str] = {}
        extras: list[tuple[str, str]] = []
        for (key, heading), cell in zip(columns, row):
            if len(cell) > MAX_CELL_CHARS:
                warn(f"{where}: the '{heading}' cell is {len(cell)} characters, cut to {MAX_CELL_CHARS}")
                cell = cell[:MAX_CELL_CHARS]
            if not cell:
                continue
            if key is not None and key not in values:
                values[key] = cell
            else:
                extras.append((heading, cell))
        named = values.pop("file", None)
        description = describe(values, extras, where, warn)
        if named is None:
            if sidecar.collection is not None:
                warn(f"{where}: a second row without a file; ignored (only the first describes the set)")
                continue
            sidecar.collection = description
            continue
        image = resolve(named)
        if image is None:
            warn(f"{where}: no image file {named!r} in the folder; row not used")
        elif image in sidecar.files:
            warn(f"{where}: a second row for {image}; ignored (the first one is used)")
        else:
            sidecar.files[image] = description
    return sidecar


def _columns(header: list[str], name: str, warn) -> list[tuple[Optional[str], str]]:
    """(recognised field or None, heading) per column; a repeated field is kept as plain metadata."""
    columns: list[tuple[Optional[str], str]] = []
    seen: set[str] = set()
    for index, heading in enumerate(header):
        key = _FIELD_OF.get(_header_key(heading))
        if key in seen:
            warn(f"{name}: columns '{heading}' and another both mean {key}; the first is used, "
                 f"'{heading}' is kept as metadata")
            key = None
        if key:
            seen.add(key)
        columns.append((key, _heading(heading) or f"Column {index + 1}"))
    return columns


def _file_resolver(image_names: list[str]):
    exact = set(image_names)
    folded: dict[str, list[str]] = {}
    stems: dict[str, list[str]] = {}
    for name in image_names:
        folded.setdefault(name.casefold(), []).append(name)
        stems.setdefault(Path(name).stem.casefold(), []).append(name)

    def resolve(named: str) -> Optional[str]:
        base = re.split(r"[\\/]", named)[-1].strip()  # "images/p1.jpg", "C:\\scans\\p1.jpg"
        if base in exact:
            return base
        for table in (folded, stems):
            candidates = table.get(base.casefold(), [])
            if len(candidates) == 1:
                return candidates[0]
        return None

    return resolve


def describe(values: dict[str, str], extras: list[tuple[str, str]], where: str, warn) -> Description:
    """A row's recognised values (by field) and other cells (heading, value) as IIIF properties."""
    description = Description(title=values.get("title"), summary=values.get("description"), fields=dict(values))
    for key in ("creator", "date", "institution", "licence"):
        if key in values:
            description.metadata.append((_METADATA_LABELS[key], values[key]))
    description.metadata += extras
    licence = values.get("licence")
    if licence:
        description.rights = rights_uri(licence)
    if "date" in values:
        description.nav_date = nav_date(values["date"])
        if description.nav_date is None:
            warn(f"{where}: date {values['date']!r} is not a year or date this reads; no navDate "
                 "(it is kept as metadata)")
    description.required_statement = attribution(values.get("attribution"), values.get("institution"),
                                                 licence if licence and description.rights is None else None)
    return description


def attribution(credit: Optional[str], institution: Optional[str], licence_text: Optional[str]) -> Optional[str]:
    """The requiredStatement text: the credit line as given, else the holder and any licence that
    is not a rights URI (IIIF's ``rights`` takes only URIs; the text must still be shown)."""
    if credit:
        return credit
    parts = [part for part in (institution, f"Licence: {licence_text}" if licence_text else None) if part]
    return ". ".join(parts) or None


MAX_SUMMARY_VALUES = 10


def summarise(collection: Optional[Description], rows: list[Description]) -> Description:
    """The manifest's description: the row without a file when there is one; what it leaves out
    is gathered from the file rows, so that a set is found by its images' creators, dates,
    institutions and licences (distinct values, the first :data:`MAX_SUMMARY_VALUES`), carries the
    attribution and rights its images share, and is dated by its earliest image."""
    whole = Description(**{**vars(collection), "metadata": list(collection.metadata)}) if collection else Description()
    for key in ("creator", "date", "institution", "licence"):
        if key in whole.fields:
            continue
        values = list(dict.fromkeys(row.fields[key] for row in rows if key in row.fields))
        if values:
            text = "; ".join(values[:MAX_SUMMARY_VALUES])
            if len(values) > MAX_SUMMARY_VALUES:
                text += f"; and {len(values) - MAX_SUMMARY_VALUES} more (see each image)"
            whole.metadata.append((_METADATA_LABELS[key], text))
    if rows and whole.required_statement is None:
        statements = {row.required_statement for row in rows}
        whole.required_statement = statements.pop() if len(statements) == 1 else None
    if rows and whole.rights is None:
        rights = {row.rights for row in rows}
        whole.rights = rights.pop() if len(rights) == 1 else None
    if whole.nav_date is None:
        dates = sorted(row.nav_date for row in rows if row.nav_date)
        whole.nav_date = dates[0] if dates else None
    return whole


# -- rights ------------------------------------------------------------------------------------

_RIGHTS_URI = re.compile(r"^https?://(?:www\.)?(creativecommons\.org/(?:licenses|publicdomain)/[a-z0-9.+/-]+"
                         r"|rightsstatements\.org/(?:vocab|page)/[A-Za-z0-9.-]+/[0-9.]+)/?$", re.IGNORECASE)
_CC_NAME = re.compile(r"^cc[\s_-]*(by(?:[\s_-]*(?:nc|nd|sa))*)[\s_-]*v?(\d\.\d)?(?:[\s_-]*international)?$")
_CC_VERSIONS = ("1.0", "2.0", "2.5", "3.0", "4.0")


def rights_uri(text: str) -> Optional[str]:
    """The Presentation 3 ``rights`` URI for a licence cell: a Creative Commons or
    RightsStatements.org URI as given (normalised to the http:// form those vocabularies use),
    or one named the usual short way ("CC BY 4.0", "CC0", "Public Domain Mark"). None for
    anything else (free text stays in the metadata and required statement)."""
    cleaned = text.strip()
    match = _RIGHTS_URI.match(re.split(r"[?#]", cleaned)[0])
    if match:
        path = re.sub(r"/(?:deed\.[A-Za-z_-]+|deed|legalcode(?:\.[A-Za-z_-]+)?)$", "", match.group(1).rstrip("/"))
        if path.lower().startswith("rightsstatements.org/page/"):  # the human page of a statement
            path = "rightsstatements.org/vocab/" + path[len("rightsstatements.org/page/"):]
        return "http://" + path.rstrip("/") + "/"
    name = re.sub(r"\s+", " ", cleaned.lower().replace("licence", "").replace("license", "")).strip(" .")
    if name in ("cc0", "cc0 1.0", "cc-0", "cc zero", "cc0 1.0 universal", "public domain dedication"):
        return "http://creativecommons.org/publicdomain/zero/1.0/"
    if name in ("pdm", "pdm 1.0", "public domain mark", "public domain mark 1.0"):
        return "http://creativecommons.org/publicdomain/mark/1.0/"
    if name in ("no copyright - united states", "noc-us"):
        return "http://rightsstatements.org/vocab/NoC-US/1.0/"
    if name in ("in copyright", "inc"):
        return "http://rightsstatements.org/vocab/InC/1.0/"
    match = _CC_NAME.match(name)
    if match:
        parts = sorted(set(re.findall(r"by|nc|nd|sa", match.group(1))), key=("by", "nc", "nd", "sa").index)
        version = match.group(2) or "4.0"
        if version in _CC_VERSIONS and parts[0] == "by" and not ("nd" in parts and "sa" in parts):
            return f"http://creativecommons.org/licenses/{'-'.join(parts)}/{version}/"
    return None


# -- dates -------------------------------------------------------------------------------------

_APPROXIMATE = re.compile(r"^(?:c(?:a|irca)?\.?|about|around|approx(?:\.|imately)?|~)\s*", re.IGNORECASE)
_ISO = re.compile(r"^(-?\d{1,4})(?:-(\d{1,2})(?:-(\d{1,2})"
                  r"(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:?\d{2})?)?)?)?$")
_RANGE = re.compile(r"^(\d{1,4})\s*(?:-|–|—|to|/)\s*(\d{1,4})$")
_CENTURY = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)?(?:\s*(?:-|–|/)\s*\d{1,2}(?:st|nd|rd|th)?)?\s*"
                      r"(?:c\.?|cent\.?|century)$", re.IGNORECASE)


def nav_date(text: str) -> Optional[str]:
    """An xsd:dateTime (UTC) for a catalogue date, for IIIF ``navDate``: "1450", "c. 1450",
    "1450?", "1450-1470" (its start), "1450-03-12", "15th c." / "15th century" (1400), an ISO
    date-time; None for anything else (the text itself stays as metadata)."""
    value = _APPROXIMATE.sub("", text.strip()).rstrip("?").strip()
    value = re.sub(r"\s*(?:AD|CE)$", "", value, flags=re.IGNORECASE)
    match = _RANGE.match(value)
    if match and not (len(match.group(2)) <= 2 and 1 <= int(match.group(2)) <= 12 and "-" in value):
        value = match.group(1)  # a span ("1450-1470", "1450-70"): navigation starts at its start
    match = _CENTURY.match(value)
    if match:
        century = int(match.group(1))
        return _format(max(1, (century - 1) * 100), 1, 1, 0, 0, 0) if 1 <= century <= 21 else None
    match = _ISO.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    if year.startswith("-"):
        return None  # BCE dates: xsd:dateTime years before 1 are read differently by different tools
    try:
        from datetime import datetime

        moment = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                          int(second or 0))
    except ValueError:
        return None
    if zone and zone != "Z":
        from datetime import timedelta, timezone

        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment = moment.replace(tzinfo=timezone(sign * offset)).astimezone(timezone.utc).replace(tzinfo=None)
    return _format(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _format(year: int, month: int, day: int, hour: int, minute: int, second: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
