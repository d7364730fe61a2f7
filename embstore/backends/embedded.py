"""The embedded default: everything in files under HOME, no server to run.

The version registry is a SQLite file (``HOME/registry.db``, or ``registry_url``);
Feast's registry is a file in the repo (written atomically) and its online store a
SQLite file in the repo's data directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from embstore.backends.base import Backend
from embstore.errors import EmbstoreError

FEAST_REGISTRY_STORE = "embstore.feast_store.AtomicFileRegistryStore"  # the class path homes' yaml names


class EmbeddedBackend(Backend):
    name = "embedded"

    def registry_url(self) -> str:
        return self.settings.registry_url or f"sqlite:///{self.home / 'registry.db'}"

    def feast_config(self, data_dir: Path) -> dict[str, Any]:
        return {
            "registry": {"path": str(data_dir / "registry.db"), "registry_store_type": FEAST_REGISTRY_STORE},
            "online_store": {"type": "sqlite", "path": str(data_dir / "online.db")},
        }

    def check_online_store(self, data_dir: Path) -> str:
        if not os.access(data_dir, os.W_OK):
            raise EmbstoreError(f"{data_dir} is not writable")
        return f"SQLite online store in {data_dir}"
