"""The class path existing homes' feature_store.yaml names for Feast's registry store:
``embstore.feast_store.AtomicFileRegistryStore`` (it lives in embstore.backends.feast_registry_store)."""


def __getattr__(name: str):
    if name == "AtomicFileRegistryStore":
        from embstore.backends.feast_registry_store import atomic_file_registry_store

        return atomic_file_registry_store()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
