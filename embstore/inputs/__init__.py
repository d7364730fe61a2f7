"""Producer inputs (interactions, edges, side info, features, tables): named, read, validated.

Producers never read files themselves: they ask an ``Inputs`` for a kind and get
validated, typed data back, so every producer reports bad input the same way.

    inputs = Inputs([parse_input_arg("interactions=ratings.csv")])
    seqs = inputs.sequences(min_rating=3.5)

Files are CSV (``.csv``, ``.csv.gz``, UTF-8, comma separated, header line) or
parquet (``.parquet``, ``.pq``); ``features`` may also be a scipy sparse ``.npz``
(row i is node id i). Errors are one ``InputError`` naming the file, the column
and the first bad row. Rows are counted as *data rows* from 1, the header not
counted, so data row N is line N+1 of a plain CSV.

Ids become int64 when every value of the column (of src and dst together for
edges) is a canonical decimal integer (``-12``, ``7``; not ``007``, ``+7`` or
``7.0``) that fits int64; otherwise all of them are kept as strings. Leading and
trailing whitespace is trimmed from ids and numbers.

The package, one concept a module: ``specs`` (what an input is and how the CLI
names it), ``readers`` (CSV and parquet files), ``columns`` (typed values from
columns, and the error format for a bad cell), ``sparse`` (``.npz`` features)
and ``loaded`` (the ``Inputs`` of one run).
"""

from embstore.inputs.columns import split_multi
from embstore.inputs.loaded import InputKinds, Inputs
from embstore.inputs.sparse import save_sparse_features
from embstore.inputs.specs import INPUT_KINDS, InputSpec, parse_column_arg, parse_input_arg, specs_from_args

__all__ = [
    "INPUT_KINDS",
    "InputSpec",
    "InputKinds",
    "Inputs",
    "parse_column_arg",
    "parse_input_arg",
    "save_sparse_features",
    "specs_from_args",
    "split_multi",
]
