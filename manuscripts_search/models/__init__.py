"""Database models (SQLAlchemy 2), one module per area; the schema is owned by Alembic
(migrations/). Importing this package registers every table on ``Base.metadata``."""
from .base import Base, utcnow
from .catalogue import Canvas, Collection, CollectionMembership, Manifest, Region, Source
from .errors import HarvestError
from .vectors import Embedding

__all__ = ["Base", "utcnow", "Source", "Collection", "CollectionMembership", "Manifest", "Canvas",
           "Region", "Embedding", "HarvestError"]
