"""Built-in evaluators for quality gates, registered through the same hook a team's plugin uses.

- ``hit_rate``: leave-last-out HR@K and NDCG@K of recall on held-out interactions.
- ``node_classification``: accuracy of a logistic regression on the vectors (Cora-like labels file).
- ``drift``: drift of the version against what an alias (``prod``) serves now.

    --evaluate hit_rate:path=heldout.csv,k=10 --gate "hr@10>=0.05"
    --evaluate node_classification:path=nodes.csv --gate "accuracy>=0.6"
    --evaluate drift:alias=prod --gate "drift_overlap@10>=0.3"

Each reads the version only through the store's public API (vectors, recall, diff).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from embstore.config import PluginConfig
from embstore.errors import ConfigError, InputError, NotFoundError
from embstore.evaluator import Evaluator, StoreView
from embstore.hookspecs import hookimpl
from embstore.ids import typed_ids
from embstore.linalg import unit_rows

if TYPE_CHECKING:
    from embstore.refs import VersionInfo


# -- leave-last-out hit rate -------------------------------------------------


class HitRateConfig(PluginConfig):
    path: Path = Field(description=(
        "held-out interactions, CSV or parquet with user_id,item_id,timestamp[,rating]: each user's last "
        "interaction (by time) is the target, the earlier ones are the history. Train the version without "
        "those last interactions (the evaluator has no part in that split; see leave_last_out)."))
    k: int = Field(10, ge=1, description="length of the recommended list")
    history: int = Field(20, ge=1, description="the most recent history items averaged into the user's query vector")
    min_rating: float | None = Field(None, description="drop interactions rated below this before splitting")
    exclude_seen: bool = Field(True, description="never count an item from the user's history as a recommendation")
    columns: dict[str, str] = Field(default_factory=dict, description="canonical -> actual column names, e.g. {user_id: userId}")
    max_users: int | None = Field(None, ge=1, description="evaluate a random sample of this many users (all by default)")
    seed: int = Field(0, description="seed of the user sample")


def leave_last_out(interactions, min_rating: float | None = None, columns: dict[str, str] | None = None):
    """Split an interactions frame (user_id, timestamp[, rating] and any others) for ``hit_rate``.

    Returns ``(train, full)``: ``train`` drops each user's last interaction by time (ties: file
    order) — train the producer on it; ``full`` keeps everything — give it as the ``path`` of
    ``hit_rate``, which holds out that same last interaction and uses the rest as history.
    ``columns`` maps canonical names to the frame's (``{"user_id": "userId"}``); without it a
    column spelled alike (``userId``, ``UserID``) is used. The frames keep the frame's own names.
    """
    import pandas as pd

    df = interactions
    needed = ["user_id", "timestamp"] + (["rating"] if min_rating is not None else [])
    name = {c: _column(df, c, (columns or {}).get(c)) for c in needed}
    if min_rating is not None:
        df = df[df[name["rating"]] >= min_rating]
    order = df.assign(_pos=np.arange(len(df))).sort_values([name["user_id"], name["timestamp"], "_pos"], kind="stable")
    last = order.groupby(name["user_id"], sort=False).tail(1)["_pos"]
    train_mask = np.ones(len(df), dtype=bool)
    train_mask[last.to_numpy()] = False
    return df[train_mask].reset_index(drop=True), pd.DataFrame(df).reset_index(drop=True)


def _column(frame, canonical: str, given: str | None) -> str:
    """The frame's column for ``canonical``: as mapped, as named, or spelled alike (case, '_')."""
    squash = canonical.replace("_", "").lower()
    found = given or next((c for c in frame.columns if c == canonical), None) or next(
        (c for c in frame.columns if str(c).replace("_", "").lower() == squash), None)
    if found is None or found not in frame.columns:
        raise InputError(f"leave_last_out needs a {canonical!r} column (the frame has {list(frame.columns)}); "
                         f"name it with columns={{{canonical!r}: 'yourColumn'}}")
    return found


