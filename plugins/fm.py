"""fm: a factorization machine over users, items and item side information (torch).

Each example is a user, an item and the item's side-information values (genre,
brand, ...), every one a sparse categorical feature with a bias ``w_f`` and a
latent vector ``v_f``. The FM scores a (user, item) pair as

    logit = w0 + sum_f x_f w_f + sum_{f<g} x_f x_g <v_f, v_g>

over the features present (``x`` is 1 for the user and item ids and 1/k for
each of the k values of a multi-valued cell such as ``Adventure|Comedy``).
Training is binary cross-entropy on positives and negatives, as FNN pre-trains
its embedding layer with an FM (Zhang et al., 2016).

Inputs::

    embstore run fm --set movies_fm --input interactions=ratings.csv \
        --input side_info=movies.csv --config side_fields=[genres] --config min_rating=3.5 \
        --retriever-config metric=ip
    # python: store.run("fm", "movies_fm", {...}, {...}, retriever_config={"metric": "ip"})
    # then:   store.recall("movies_fm_item@prod", vectors=store.vectors("movies_fm_user@prod", [7]).matrix)

- ``interactions`` (required): with ``min_rating`` set, interactions rated at
  least that are positives and lower-rated ones are explicit negatives
  (``low_ratings: negative``) or dropped (``drop``); without it every
  interaction is a positive (implicit feedback). Each positive also gets
  ``negatives`` items the user never interacted with, drawn afresh every epoch
  (``embstore.negatives``; uniform over items by default). The ``weight``
  column (default 1; e.g. play counts or dwell time) weights each interaction's
  loss term, sampled negatives weigh 1; repeated (user, item) rows count as
  repeated positives.
- ``side_info`` (optional): one row per item; ``side_fields`` picks its columns
  (default: all; leave out free-text columns such as titles). Items of
  side_info without interactions get a vector too, from their side information
  alone (cold start): they are never drawn as negatives and their own id
  vector is 0. Items that arrive after training get the same from ``infer``::

      embstore infer movies_fm_item@prod --input side_info=new_movies.csv --publish --promote prod

Training: mini-batches of positives and negatives, binary cross-entropy plus
``l2`` times the squared norms of the vectors and biases each example touches,
Adagrad on sparse gradients. The progress bar (stderr, on a terminal unless
forced) shows the running loss and, after each epoch, the AUC of that epoch's
examples as scored just before their step.

Published: two sets in one space, ``<set>_user`` and ``<set>_item``. Splitting
the features into a user group (the user id) and an item group (item id and
side information), the logit is ``w0 + <U_u, I_i>`` exactly, with

    U_u = [v_u, 1, w_u]
    I_i = [s_i, b_i, 1]      s_i = sum_item-features x_f v_f
                             b_i = sum x_f w_f + pairwise terms inside the item group

so user -> item recall by inner product (FAISS ``metric: ip``) ranks items by
the model's own score, and ``sigmoid(<U_u, I_i> + w0)`` is its predicted
probability (``w0`` is the version metric ``global_bias``). The first ``dim``
columns are the FM latent vectors (the item's summed over its features);
``bias_columns: false`` publishes only those, for similarity by cosine. Recall
needs ``metric: ip``: the store's default retriever metric (cosine) would
ignore the vector norms and so the score scale the model learned.

Measured (bench/bench_fm.py, MovieLens latest-small, defaults, genres as side
info): test AUC 0.859 against 0.858 for logistic regression on the same one-hot
features (positives vs sampled unseen items) and 0.713 against 0.695 (positives
vs ratings < 3.5); leave-last-out HR@10 0.077 against popularity's 0.041, by
inner product through the store's FAISS index. 10 epochs take about 30-60 s on
2 shared cores (~55k examples/s). negatives: 8 lifted the first AUC to 0.869 and
lowered the second to 0.698, at twice the time.

Determinism: the same data, config and ``seed`` give the same vectors bit for
bit with ``threads: 1`` (the default). With more threads torch may sum sparse
gradients in a different order and results can differ in the last bits.

Options: see ``FMConfig``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from embstore.config import PluginConfig
from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, InputError
from embstore.hookspecs import hookimpl
from embstore.ids import plain, positions
from embstore.negatives import NegativeSampler
from embstore.producer import Producer
from embstore.training import EpochLoop

if TYPE_CHECKING:
    from embstore.inputs import Inputs

logger = logging.getLogger(__name__)


class FMConfig(PluginConfig):
    """Factorization machine options. Every field has a default; unknown keys are errors."""

    dim: int = Field(32, ge=1, le=1024, description="Latent dimension of every feature value.")
    epochs: int = Field(10, ge=1, description="Passes over the positives (negatives are redrawn each epoch).")
    batch_size: int = Field(1024, ge=1, description="Examples (positives and negatives) per optimizer step.")
    learning_rate: float = Field(0.1, gt=0, le=10, allow_inf_nan=False, description="Adagrad learning rate.")
    l2: float = Field(
        0.01, ge=0, allow_inf_nan=False,
        description="L2 penalty on the latent vectors and biases each example uses, per example.",
    )
    negatives: int = Field(4, ge=0, le=1000, description="Sampled negative items per positive.")
    negative_exponent: float = Field(
        0.0, ge=0, le=2, allow_inf_nan=False,
        description="Sample negatives with probability count**exponent: 0 uniform over items, "
        "1 by popularity.",
    )
    min_rating: float | None = Field(
        None, allow_inf_nan=False,
        description="Interactions rated at least this are positives; null makes every interaction a "
        "positive. Needs a rating column when set.",
    )
    low_ratings: Literal["negative", "drop"] = Field(
        "negative",
        description="With min_rating: use interactions rated below it as explicit negatives, or drop them.",
    )
    side_fields: list[str] | None = Field(
        None, description="side_info columns used as item fields; null uses every column.",
    )
    separator: str = Field("|", min_length=1, description="Separator of multi-valued side-info cells.")
    bias_columns: bool = Field(
        True,
        description="Append the two bias columns so that <user, item> is the model's logit minus the "
        "global bias; false publishes the latent vectors only.",
    )
    init_std: float = Field(0.01, gt=0, le=1, allow_inf_nan=False,
                            description="Standard deviation of the initial latent vectors.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for initial vectors, shuffling and negatives.")
    threads: int = Field(1, ge=1, description="torch CPU threads; bit-for-bit reproducible only with 1.")


@dataclass
class _Data:
    """Integer-coded training data: users, items and each item's feature bag."""

    users: np.ndarray       # user ids; code u is users[u], feature u
    items: np.ndarray       # item ids; code i is items[i], feature len(users) + i
    pos_u: np.ndarray       # positives (user code, item code)
    pos_i: np.ndarray
    neg_u: np.ndarray       # explicit negatives (low ratings)
    neg_i: np.ndarray
    pos_w: np.ndarray       # loss weight of each positive / explicit negative (the weight column)
    neg_w: np.ndarray
    item_feats: np.ndarray  # (n_items, L) feature codes of each item: its id, then side values
    item_w: np.ndarray      # (n_items, L) their x values; 0 pads
    n_features: int
    cold_items: np.ndarray  # bool per item: no interaction (side info only)
    meta: dict
    field_vocab: dict       # side field -> {value: feature code}


