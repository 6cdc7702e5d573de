"""Database models (SQLAlchemy 2), one module per area; the schema is owned by Alembic
(migrations/). Importing this package registers every table on ``Base.metadata``."""
from .annotations import TextAnnotation
from .base import Base, utcnow
from .catalogue import Canvas, Collection, CollectionMembership, Manifest, Region, Source
from .errors import HarvestError
from .search import CanvasLabel, Category, CategoryPrototype, SearchDocument, TextVector
from .harvesting import ChangeStream, Crawl, CrawlItem, FetchedDocument, ImageServiceInfo
from .vectors import Embedding
from .work import EmbeddingClaim, ModelSpace, PerceptualHash  # noqa: F401  (embedding worker)

__all__ = ["Base", "utcnow", "Source", "Collection", "CollectionMembership", "Manifest", "Canvas",
           "Region", "Embedding", "HarvestError", "TextAnnotation", "FetchedDocument", "Crawl",
           "CrawlItem", "ChangeStream", "ImageServiceInfo",
           "SearchDocument", "TextVector", "Category", "CategoryPrototype", "CanvasLabel"]