class HitRate(Evaluator):
    """Leave-last-out HR@K / NDCG@K of recall: for each user of the held-out file, the mean vector of
    their last ``history`` items queries the version's own index (its retriever and metric, as recall
    serves it); a hit is the held-out last item among the top k (seen items excluded).

    Metrics: ``hr@K``, ``ndcg@K``, ``hr_users`` (users with a history and a target) and
    ``hr_coverage`` (share of them whose query and target both have vectors; the others count as
    misses). MovieLens latest-small reference (ratings >= 3.5): popularity HR@10 0.039, item-kNN 0.053.
    """

    name = "hit_rate"
    Config = HitRateConfig
    reads = "interactions"  # a run's --column interactions.* mapping is its default columns

    def evaluate(self, store: StoreView, version: "VersionInfo", config: HitRateConfig) -> dict[str, float]:
        from embstore.inputs import Inputs, InputSpec

        mapped_by = "columns={{{canonical}: {actual}}} in the hit_rate config (--evaluate 'hit_rate:path=...,columns={{...}}')"
        df = Inputs([InputSpec("interactions", config.path, config.columns, mapped_by=mapped_by)]).interactions()
        if config.min_rating is not None:
            if "rating" not in df.columns:
                raise InputError(f"{config.path}: min_rating is set but the file has no rating column")
            df = df[df["rating"] >= config.min_rating]
        df = df.assign(_pos=np.arange(len(df))).sort_values(["user_id", "timestamp", "_pos"], kind="stable")
        users = []
        for _, group in df.groupby("user_id", sort=True):
            items = typed_ids(version.id_type, group["item_id"].tolist())
            if len(items) >= 2:
                users.append((items[:-1], items[-1]))
        if not users:
            raise InputError(f"{config.path}: no user has two or more interactions; nothing to hold out")
        if config.max_users and len(users) > config.max_users:
            pick = np.random.default_rng(config.seed).choice(len(users), size=config.max_users, replace=False)
            users = [users[i] for i in sorted(pick)]
        k = config.k
        wanted = list(dict.fromkeys(i for hist, target in users for i in (*hist[-config.history:], target)))
        got = store.vectors(version.ref, wanted, allow_missing=True)
        vector_of = dict(zip(got.ids, got.matrix))
        queries, kept, seen_sets = [], [], []
        for idx, (hist, target) in enumerate(users):
            recent = [vector_of[i] for i in hist[-config.history:] if i in vector_of]
            if not recent:
                continue
            queries.append(np.mean(recent, axis=0))
            kept.append(idx)
            seen_sets.append(set(hist) if config.exclude_seen else set())
        hits, gains = 0, 0.0
        if queries:
            extra = max((len(s) for s in seen_sets), default=0)
            want = min(k + extra, int(version.count))
            results = store.recall(version.ref, vectors=np.vstack(queries), k=want)
            for res, idx, seen in zip(results, kept, seen_sets):
                target = users[idx][1]
                ranked = [i for i in res.ids if i not in seen][:k]
                if target in ranked:
                    rank = ranked.index(target)
                    hits += 1
                    gains += 1.0 / np.log2(rank + 2)
        n = len(users)
        covered = sum(1 for i in kept if users[i][1] in vector_of)
        return {
            f"hr@{k}": hits / n,
            f"ndcg@{k}": gains / n,
            "hr_users": float(n),
            "hr_coverage": covered / n,
        }


# -- node classification -----------------------------------------------------


