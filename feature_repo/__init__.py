"""The Feast repository template used by the embedded default store."""
