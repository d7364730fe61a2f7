"""What the JSON app and the explorer page share (so neither imports the other's module)."""

from __future__ import annotations


def metric_of(version) -> str:
    """The version's recall metric: ip or cosine (higher is closer) or l2 (a distance)."""
    return str((version.retriever_config or {}).get("metric", "cosine"))