def _prepare(inputs: "Inputs", config: FMConfig) -> _Data:
    from embstore.inputs import split_multi

    frame = inputs.interactions()
    spec = inputs.spec("interactions")
    labels = np.ones(len(frame), dtype=bool)
    dropped = 0
    if config.min_rating is not None:
        if "rating" not in frame.columns:
            raise InputError(
                f"{spec.display}: min_rating={config.min_rating} needs a rating column, but there is none; "
                "map it with --column interactions.rating=NAME or drop min_rating"
            )
        labels = frame["rating"].to_numpy() >= config.min_rating
        if not labels.any():
            raise InputError(f"{spec.display}: no interaction has rating >= {config.min_rating}")
        if config.low_ratings == "drop":
            dropped = int((~labels).sum())
            frame, labels = frame[labels], labels[labels]

    side = None
    fields: list[str] = []
    if "side_info" in inputs.kinds:
        side = inputs.side_info()
        columns = [c for c in side.columns if c != "item_id"]
        if config.side_fields is not None:
            unknown = [f for f in config.side_fields if f not in columns]
            if unknown:
                raise InputError(
                    f"{inputs.spec('side_info').display}: side_fields {unknown} are not columns of side_info; "
                    f"columns: {', '.join(columns)}"
                )
            fields = list(dict.fromkeys(config.side_fields))
        else:
            fields = columns
        i_kind, s_kind = frame["item_id"].to_numpy().dtype.kind, side["item_id"].to_numpy().dtype.kind
        if (i_kind == "O") != (s_kind == "O"):
            kinds = {True: "strings", False: "integers"}
            raise InputError(
                f"item ids of interactions are {kinds[i_kind == 'O']} but those of side_info "
                f"({inputs.spec('side_info').display}) are {kinds[s_kind == 'O']}; they must name the same items"
            )
        if not np.isin(side["item_id"].to_numpy(), frame["item_id"].to_numpy()).any():
            raise InputError(
                f"no item of side_info ({inputs.spec('side_info').display}) appears in the interactions; "
                "check the item_id columns (--column side_info.item_id=NAME)"
            )
    elif config.side_fields:
        raise InputError(f"side_fields={config.side_fields} needs side information; pass --input side_info=PATH")

    user_ids, user_codes = np.unique(frame["user_id"].to_numpy(), return_inverse=True)
    item_pool = frame["item_id"].to_numpy()
    if side is not None:
        item_pool = np.concatenate([item_pool, side["item_id"].to_numpy()])
    item_ids = np.unique(item_pool)
    item_codes = np.searchsorted(item_ids, frame["item_id"].to_numpy())
    cold = ~np.isin(item_ids, frame["item_id"].to_numpy())
    n_users, n_items = len(user_ids), len(item_ids)
    if n_items < 2:
        raise InputError(f"{spec.display}: fm needs at least 2 distinct items, found {n_items}")

    # feature vocabulary: users | items | field=value for each side field
    bags: list[list[tuple[int, float]]] = [[(n_users + j, 1.0)] for j in range(n_items)]
    n_features = n_users + n_items
    field_sizes = {}
    field_vocab: dict[str, dict[str, int]] = {}
    if side is not None and fields:
        rows = np.searchsorted(item_ids, side["item_id"].to_numpy())
        for name in fields:
            values = split_multi(side[name].to_numpy(), config.separator)
            vocab: dict[str, int] = {}
            for row, vals in zip(rows, values):
                vals = list(dict.fromkeys(vals))
                for v in vals:
                    code = vocab.setdefault(v, n_features + len(vocab))
                    bags[row].append((code, 1.0 / len(vals)))
            field_sizes[name] = len(vocab)
            field_vocab[name] = vocab
            n_features += len(vocab)
    item_feats, item_w = _pad_bags(bags)

    meta = {
        "users": n_users, "items": n_items, "cold_items": int(cold.sum()), "features": n_features,
        "side_fields": field_sizes, "positives": int(labels.sum()),
        "explicit_negatives": int((~labels).sum()), "dropped_low_ratings": dropped,
    }
    weight = frame["weight"].to_numpy(dtype=np.float32)
    bad = np.flatnonzero(~(weight >= 0) | ~np.isfinite(weight))
    if bad.size:
        raise InputError(f"{spec.display}: weight of data row {int(bad[0]) + 1} is {float(weight[bad[0]])!r}; fm weights "
                         "each interaction's loss by it, so it must be a finite number >= 0")
    return _Data(user_ids, item_ids, user_codes[labels], item_codes[labels], user_codes[~labels],
                 item_codes[~labels], weight[labels], weight[~labels], item_feats, item_w, n_features, cold, meta,
                 field_vocab)


