"""Composite sets: the (weighted) concatenation of other sets' versions, published as an ordinary version.

    store.compose("node_both", ["node_homophily@prod", "node_structure@prod"], weights=[1.0, 0.5], promote="prod")
    embstore compose node_both node_homophily@prod node_structure@prod --weight 1 --weight 0.5 --promote prod

The seeds suggest feeding a homophily-leaning and a structure-leaning node2vec
to a ranking model side by side; a composite set makes that one feature with
its own versions, aliases, Feast view and index.

- Ids: the **intersection** of the sources' ids (an id must have a vector in
  every part), in the order of the first source. How many each source lost is
  in the version's ``composite`` metrics.
- Row i is ``[w1·a_i, w2·b_i, ...]``, so inner products of composite vectors
  are Σ w_j² · (inner products of the parts). ``normalize=True`` scales each
  part's vectors to unit length first, so weights alone set each part's share.
- Sources are resolved once and pinned: the version's config records
  ``sources`` as ``set@N`` (not the aliases given), the weights and the options;
  composing again later resolves the aliases afresh and makes a new version.
- All sources must hold the same entity (join key) with the same id type.
- Valid from the latest of its sources' valid-from times: it uses all their data.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, EmbeddingsError
from embstore.ids import positions
from embstore.linalg import unit_rows
from embstore.refs import check_set_name
from embstore.versions.gates import Checks
from embstore.versions.publishing import Provenance, PublishRequest

if TYPE_CHECKING:
    from embstore.refs import VersionInfo
    from embstore.versions.publishing import Publisher
    from embstore.versions.reader import VersionReader

PRODUCER = "compose"


def compose_embeddings(reader: "VersionReader", refs: Sequence[str], weights: Sequence[float] | None = None,
                       *, normalize: bool = False) -> tuple[Embeddings, list["VersionInfo"], list[float]]:
    """The composite vectors of ``refs`` (not yet published), the pinned source versions and weights."""
    refs = [str(r) for r in refs]
    if len(refs) < 2:
        raise ConfigError(f"compose needs at least two source refs, got {len(refs)}")
    if weights is None:
        weights = [1.0] * len(refs)
    weights = [float(w) for w in weights]
    if len(weights) != len(refs):
        raise ConfigError(f"{len(weights)} weights for {len(refs)} sources; give one weight per source (or none)")
    if any(not np.isfinite(w) or w <= 0 for w in weights):
        raise ConfigError(f"weights must be positive finite numbers, got {weights}")
    sources = [reader.resolve(r) for r in refs]
    pinned = [v.ref for v in sources]
    if len(set(pinned)) != len(pinned):
        raise ConfigError(f"a source version appears twice: {pinned}")
    first = sources[0]
    for v in sources[1:]:
        if (v.entity, v.id_type) != (first.entity, first.id_type):
            raise ConfigError(
                f"{v.ref} holds {v.entity!r} ({v.id_type} ids) but {first.ref} holds {first.entity!r} "
                f"({first.id_type} ids); composed sources must share entity and id type"
            )
    loaded = [reader.load(v) for v in sources]
    ids = loaded[0].ids
    keep = np.ones(len(ids), dtype=bool)
    rows = []
    for part in loaded:
        r = positions(ids, part.ids)
        keep &= r >= 0
        rows.append(r)
    if not keep.any():
        raise EmbeddingsError(f"the sources {pinned} share no ids; a composite needs ids present in all of them")
    blocks = []
    for part, r, w in zip(loaded, rows, weights):
        block = np.asarray(part.vectors[r[keep]], dtype=np.float32)
        if normalize:
            block = unit_rows(block)
        blocks.append(block * np.float32(w))
    metrics = {
        "composite": {
            "sources": pinned,
            "weights": weights,
            "dims": [v.dim for v in sources],
            "ids": int(keep.sum()),
            "ids_per_source": [int(v.count) for v in sources],
            "ids_dropped_per_source": [int(v.count) - int(keep.sum()) for v in sources],
        }
    }
    emb = Embeddings(ids=ids[keep], vectors=np.hstack(blocks), metadata=metrics)
    return emb, sources, weights


def compose(reader: "VersionReader", publisher: "Publisher", set_name: str, refs: Sequence[str],
            weights: Sequence[float] | None = None, *, normalize: bool = False, promote: str | None = None,
            retriever: str | None = None, retriever_config: Any = None, align_to: str | None = None,
            checks: Checks = Checks()) -> "VersionInfo":
    """Publish the composite of ``refs`` as the next version of ``set_name`` (see the module docstring)."""
    from embstore import __version__

    check_set_name(set_name)
    emb, sources, weights = compose_embeddings(reader, refs, weights, normalize=normalize)
    if set_name in {v.set for v in sources}:
        raise ConfigError(f"set {set_name!r} cannot be composed from its own versions")
    pinned = [v.ref for v in sources]
    config = {"sources": pinned, "requested": [str(r) for r in refs], "weights": weights,
              "normalize": normalize, "ids": "intersection"}
    fingerprint = hashlib.sha256(json.dumps(
        [[v.ref, v.checksums.get("vectors.npy"), w] for v, w in zip(sources, weights)] + [normalize]
    ).encode()).hexdigest()
    provenance = Provenance(PRODUCER, "embstore", __version__, config, fingerprint)
    valid_from = max((v.valid_from for v in sources if v.valid_from is not None), default=None)
    return publisher.publish(PublishRequest(set_name, emb, provenance, entity=sources[0].entity, promote=promote,
                                            retriever=retriever, retriever_config=retriever_config,
                                            align_to=align_to, checks=checks, valid_from=valid_from))
