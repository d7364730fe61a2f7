"""What the Feast feature repo must hold for the registry's versions and aliases, and bringing it there.

Every version that has a FeatureView (published, or failed and not yet collected by gc)
keeps it, every alias has its FeatureService, and the repo's manifest lists exactly
these. ``repair`` rebuilds Feast's objects from the version registry: after a home of
embstore 0.1 moves to Feast's SQL registry, or when ``embstore check`` finds them apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embstore.backends import files
from embstore.backends.feature_repo import feature_service_name

if TYPE_CHECKING:
    from embstore.backends.feature_repo import FeatureRepo
    from embstore.backends.registry import Registry


def wanted_manifest(registry: "Registry", source_kind: dict | None = None) -> dict:
    """The entities, views and services Feast should hold, from the version registry and each
    version's offline file (its columns are the view's features); ``source_kind`` as the repo's
    offline store reads them (FeatureRepo.source_kind)."""
    manifest: dict = {"entities": {}, "views": {}, "services": {}}
    for set_name in registry.set_names():
        versions = registry.versions(set_name)
        for v in versions:
            if not v.feature_view or v.step == "collected" or not v.storage_path:
                continue
            parquet = files.offline_location(Path(v.storage_path), v.checksums)
            if not parquet.exists():
                continue
            manifest["entities"].setdefault(v.entity, {"id_type": v.id_type})
            manifest["views"][v.feature_view] = {
                "set": set_name, "version": v.number, "entity": v.entity, "source": str(parquet.resolve()),
                "features": files.offline_features(parquet, v.entity), **(source_kind or {})}
            for alias in v.aliases:
                manifest["services"][feature_service_name(set_name, alias)] = {
                    "set": set_name, "alias": alias, "view": v.feature_view}
    return manifest


def repair(registry: "Registry", feast: "FeatureRepo") -> list[str]:
    """Make Feast hold exactly what ``wanted_manifest`` says; returns what changed."""
    return feast.rebuild(wanted_manifest(registry, feast.source_kind()))
