"""embstore: embedding feature store."""
__version__ = "0.1.0"
