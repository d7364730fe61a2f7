"""Alias moves: in the version registry (one transaction each), then in Feast, where every alias
is a FeatureService ``<set>__<alias>`` over the version it names.

The registry is the record; the FeatureService follows it right after. If Feast cannot be
reached then, the move stands, a warning says so, and ``embstore check`` finds the service
that disagrees (``embstore check --repair`` moves it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from embstore.errors import EmbstoreError, first_line

if TYPE_CHECKING:
    from embstore.backends.feature_repo import FeatureRepo
    from embstore.backends.registry import Registry
    from embstore.refs import VersionInfo

log = logging.getLogger(__name__)


class Aliases:
    """Moves aliases and the Feast FeatureServices that follow them."""

    def __init__(self, registry: "Registry", feast: "FeatureRepo"):
        self.registry, self.feast = registry, feast

    def promote(self, ref: Any, alias: str) -> "VersionInfo":
        version = self.registry.promote(ref, alias)
        self.follow(version.set)
        return version

    def promote_many(self, versions: list[tuple[str, int]], alias: str) -> list["VersionInfo"]:
        moved = self.registry.promote_many(versions, alias)
        for set_name in dict.fromkeys(v.set for v in moved):
            self.follow(set_name)
        return moved

    def rollback(self, set_name: str, alias: str) -> "VersionInfo":
        version = self.registry.rollback(set_name, alias)
        self.follow(set_name)
        return version

    def follow(self, set_name: str) -> None:
        """Point the set's FeatureServices at the versions its aliases name now."""
        def current() -> dict[str, str]:
            return {a: v.feature_view for v in self.registry.versions(set_name) for a in v.aliases if v.feature_view}

        try:
            self.feast.follow_aliases(set_name, current)
        except EmbstoreError as exc:
            log.warning("the aliases of %s moved, but their Feast feature services did not follow (%s); "
                        "run `embstore check --repair` once Feast is reachable", set_name, first_line(exc))
