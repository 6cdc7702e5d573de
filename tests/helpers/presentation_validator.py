"""The checks of the IIIF Presentation validator (github.com/IIIF/presentation-validator), run
offline on a document we serve, in the version it declares.

The validator itself is not on PyPI; what it runs is:

- Presentation 2: ``iiif_prezi``'s ``ManifestReader`` (PyPI ``iiif-prezi``, the package the
  validator depends on) reads the document and serialises it again, raising on the first
  violation (e.g. "Services must have an http[s] URI"), then JSON-LD expansion of the document;
- Presentation 3: its JSON Schema, from which ``iiif-prezi3``'s models are generated (we read
  the document back through them);
- both: the document's id must be the URL it was fetched from.

The validator expands JSON-LD with contexts fetched from iiif.io. Offline, Presentation 2's
context comes from iiif-prezi's own copy, and extension contexts (search, image) count as empty:
the expansion still checks the document's JSON-LD structure, not the extension's terms.
"""
from __future__ import annotations

import json
import os


def _local_context_loader():
    import iiif_prezi

    contexts = os.path.join(os.path.dirname(iiif_prezi.__file__), "contexts")

    def load(url, options=None):
        if url.replace("https://", "http://").rstrip("/") == "http://iiif.io/api/presentation/2/context.json":
            with open(os.path.join(contexts, "context_21.json"), encoding="utf-8") as handle:
                document = json.load(handle)
        else:
            document = {"@context": {}}
        return {"contextUrl": None, "documentUrl": url, "document": document}

    return load


def assert_valid_presentation(document: dict, url: str, version: int) -> None:
    """AssertionError naming the validator's complaint unless ``document`` (a Manifest or
    Collection served at ``url``) passes the validator's checks for Presentation ``version``."""
    if version == 2:
        from iiif_prezi.loader import ManifestReader
        from pyld import jsonld

        jsonld.set_document_loader(_local_context_loader())  # iiif_prezi's own loader predates pyld 3
        reader = ManifestReader(json.dumps(document), version="2.1")
        try:
            resource = reader.read()
            resource.toJSON()
        except Exception as error:  # the validator reports any exception as the failure
            raise AssertionError(f"not valid Presentation 2: {type(error).__name__}: {error}") from None
        assert resource.id == url, f"the @id ({resource.id}) is not the URL it is published at ({url})"
        return
    from iiif_prezi3 import Collection, Manifest
    from pydantic import ValidationError

    model = Collection if document.get("type") == "Collection" else Manifest
    try:
        model(**document)
    except ValidationError as error:
        raise AssertionError(f"not valid Presentation 3: {error}") from None
    assert document.get("id") == url, f"the id ({document.get('id')}) is not the URL it is published at ({url})"
