"""The backend contract: where a store keeps its version registry, Feast's registry and online store.

A backend is chosen by the ``backend`` setting, by name (``embedded``, ``team``) or
by class path (``package.module:Class``), as Feast chooses its stores. It owns
what differs between deployments: the registry URL, the ``registry`` and
``online_store`` sections of the Feast repo's feature_store.yaml, creating what
its servers need, and the doctor's check of its online store. Vector files and
indexes always live under HOME (a shared volume for many job hosts).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from embstore.settings import StoreSettings

# How long a Feast client (FeatureStore) keeps the registry in memory: it sees an alias move (its
# FeatureService) within this many seconds, or at once after fs.refresh_registry(). Not 0: to Feast
# 0 means "never refresh". embstore itself always reads the registry fresh.
FEAST_CACHE_SECONDS = 10


class Backend(abc.ABC):
    """Subclass, set ``name``, implement the abstract methods; name the class in ``backend:``."""

    name: ClassVar[str]

    def __init__(self, settings: "StoreSettings", home: Path):
        self.settings = settings
        self.home = home
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError when the settings lack what this backend needs (called on open)."""

    @abc.abstractmethod
    def registry_url(self) -> str:
        """SQLAlchemy URL of the version registry."""

    @abc.abstractmethod
    def feast_config(self, data_dir: Path) -> dict[str, Any]:
        """The ``registry`` and ``online_store`` entries of feature_store.yaml (``data_dir``: the repo's
        data directory, for file-based stores)."""

    def prepare(self) -> None:
        """Create what the servers need before first use (schemas); idempotent."""

    def feast_init_lock(self, repo: Path):
        """Held while Feast opens its registry, which creates its tables on first use: processes that
        open a fresh store at once must not race in that (a file lock in the repo by default)."""
        from filelock import FileLock

        return FileLock(repo / ".registry-init.lock")

    @abc.abstractmethod
    def check_online_store(self, data_dir: Path) -> str:
        """One line saying the online store is usable; raise EmbstoreError saying why it is not."""

    def describe(self) -> str:
        return self.name
