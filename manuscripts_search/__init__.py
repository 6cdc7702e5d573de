"""manuscripts-search: search digitised cultural heritage (IIIF) by what it shows."""

__version__ = "0.1.0"