class NodeClassificationConfig(PluginConfig):
    path: Path = Field(description="labels file, CSV or parquet: one row per node with id, label and (optionally) split")
    id_column: str = Field("node_id", description="column of node ids")
    label_column: str = Field("label", description="column of class labels")
    split_column: str | None = Field("split", description="column naming each node's split; None: random split")
    train: str = Field("train", description="split value of training nodes")
    test: str = Field("test", description="split value of test nodes")
    test_fraction: float = Field(0.5, gt=0, lt=1, description="share of labelled nodes tested when split_column is None")
    C: float = Field(1.0, gt=0, description="inverse L2 regularisation strength of the logistic regression")
    max_iter: int = Field(1000, ge=1, description="L-BFGS iterations")
    normalize: bool = Field(True, description="scale each vector to unit length before fitting")
    seed: int = Field(0, description="seed of the random split")


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, n_classes: int, c: float = 1.0,
                            max_iter: int = 1000) -> np.ndarray:
    """Multinomial logistic regression, 0.5·||W||² + C·Σ cross-entropy (intercept unpenalised),
    by L-BFGS; returns W of shape (d + 1, classes), the last row the intercepts."""
    from scipy.optimize import minimize

    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0

    def loss(w: np.ndarray):
        w = w.reshape(d + 1, n_classes)
        z = xb @ w
        z -= z.max(axis=1, keepdims=True)
        logsum = np.log(np.exp(z).sum(axis=1))
        value = c * float((logsum - (z * onehot).sum(axis=1)).sum()) + 0.5 * float((w[:-1] ** 2).sum())
        p = np.exp(z - logsum[:, None])
        grad = c * (xb.T @ (p - onehot))
        grad[:-1] += w[:-1]
        return value, grad.ravel()

    res = minimize(loss, np.zeros((d + 1) * n_classes), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x.reshape(d + 1, n_classes)


class NodeClassification(Evaluator):
    """Node classification accuracy: a logistic regression on the vectors of the training nodes
    predicts the labels of the test nodes (the usual check of DeepWalk / node2vec / GraphSAGE on Cora;
    published on Cora's Planetoid split: DeepWalk about 0.67).

    Metrics: ``accuracy``, ``macro_f1``, ``nc_train`` and ``nc_test`` (nodes used) and ``nc_coverage``
    (share of labelled train and test nodes that have a vector; the others are left out).
    """

    name = "node_classification"
    Config = NodeClassificationConfig

    def evaluate(self, store: StoreView, version: "VersionInfo",
                 config: NodeClassificationConfig) -> dict[str, float]:
        from embstore.inputs import Inputs, InputSpec

        table = Inputs([InputSpec("table", config.path)]).table()
        needed = [config.id_column, config.label_column] + ([config.split_column] if config.split_column else [])
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise InputError(f"{config.path}: no column(s) {missing}; columns found: {list(table.columns)} "
                             "(set id_column, label_column, split_column)")
        table = table[table[config.label_column].notna()]
        if config.split_column:
            split = table[config.split_column].astype(str)
            train, test = table[split == config.train], table[split == config.test]
        else:
            rng = np.random.default_rng(config.seed)
            is_test = rng.random(len(table)) < config.test_fraction
            train, test = table[~is_test], table[is_test]
        if train.empty or test.empty:
            raise ConfigError(f"{config.path}: {len(train)} training and {len(test)} test nodes; both must be non-empty "
                              f"(split values {config.train!r} / {config.test!r} in column {config.split_column!r})")

        def vectors(frame):
            ids = typed_ids(version.id_type, frame[config.id_column].tolist())
            got = store.vectors(version.ref, ids, allow_missing=True)
            missing_ids = set(map(repr, got.missing))
            labels = [lab for i, lab in zip(ids, frame[config.label_column].tolist()) if repr(i) not in missing_ids]
            x = np.asarray(got.matrix, dtype=np.float64)
            if config.normalize:
                x = unit_rows(x)
            return x, [str(lab) for lab in labels]

        x_train, y_train = vectors(train)
        x_test, y_test = vectors(test)
        if not y_train or not y_test:
            raise ConfigError(f"none of the {'training' if not y_train else 'test'} nodes of {config.path} "
                              f"has a vector in {version.ref} (do the ids match?)")
        classes = sorted(set(y_train))
        code = {c: i for i, c in enumerate(classes)}
        w = fit_logistic_regression(x_train, np.array([code[c] for c in y_train]), len(classes), config.C, config.max_iter)
        pred = np.argmax(np.hstack([x_test, np.ones((len(x_test), 1))]) @ w, axis=1)
        predicted = [classes[i] for i in pred]
        truth = np.array(y_test, dtype=object)
        guess = np.array(predicted, dtype=object)
        f1s = []
        for c in sorted(set(y_test) | set(predicted)):
            tp = float(np.sum((guess == c) & (truth == c)))
            fp = float(np.sum((guess == c) & (truth != c)))
            fn = float(np.sum((guess != c) & (truth == c)))
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return {
            "accuracy": float(np.mean(truth == guess)),
            "macro_f1": float(np.mean(f1s)),
            "nc_train": float(len(y_train)),
            "nc_test": float(len(y_test)),
            "nc_coverage": (len(y_train) + len(y_test)) / (len(train) + len(test)),
        }


# -- drift against the current alias -----------------------------------------


class DriftConfig(PluginConfig):
    alias: str = Field("prod", description="compare with the version this alias of the same set names now")
    k: int = Field(10, ge=1, description="neighbour list length for the overlap")
    sample: int = Field(1000, ge=1, description="shared ids whose neighbour lists are compared")
    seed: int = Field(0, description="seed of the sample")


class Drift(Evaluator):
    """Drift against what an alias serves now (embstore.versions.drift.drift_report; the full report is
    also stored in this version's ``drift`` metrics).

    Metrics: ``drift_mean_cosine`` (shared ids, after rotation; absent when the dimension changed,
    with ``drift_dim_changed`` = 1), ``drift_overlap@K``, ``drift_ids_added``, ``drift_ids_removed``,
    ``drift_shared_ids``. All None (gates pass, "not applicable") when the alias does not exist yet
    or already names this version.
    """

    name = "drift"
    Config = DriftConfig

    def evaluate(self, store: StoreView, version: "VersionInfo", config: DriftConfig) -> dict[str, Any]:
        overlap_key = f"drift_overlap@{config.k}"
        keys = ("drift_mean_cosine", overlap_key, "drift_ids_added", "drift_ids_removed", "drift_shared_ids")
        try:
            current = store.resolve(f"{version.set}@{config.alias}")
        except NotFoundError:
            return dict.fromkeys(keys)
        if current.ref == version.ref:
            return dict.fromkeys(keys)
        report = store.diff(current.ref, version.ref, k=config.k, sample=config.sample, seed=config.seed)
        few = report["shared_ids"] < 2  # nothing left in common: as far from the alias as it gets
        out: dict[str, Any] = {
            overlap_key: 0.0 if few else report["neighbour_overlap"],
            "drift_ids_added": report["ids_added"],
            "drift_ids_removed": report["ids_removed"],
            "drift_shared_ids": report["shared_ids"],
        }
        if report["dims"][0] != report["dims"][1]:
            out["drift_dim_changed"] = 1.0
        else:
            out["drift_mean_cosine"] = 0.0 if few else report["mean_cosine"]
        return out


@hookimpl
def register_evaluators(register):
    register(HitRate)
    register(NodeClassification)
    register(Drift)