def auc_score(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC by the rank-sum formula (ties count half); None when only one class is present."""
    import pandas as pd

    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _build_model(n_features: int, dim: int, init_std: float, generator):
    import torch
    from torch import nn

    class FM(nn.Module):
        """Latent vectors ``v`` and biases ``w`` per feature value, global bias ``w0``."""

        def __init__(self) -> None:
            super().__init__()
            self.v = nn.Embedding(n_features, dim, sparse=True)
            self.w = nn.Embedding(n_features, 1, sparse=True)
            self.w0 = nn.Parameter(torch.zeros(()))
            with torch.no_grad():
                self.v.weight.normal_(0.0, init_std, generator=generator)
                self.w.weight.zero_()

        def item_parts(self, feats, weights):
            """Per item: s = sum x v, its bias b (feature biases + intra-item pairs), and sum x^2 |v|^2."""
            vf = self.v(feats)                               # (B, L, d)
            x = weights.unsqueeze(-1)
            s = (x * vf).sum(1)
            sq = (x * x * vf * vf).sum(1)
            wf = self.w(feats).squeeze(-1)
            b = (weights * wf).sum(1) + 0.5 * (s * s - sq).sum(1)
            return s, b, vf, wf

        def forward(self, users, feats, weights):
            vu = self.v(users)
            wu = self.w(users).squeeze(-1)
            s, b, vf, wf = self.item_parts(feats, weights)
            logit = self.w0 + wu + b + (vu * s).sum(1)
            used = (weights > 0).to(vf.dtype)
            penalty = (vu * vu).sum(1) + wu * wu + (used * ((vf * vf).sum(2) + wf * wf)).sum(1)
            return logit, penalty

    return FM()


class FactorizationMachine(Producer):
    """User and item vectors in one space from a factorization machine (see the module docstring).

    After ``fit`` the trained torch module is ``self.model_``: ``model_(user_codes, item_feats,
    item_weights)`` returns (logits, penalties); feature codes are the users (sorted ids),
    then the items (sorted ids), then side-information values field by field.
    """

    name = "fm"
    Config = FMConfig
    requires = frozenset({"interactions"})
    accepts = frozenset({"side_info"})
    entity = "item_id"
    entities = {"user": "user_id", "item": "item_id"}
    retriever_defaults = {"metric": "ip"}  # <user, item> + w0 is the model's logit
    conformance_config: ClassVar[dict] = {"epochs": 2, "dim": 8}

    def fit(self, inputs: "Inputs", config: FMConfig, progress: bool | None = None) -> dict[str, Embeddings]:
        """Train the FM and return {"user": ..., "item": ...} Embeddings.

        ``progress``: True draws a bar on stderr with the running loss and, per epoch,
        the AUC of that epoch's examples as scored just before each step (progressive
        validation); False is silent; None draws it only when stderr is a terminal.
        Per-epoch losses and AUCs land in the version metrics.
        """
        import torch

        data = _prepare(inputs, config)
        with EpochLoop.threads(config.threads):
            generator = torch.Generator().manual_seed(config.seed)
            model = _build_model(data.n_features, config.dim, config.init_std, generator)
            metrics = _train(model, data, config, progress)
            with torch.no_grad():
                v = model.v.weight.detach()
                w = model.w.weight.detach().squeeze(-1)
                if data.cold_items.any():  # never in training (nor sampled): id vector is its init noise
                    cold_rows = torch.from_numpy(len(data.users) + np.flatnonzero(data.cold_items))
                    v[cold_rows] = 0.0
                    w[cold_rows] = 0.0
                item_vectors = _item_vectors(model, data.item_feats, data.item_w, config.bias_columns)
                vu = v[: len(data.users)]
                wu = w[: len(data.users)]
                if config.bias_columns:
                    user_vec = torch.cat([vu, torch.ones(len(data.users), 1), wu.unsqueeze(1)], 1)
                else:
                    user_vec = vu
                w0 = float(model.w0.detach())
        self.model_ = model
        metrics["global_bias"] = w0
        logger.info("fm: %d users, %d items, %d features; %d epochs in %.1fs, last loss %.4f",
                    len(data.users), len(data.items), data.n_features, metrics["epochs_run"],
                    metrics["train_seconds"], metrics["final_loss"])
        metrics["bias_columns"] = config.bias_columns
        side_start = len(data.users) + len(data.items)
        item_state = {  # what infer needs to embed new items from their side information
            "role": "item", "items": data.items, "item_vectors": item_vectors,
            "vocab": data.field_vocab, "side_start": side_start,
            "side_v": v[side_start:].numpy().copy(), "side_w": w[side_start:].numpy().copy(),
        }
        return {
            "user": Embeddings(ids=data.users, vectors=user_vec.numpy().astype(np.float32), metadata=metrics,
                               state={"role": "user"}),
            "item": Embeddings(ids=data.items, vectors=item_vectors, metadata=metrics, state=item_state),
        }

    def infer(self, state: dict, inputs: "Inputs", config: FMConfig) -> Embeddings:
        """Item vectors for every side_info row: items seen in training keep their trained vector,
        new ones get the model's vector of their side information alone (id vector 0), exactly as
        side_info items without interactions get it in ``fit``. New users need interactions:
        retrain for them."""
        import torch

        from embstore.inputs import split_multi

        if state.get("role") != "item":
            raise ConfigError("fm embeds new items from side information; new users need interactions "
                              "(retrain), so infer from the <set>_item version")
        if not state["vocab"]:
            raise ConfigError("this fm version was trained without side information, so a new item has "
                              "nothing to be embedded from; retrain with --input side_info=...")
        frame = inputs.side_info()
        where = inputs.spec("side_info").display
        fields = list(state["vocab"])
        absent = [f for f in fields if f not in frame.columns]
        if absent:
            raise InputError(f"{where}: no column {absent[0]!r}, a side field the model was trained on; "
                             f"columns: {', '.join(map(str, frame.columns))}")
        ids = frame["item_id"].to_numpy()
        trained = state["items"]
        if (ids.dtype.kind == "O") != (trained.dtype.kind == "O"):
            kinds = {True: "strings", False: "integers"}
            raise InputError(f"{where}: item ids are {kinds[ids.dtype.kind == 'O']} but the model's are "
                             f"{kinds[trained.dtype.kind == 'O']}; they must name items the same way")
        known = positions(ids, trained)
        bags: list[list[tuple[int, float]]] = [[] for _ in range(len(ids))]
        start = state["side_start"]  # side-information codes follow the users' and items'
        for name in fields:
            vocab = state["vocab"][name]
            for row, vals in enumerate(split_multi(frame[name].to_numpy(), config.separator)):
                vals = list(dict.fromkeys(vals))
                # a value training never saw has no vector
                bags[row] += [(vocab[v] - start, 1.0 / len(vals)) for v in vals if v in vocab]
        found = np.array([bool(bag) for bag in bags])
        side_only = _build_model(len(state["side_v"]), state["side_v"].shape[1], config.init_std, None)
        with torch.no_grad():
            side_only.v.weight.copy_(torch.from_numpy(state["side_v"]))
            side_only.w.weight.copy_(torch.from_numpy(state["side_w"]).unsqueeze(1))
        vectors = _item_vectors(side_only, *_pad_bags(bags), config.bias_columns)
        vectors[known >= 0] = state["item_vectors"][known[known >= 0]]
        lost = np.flatnonzero((known < 0) & ~found)
        if lost.size:
            raise InputError(f"{where}: cannot embed {lost.size} new item(s) from side information, e.g. "
                             f"{plain(ids[lost[0]])!r}: none of their values in fields {', '.join(fields)} occurred in "
                             "training")
        return Embeddings(ids=ids, vectors=vectors,
                          metadata={"new_items": int((known < 0).sum()), "known_items": int((known >= 0).sum())})


def _item_vectors(model, item_feats: np.ndarray, item_w: np.ndarray, bias_columns: bool,
                  chunk: int = 65536) -> np.ndarray:
    """The published item rows, [s, b, 1] (or s), from each item's feature bag; in chunks so a large
    catalogue does not need (n, L, d) at once. fit and infer both end here."""
    import torch

    parts = []
    with torch.no_grad():
        for start in range(0, len(item_feats), chunk):
            s, b, _, _ = model.item_parts(torch.from_numpy(item_feats[start : start + chunk]),
                                          torch.from_numpy(item_w[start : start + chunk]))
            parts.append(torch.cat([s, b.unsqueeze(1), torch.ones(len(s), 1)], 1) if bias_columns else s)
    return torch.cat(parts).numpy().astype(np.float32)


def _pad_bags(bags: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Feature bags [(code, x), ...] as (n, L) codes and x values; padding has x = 0."""
    width = max([1, *map(len, bags)])
    feats = np.zeros((len(bags), width), dtype=np.int64)
    weights = np.zeros((len(bags), width), dtype=np.float32)
    for j, bag in enumerate(bags):
        feats[j, : len(bag)] = [f for f, _ in bag]
        weights[j, : len(bag)] = [w for _, w in bag]
        if bag:
            feats[j, len(bag):] = bag[0][0]  # padding: weight 0, any valid index
    return feats, weights


