"""The embedded default: everything in files under HOME, no server to run.

The version registry is a SQLite file (``HOME/registry.db``, or ``registry_url``);
Feast's registry is Feast's own SQL registry on a SQLite file in the repo's data
directory (every change one transaction, so readers never see half a registry and a
killed writer leaves it whole) and its online store a SQLite file beside it. The
repo opens with plain Feast: nothing in feature_store.yaml names embstore.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from embstore.backends.base import FEAST_CACHE_SECONDS, Backend
from embstore.errors import EmbstoreError

class EmbeddedBackend(Backend):
    name = "embedded"

    def registry_url(self) -> str:
        return self.settings.registry_url or f"sqlite:///{self.home / 'registry.db'}"

    def feast_config(self, data_dir: Path) -> dict[str, Any]:
        return {
            "registry": {"registry_type": "sql", "path": f"sqlite:///{data_dir / 'feast_registry.db'}",
                         "cache_ttl_seconds": FEAST_CACHE_SECONDS, "sqlalchemy_config_kwargs": {"connect_args": {"timeout": 60}}},
            "online_store": {"type": "sqlite", "path": str(data_dir / "online.db")},
        }

    def check_online_store(self, data_dir: Path) -> str:
        if not os.access(data_dir, os.W_OK):
            raise EmbstoreError(f"{data_dir} is not writable")
        return f"SQLite online store in {data_dir}"
