"""A manifest's descriptive properties: metadata pairs, required statement (or v2
attribution), rights and providers, as language maps."""
from __future__ import annotations

from typing import Any, Optional

from manuscripts_search.iiif.jsonld import as_list, node_id
from manuscripts_search.iiif.language import to_language_map
from manuscripts_search.iiif.model import LanguageMap, MetadataEntry
from manuscripts_search.iiif.parsing import ParseWarnings

def metadata_entries(value: Any, warn: ParseWarnings) -> list[MetadataEntry]:
    entries = []
    for index, item in enumerate(as_list(value)):
        if not isinstance(item, dict):
            warn(f"metadata[{index}] is a {type(item).__name__}, not a label/value pair; ignored")
            continue
        label = to_language_map(item.get("label"), warn, f"metadata[{index}].label")
        text = to_language_map(item.get("value"), warn, f"metadata[{index}].value")
        if label or text:
            entries.append(MetadataEntry(label=label, value=text))
    return entries


def required_statement(doc: dict, warn: ParseWarnings) -> Optional[MetadataEntry]:
    statement = doc.get("requiredStatement")
    if isinstance(statement, dict):
        value = to_language_map(statement.get("value"), warn, "requiredStatement.value")
        if value:
            label = to_language_map(statement.get("label"), warn, "requiredStatement.label")
            return MetadataEntry(label=label, value=value)
    elif statement is not None:
        warn("requiredStatement is not a label/value object; ignored")
    attribution = to_language_map(doc.get("attribution"), warn, "attribution")
    if attribution:
        return MetadataEntry(label={"en": ["Attribution"]}, value=attribution)
    return None


def rights_statement(doc: dict) -> Optional[str]:
    # Kept as published, not resolved: "license" is sometimes free text such as "Public domain".
    for key in ("rights", "license"):
        for item in as_list(doc.get(key)):
            text = item.strip() if isinstance(item, str) else node_id(item)
            if text:
                return text
    return None


def providers(doc: dict, warn: ParseWarnings) -> list[LanguageMap]:
    providers = []
    for index, provider in enumerate(as_list(doc.get("provider"))):
        if not isinstance(provider, dict):
            warn(f"provider[{index}] is not an object; ignored")
            continue
        label = to_language_map(provider.get("label"), warn, f"provider[{index}].label")
        if label:
            providers.append(label)
    return providers