def _epoch_examples(data: _Data, sampler: NegativeSampler | None, negatives: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One epoch's (user, item, label, loss weight) rows: positives and explicit negatives with
    their interaction weight, fresh sampled negatives with weight 1; shuffled."""
    parts_u = [data.pos_u, data.neg_u]
    parts_i = [data.pos_i, data.neg_i]
    parts_y = [np.ones(len(data.pos_u), np.float32), np.zeros(len(data.neg_u), np.float32)]
    parts_w = [data.pos_w, data.neg_w]
    if sampler is not None:
        neg = sampler.sample(data.pos_u, negatives, rng)
        parts_u.append(np.repeat(data.pos_u, negatives))
        parts_i.append(neg.ravel())
        parts_y.append(np.zeros(neg.size, np.float32))
        parts_w.append(np.ones(neg.size, np.float32))
    order = rng.permutation(sum(len(p) for p in parts_u))
    return tuple(np.concatenate(parts)[order] for parts in (parts_u, parts_i, parts_y, parts_w))


def _train(model, data: _Data, config: FMConfig, progress: bool | None) -> dict[str, Any]:
    import torch

    rng = np.random.default_rng(config.seed)
    n_pos, n_exp = len(data.pos_u), len(data.neg_u)
    if n_pos + n_exp == 0:
        raise InputError("fm has nothing to train on: no interactions left")
    if config.negatives == 0 and n_exp == 0:
        raise InputError(
            "fm needs negatives to learn from: set negatives >= 1, or give min_rating with low_ratings: negative"
        )
    sampler = None
    if config.negatives:
        seen_u = np.concatenate([data.pos_u, data.neg_u])
        seen_i = np.concatenate([data.pos_i, data.neg_i])
        sampler = NegativeSampler(len(data.items), seen_u, seen_i, exponent=config.negative_exponent,
                                  candidates=np.flatnonzero(~data.cold_items))
    per_epoch = n_pos * (1 + config.negatives) + n_exp
    # Adagrad: per-coordinate steps suit sparse features (rare values move less once seen
    # often); on MovieLens it generalised better than (sparse) Adam at every setting tried.
    optimizer = torch.optim.Adagrad(model.parameters(), lr=config.learning_rate)
    item_feats = torch.from_numpy(data.item_feats)
    item_w = torch.from_numpy(data.item_w)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    aucs: list[float | None] = []
    loop = EpochLoop("fm", config.epochs, -(-per_epoch // config.batch_size), progress)
    # sparse gradients are built by torch itself; opting out of the checks silences a warning
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        for epoch in loop:
            users, items, y, w = _epoch_examples(data, sampler, config.negatives, rng)
            users_t, items_t, y_t, w_t = (torch.from_numpy(a) for a in (users, items, y, w))
            logits_seen = np.empty(users.shape[0], dtype=np.float32)
            total = 0.0
            for start in range(0, users.shape[0], config.batch_size):
                sl = slice(start, start + config.batch_size)
                it = items_t[sl]
                logit, penalty = model(users_t[sl], item_feats[it], item_w[it])
                bce = (loss_fn(logit, y_t[sl]) * w_t[sl]).sum()
                loss = (bce + config.l2 * penalty.sum()) / logit.shape[0]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(bce.detach())
                logits_seen[sl] = logit.detach().numpy()
                loop.batch_done(running_loss=total / min(start + config.batch_size, users.shape[0]))
            loop.epoch_done(total / users.shape[0])
            aucs.append(auc_score(y > 0.5, logits_seen))
            if aucs[-1] is not None:
                loop.bar.set_postfix_str(f"epoch {epoch + 1}, loss {loop.losses[-1]:.4f}, auc {aucs[-1]:.3f}")
    meta = dict(data.meta)
    meta.update(loop.metrics())
    meta.update(
        epoch_train_auc=[None if a is None else round(a, 6) for a in aucs],
        examples_per_epoch=int(per_epoch),
    )
    seconds = meta["train_seconds"]
    meta["examples_per_second"] = round(per_epoch * config.epochs / seconds, 1) if seconds > 0 else None
    return meta


@hookimpl
def register_producers(register) -> None:
    register(FactorizationMachine)
