"""Reading an input file: CSV or parquet headers and tables, with encoding problems located.

CSV (``.csv``, ``.csv.gz``) is read as UTF-8, comma separated, with a header line;
a byte that is not UTF-8 is reported with its data row and column. Parquet
(``.parquet``, ``.pq``) is read through pyarrow. :func:`resolve_columns` finds the
canonical columns of an input kind in a header, honouring ``--column`` mappings.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pyarrow as pa

from embstore.errors import InputError
from embstore.inputs.specs import COLUMNS, InputSpec


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _csv_header(spec: InputSpec) -> list[str]:
    """Column names from the first line; read by hand so we can name encoding problems."""
    try:
        with _open_binary(spec.path) as f:
            line = f.readline()
    except (OSError, EOFError) as exc:
        raise InputError(f"{spec.display}: cannot read file: {exc}") from None
    if not line.strip():
        raise InputError(f"{spec.display}: file is empty (expected a header line and data rows)")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{spec.display}: the header: byte 0x{line[exc.start]:02x} is not valid UTF-8; "
            "re-save the file as UTF-8"
        ) from None
    return next(csv.reader([text.rstrip("\r\n")]))


def _utf8_error(spec: InputSpec, header: list[str]) -> InputError:
    """Find the first non-UTF-8 line (only on the error path) and name its row and column."""
    with _open_binary(spec.path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                column = ""
                fields = next(csv.reader([raw.decode("latin-1")]), [])
                for i, value in enumerate(fields):
                    try:
                        value.encode("latin-1").decode("utf-8")
                    except UnicodeDecodeError:
                        if i < len(header):
                            column = f"column {header[i]!r} "
                        break
                return InputError(
                    f"{spec.display}: {column}data row {lineno - 1}: byte 0x{raw[exc.start]:02x} "
                    "is not valid UTF-8; re-save the file as UTF-8"
                )
    return InputError(f"{spec.display}: file is not valid UTF-8; re-save it as UTF-8")


def read_header(spec: InputSpec, fmt: str) -> list[str]:
    """The column names of a 'csv' or 'parquet' file (pandas index columns left out)."""
    if fmt == "csv":
        return _csv_header(spec)
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(spec.path).names
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{spec.display}: not a readable parquet file: {exc}") from None
    return [n for n in names if not n.startswith("__index_level_")]


def read_table(spec: InputSpec, fmt: str, header: list[str], columns: list[str], strings: bool) -> pa.Table:
    """Read ``columns`` (CSV: as strings when ``strings``, so we parse and report them ourselves)."""
    if fmt == "csv":
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(
            include_columns=columns,
            column_types={c: pa.string() for c in columns} if strings else None,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        try:
            table = pacsv.read_csv(str(spec.path), convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc) or "UTF-8" in str(exc):
                raise _utf8_error(spec, header) from None
            raise InputError(f"{spec.display}: not a well-formed CSV file: {exc}") from None
        except (pa.ArrowException, OSError, EOFError) as exc:
            raise InputError(f"{spec.display}: cannot read CSV file: {exc}") from None
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(spec.path, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{spec.display}: not a readable parquet file: {exc}") from None
    if table.num_rows == 0:
        raise InputError(f"{spec.display}: no data rows (only a header or an empty table)")
    return table


def resolve_columns(spec: InputSpec, header: list[str]) -> dict[str, str]:
    """canonical -> actual column for the columns present; a missing required one is an error."""
    required, optional = COLUMNS[spec.kind]
    found = {}
    for canonical in required + optional:
        actual = spec.columns.get(canonical, canonical)
        if actual in header:
            found[canonical] = actual
        elif canonical in spec.columns or canonical in required:
            squash = canonical.replace("_", "").lower()
            guess = next((h for h in header if h.replace("_", "").lower() == squash), "NAME")
            mapped = f" (mapped from {spec.kind}.{canonical})" if canonical in spec.columns else ""
            how = spec.mapped_by.format(kind=spec.kind, canonical=canonical, actual=guess)
            raise InputError(f"{spec.display}: no column {actual!r}{mapped}; columns found: "
                             f"{', '.join(header)}; map it with {how}")
    return found
