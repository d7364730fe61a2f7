"""item2vec: skip-gram with negative sampling over each user's item history.

Items consumed by the same users, close together in time, end up close in the
vector space (Barkan & Koenigstein, 2016: word2vec with items for words and a
user's history, or a session, for a sentence). Training is the shared
``embstore.skipgram`` trainer; this plugin only turns interactions into
sequences.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import Field

from embstore.embeddings import Embeddings
from embstore.errors import InputError
from embstore.hookspecs import hookimpl
from embstore.producer import Producer
from embstore.skipgram import SkipGramConfig, rare_items_policy, train_skipgram

if TYPE_CHECKING:
    from embstore.inputs import Inputs
    from embstore.sequences import Sequences


EPOCH_BUDGET = 7_400_000  # trained interactions: 120 passes over MovieLens latest-small (ratings >= 3.5)
EPOCHS_AUTO_RANGE = (5, 120)


def resolved_epochs(config: "Item2VecConfig", interactions: int) -> tuple["Item2VecConfig", str]:
    """``config`` with ``epochs: auto`` replaced by the passes the budget gives ``interactions``
    (both engines call it), and how the count was chosen."""
    if config.epochs != "auto":
        return config, "given"
    low, high = EPOCHS_AUTO_RANGE
    epochs = int(min(high, max(low, round(EPOCH_BUDGET / max(1, interactions)))))
    return config.model_copy(update={"epochs": epochs}), f"auto: {EPOCH_BUDGET:,} / {interactions:,} interactions in [{low}, {high}]"


class Item2VecConfig(SkipGramConfig):
    """Skip-gram options plus how interactions become sequences.

    Default ``window`` is 20 (the shared trainer's is 5), not the paper's
    whole-history context (``window: all``). Measured on MovieLens
    latest-small (610 users, 100,836 ratings, longest history 2,698; 64-d,
    5 epochs, 1 worker), with mean genre overlap (Jaccard) of each movie's
    top-10 neighbours (movies with >= 20 ratings; random neighbours: 0.165):

        window   5: 2.7 s, 0.227      window 20:  5.7 s, 0.340
        window  10: 3.9 s, 0.270      window 50: 13.8 s, 0.369
        window all: 164 s, 0.303  (cost grows with the square of history length)

    20 buys most of the gain of a wide context at about twice the cost of 5.
    ``all`` suits short baskets or sessions (set ``session_gap``), where it is
    cheap and order inside a basket means nothing.

    Rare items (``min_count`` 10, was 1) and ``epochs`` (10, was 5), chosen on
    recall: MovieLens latest-small split into two disjoint halves of users
    (odd ids: tuning, even ids: checking; each trained and scored on its own),
    ratings >= 3.5, the last item of each user held out, the user vector the
    mean of the last 5 training items, seen items excluded, HR@10 on the
    tuning half / the checking half (``bench/bench_quality.py sweep item2vec``;
    280 users each, so a hit is 0.0036 and seeds move a figure by ~0.01;
    popularity 0.046 / 0.036, item-kNN 0.054 / 0.093; "recallable": the share
    of held-out items that have a vector at all)::

        min_count  1, 5 epochs: 0.029-0.039 / 0.039  recallable 1.00 / 1.00
        min_count  5, 5 epochs: 0.050-0.061 / 0.054-0.061         0.73 / 0.79
        min_count 10, 5 epochs: 0.050-0.054 / 0.061-0.071         0.59 / 0.65
        min_count 20, 5 epochs: 0.043-0.050 / 0.071-0.079         0.38 / 0.45
        min_count 10, 10 epochs: 0.061-0.064 / 0.068-0.082        0.59 / 0.65
        min_count 10, 20 epochs: 0.061-0.068 / 0.075-0.079        0.59 / 0.65

    Items seen once or twice get vectors from a handful of updates, and among
    thousands of such noisy vectors some always lie close to any user's mean:
    with every item kept they fill the top 10 and HR@10 falls below popularity.
    Folding them in from their neighbours instead (the mean of the vectors of
    the items around them in histories) was worse still (0.025-0.029 / 0.021
    -0.025): a mean of neighbours lies near every user's mean. So they are left
    out, and the version's metrics say how many (``items_seen``,
    ``items_with_vector``, ``items_left_out``, ``min_count``).

    ``ns_exponent`` (-0.5, was 0.75) and ``epochs`` (120, was 10), as
    Caselles-Dupre et al. (2018, "Word2vec applied to recommendation:
    hyperparameters matter") found for recommendation data, chosen by the mean
    tuning-half HR@10 over seeds 0, 1, 2 (same protocol; item-kNN over the last
    5 items is 0.054 / 0.093)::

        ns_exponent -0.5, 120 epochs: 0.082 0.075 0.082 / 0.104 0.096 0.107
        ns_exponent -0.5,  60 epochs: 0.082 0.075 0.071 / 0.096 0.086 0.104
        ns_exponent  0,   120 epochs: 0.061 0.068 0.071 / 0.100 0.111 0.093
        ns_exponent  0.75,120 epochs: 0.075 0.057 0.071 / 0.096 0.104 0.093
        ns_exponent -0.5, 10 epochs (seeds 0, 1): 0.068 0.071 / 0.082 0.082
        min_count 5, ns -0.5, 120 epochs: 0.075 0.068 0.071 / 0.107 0.096 0.111
                                          (recallable 0.73 / 0.79)

    120 epochs cost twice 60 for a small gain on the tuning half (and 12 times
    the old 10: ~45 s per half of MovieLens latest-small on one core). Passes
    matter on small data, where each item is seen rarely, and cost hours on a
    lake's logs, so ``epochs: auto`` keeps the measured budget instead of the
    count: ``EPOCH_BUDGET`` (120 passes over MovieLens latest-small's 61,716
    interactions rated >= 3.5, about 7.4M) divided by the interactions, between
    5 and 120 passes (120 on both halves and all of MovieLens; 5 from 1.5M
    interactions on). The version's metrics say which count was used
    (``epochs``, ``epochs_rule``). At 60 epochs and ns_exponent -0.5 (seeds 0, 1),
    window 5 or 50, sample 1e-4 or 1e-3, negative 15, dim 32 or 128 and
    learning_rate 0.01 or 0.05 (3 seeds) were no better on the tuning half.
    """

    epochs: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Passes over the sequences; 'auto' (the default) gives 120 passes up to about 62,000 "
        "interactions (MovieLens latest-small, where 120 was measured) and fewer on more, keeping about "
        "7.5M trained interactions in all, at least 5 passes (gensim's default): see the class docstring.",
    )
    ns_exponent: float = Field(
        -0.5,
        allow_inf_nan=False,
        description="Exponent shaping the negative-sampling distribution (count**ns_exponent); 1.0 samples "
        "by frequency, 0.0 uniformly, negative values favour rare items (-0.5 here, the shared trainer's "
        "0.75 is word2vec's; see the class docstring).",
    )
    min_count: int = Field(
        10, ge=1, description="Rare items: an item with fewer interactions than this (after min_rating) gets no "
        "vector, so it is neither joined nor recalled (10 here, see the class docstring); 1 keeps every item.")
    window: Annotated[int, Field(ge=1)] | Literal["all"] = Field(
        20,
        description=(
            "Context size: items up to this many positions before and after in a history count as "
            "context (gensim samples an effective window in 1..window per item). 'all' uses the "
            "whole history or session, as the item2vec paper proposes; cost grows with the square "
            "of its length."
        ),
    )
    min_rating: float | None = Field(
        None,
        allow_inf_nan=False,
        description="Drop interactions rated below this before building sequences; null keeps all.",
    )
    session_gap: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Split a user's history where two interactions are more than this many seconds "
        "apart; each session becomes its own sequence. Null keeps one sequence per user.",
    )


class Item2Vec(Producer):
    """Item vectors from co-occurrence in user histories (item2vec).

    Deterministic for a fixed ``seed`` with ``workers: 1``; with more workers
    gensim's threads update shared weights in parallel and results vary.
    """

    name = "item2vec"
    Config = Item2VecConfig
    requires = frozenset({"interactions"})
    entity = "item_id"

    def fit(
        self, inputs: "Inputs", config: Item2VecConfig, progress: bool | None = None
    ) -> Embeddings:
        """Train on ``inputs.sequences(...)``; ``progress`` None shows a bar only on a terminal."""
        sequences = inputs.sequences(min_rating=config.min_rating, session_gap=config.session_gap)
        if len(sequences) == 0 or not (sequences.lengths >= 2).any():
            filters = [
                f"{k}={v}"
                for k, v in (("min_rating", config.min_rating), ("session_gap", config.session_gap))
                if v is not None
            ]
            after = f" after {', '.join(filters)}" if filters else ""
            raise InputError(
                f"item2vec has nothing to train on: no user has 2 or more interactions{after} "
                f"({len(sequences)} sequences, {sequences.n_tokens} interactions)"
            )
        return train_item2vec(sequences, config, progress)


def train_item2vec(sequences: "Sequences", config: Item2VecConfig, progress: bool | None = None) -> Embeddings:
    """Skip-gram on per-user sequences, ``epochs: auto`` resolved, rare items reported: what both
    engines run (the spark engine on sequences it built and collected on the driver)."""
    config, rule = resolved_epochs(config, int(sequences.n_tokens))
    codes, vectors, metrics = train_skipgram(sequences, config, progress=progress)
    metrics.update(epochs=config.epochs, epochs_rule=rule)
    seen = int(np.count_nonzero(np.bincount(sequences.codes, minlength=sequences.vocab.shape[0])))
    metrics.update(rare_items_policy(seen, int(codes.shape[0]), "min_count", config.min_count))
    return Embeddings(ids=sequences.vocab[codes], vectors=vectors, metadata=metrics)


@hookimpl
def register_producers(register) -> None:
    register(Item2Vec)
