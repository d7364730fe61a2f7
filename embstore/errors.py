"""Errors users see. Each names the problem and, where known, the fix."""


class EmbstoreError(Exception):
    """Base of every error embstore raises on purpose; the CLI prints it as one line."""


class ConfigError(EmbstoreError):
    """A config key is unknown, mistyped or out of range."""


class PluginError(EmbstoreError):
    """A plugin is unknown, duplicated or does not honour the hook contract."""


class InputError(EmbstoreError):
    """An input file is missing, malformed or inconsistent; names file, column and row."""


class EmbeddingsError(EmbstoreError):
    """A producer returned vectors that cannot be published (NaN, duplicates, shapes)."""


class NotFoundError(EmbstoreError):
    """An embedding set, version, alias or id does not exist."""


class UnknownIdsError(NotFoundError):
    """Some requested ids are not in the version; `missing` lists them."""

    def __init__(self, message: str, missing: list):
        super().__init__(message)
        self.missing = missing


class IntegrityError(EmbstoreError):
    """Stored data does not match its recorded checksum."""


class PublishError(EmbstoreError):
    """Publishing a version failed; the version is marked failed and aliases did not move."""


class BackendUnavailableError(EmbstoreError):
    """A server the store needs (registry database, Feast registry, online store) is unreachable;
    nothing is left half done, retry once it is back."""


def first_line(exc: BaseException, with_type: bool = False) -> str:
    """The first line of an error's message, or its class name when it has none: what a CLI
    line, an HTTP body or a report shows (the full text stays in logs and version records).
    ``with_type`` prefixes the class name (``OSError: ...``) for errors embstore did not raise."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if with_type else text.splitlines()[0]
