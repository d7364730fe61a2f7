"""Alembic migrations owning the version registry schema."""
