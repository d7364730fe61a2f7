"""The registry's SQLAlchemy models at their first path, which migration scripts import
(the models live in embstore.backends.models)."""

from embstore.backends.models import STATUSES, Alias, AliasEvent, Base, EmbeddingSet, Version, utcnow

__all__ = ["STATUSES", "Alias", "AliasEvent", "Base", "EmbeddingSet", "Version", "utcnow"]
