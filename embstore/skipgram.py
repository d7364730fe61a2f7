"""The one skip-gram trainer: item2vec, DeepWalk and node2vec all end here.

Skip-gram with negative sampling (gensim's ``Word2Vec``, ``sg=1, hs=0``) over
``Sequences`` of item codes: user histories for item2vec, random walks for the
graph producers. Usage::

    from embstore.sequences import Sequences
    from embstore.skipgram import SkipGramConfig, train_skipgram

    seqs = Sequences.from_lists(np.array([10, 20, 30]), [[0, 1, 2], [2, 1]])
    codes, vectors, metrics = train_skipgram(seqs, SkipGramConfig(dim=16, seed=7))
    ids = seqs.vocab[codes]          # vectors[i] belongs to ids[i]

Tokens are fed to gensim as Python ints (gensim keys its vocabulary by any
hashable), streamed sequence by sequence from the compact CSR arrays, so the
corpus is never held as a list of lists. The vocabulary is counted with numpy
and handed over with ``build_vocab_from_freq``: no Python pass over the corpus
before training.

Determinism: with ``workers=1`` the same sequences, config and seed give the
same vectors bit for bit, in any process (the vectors are seeded from ``seed``
and the hash function gensim is given is stable, not Python's per-process
salted ``hash``). With ``workers > 1`` gensim's threads race on the shared
weights (Hogwild), so results vary from run to run.
"""

from __future__ import annotations

import logging
import time
import zlib
from typing import Annotated, Any, Iterator, Literal

import numpy as np
import pydantic
from pydantic import Field

from embstore.config import PluginConfig
from embstore.errors import InputError
from embstore.progress import new_bar, wanted
from embstore.sequences import Sequences

logger = logging.getLogger(__name__)

# gensim's Cython loop silently truncates a job at 10,000 words, so longer
# sequences are fed as consecutive pieces of at most this many tokens.
MAX_SEQUENCE_TOKENS = 10_000


class SkipGramConfig(PluginConfig):
    """Skip-gram with negative sampling. Every field has a default; unknown keys are errors."""

    dim: int = Field(64, ge=1, description="Vector dimension.")
    window: Annotated[int, Field(ge=1)] | Literal["all"] = Field(
        5,
        description=(
            "Context size: items up to this many positions before and after count as context "
            "(gensim samples an effective window in 1..window per token). 'all' uses the whole "
            "sequence as context with no shrinking, as the item2vec paper proposes; cost grows "
            "with the square of the sequence length."
        ),
    )
    negative: int = Field(5, ge=1, description="Negative samples drawn per positive pair.")
    ns_exponent: float = Field(
        0.75,
        allow_inf_nan=False,
        description="Exponent shaping the negative-sampling distribution (count**ns_exponent); "
        "1.0 samples by frequency, 0.0 uniformly, negative values favour rare items.",
    )
    epochs: int = Field(5, ge=1, description="Passes over the sequences.")
    min_count: int = Field(
        1, ge=1, description="Items seen fewer times than this get no vector."
    )
    learning_rate: float = Field(
        0.025, gt=0, allow_inf_nan=False, description="Initial learning rate (gensim alpha)."
    )
    min_learning_rate: float = Field(
        0.0001,
        ge=0,
        allow_inf_nan=False,
        description="Learning rate reached at the end of training, decayed linearly (gensim min_alpha).",
    )
    sample: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Downsampling threshold for frequent items (e.g. 1e-3); 0 turns it off.",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed for initial vectors and sampling.")
    workers: int = Field(
        1,
        ge=1,
        description="Training threads. Results are reproducible only with workers=1.",
    )

    @pydantic.model_validator(mode="after")
    def _learning_rates_ordered(self) -> "SkipGramConfig":
        if self.min_learning_rate > self.learning_rate:
            raise ValueError(
                f"min_learning_rate ({self.min_learning_rate}) must not exceed "
                f"learning_rate ({self.learning_rate})"
            )
        return self


def stable_hash(value: Any) -> int:
    """A hash that is the same in every process (gensim's ``hashfxn``; Python's ``hash`` is salted)."""
    return zlib.crc32(str(value).encode("utf-8"))


class _CodeCorpus:
    """Re-iterable corpus over chosen sequences, yielding each as a list of Python int codes."""

    def __init__(self, sequences: Sequences, which: np.ndarray, max_len: int = MAX_SEQUENCE_TOKENS):
        self.codes = sequences.codes
        self.offsets = sequences.offsets
        self.which = which
        self.max_len = max_len

    def __iter__(self) -> Iterator[list[int]]:
        codes, offsets, max_len = self.codes, self.offsets, self.max_len
        for i in self.which:
            start, end = int(offsets[i]), int(offsets[i + 1])
            if end - start <= max_len:
                yield codes[start:end].tolist()
            else:
                for s in range(start, end, max_len):
                    yield codes[s : min(s + max_len, end)].tolist()

    def count_pieces(self) -> int:
        lengths = self.offsets[self.which + 1] - self.offsets[self.which]
        return int((-(-lengths // self.max_len)).sum())


def _progress_callback(epochs: int, progress: bool | None):
    """A gensim callback: a bar over epochs on stderr, and the loss of each epoch."""
    from gensim.models.callbacks import CallbackAny2Vec

    class EpochProgress(CallbackAny2Vec):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.bar = new_bar(epochs, "skip-gram", unit="epoch", enabled=wanted(progress))

        def on_epoch_begin(self, model) -> None:
            # gensim accumulates loss in float32 over the whole train() call, which
            # saturates on big corpora; reset per epoch so each value is that epoch's loss.
            model.running_training_loss = 0.0

        def on_epoch_end(self, model) -> None:
            loss = float(model.get_latest_training_loss())
            self.losses.append(loss)
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            self.bar.update(1)

        def close(self) -> None:
            self.bar.close()

    return EpochProgress()


def train_skipgram(
    sequences: Sequences, config: SkipGramConfig, progress: bool | None = True
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Train skip-gram vectors for the items of ``sequences``.

    Returns ``(codes, vectors, metrics)``: ``codes`` (int64, ascending) index
    ``sequences.vocab`` and are the items that got a vector (seen at least
    ``min_count`` times in sequences of two or more items); ``vectors`` is
    float32 ``(len(codes), dim)``; ``metrics`` is JSON-able (per-epoch losses,
    vocabulary size, tokens, seconds, words/s).

    ``progress``: True draws a bar over epochs on stderr (with each epoch's loss),
    False is silent, None draws it only when stderr is a terminal.

    Sequences of one item carry no context and are skipped. Raises InputError
    when nothing is left to train on.
    """
    from gensim.models import Word2Vec

    lengths = sequences.lengths
    which = np.flatnonzero(lengths >= 2)
    if which.size == 0:
        raise InputError(
            f"nothing to train on: none of the {len(sequences)} sequences has 2 or more items"
        )
    n_vocab = int(sequences.vocab.shape[0])
    if which.size == len(sequences):
        used = sequences.codes
    else:
        used = sequences.codes[np.repeat(lengths >= 2, lengths)]
    counts = np.bincount(used, minlength=n_vocab)
    if counts.shape[0] > n_vocab:
        raise InputError(
            f"sequences use item code {counts.shape[0] - 1}, but the vocabulary has only {n_vocab} items"
        )
    present = np.flatnonzero(counts)
    if not (counts[present] >= config.min_count).any():
        raise InputError(
            f"nothing to train on: every one of the {present.size} items occurs fewer than "
            f"min_count={config.min_count} times; lower min_count"
        )

    corpus = _CodeCorpus(sequences, which)
    n_tokens = int(used.shape[0])
    longest = int(min(lengths[which].max(), MAX_SEQUENCE_TOKENS))
    whole = config.window == "all"
    window = max(longest - 1, 1) if whole else int(config.window)

    model = Word2Vec(
        vector_size=config.dim,
        window=window,
        shrink_windows=not whole,
        min_count=config.min_count,
        sg=1,
        hs=0,
        negative=config.negative,
        ns_exponent=config.ns_exponent,
        alpha=config.learning_rate,
        min_alpha=config.min_learning_rate,
        sample=config.sample,
        seed=config.seed,
        workers=config.workers,
        epochs=config.epochs,
        hashfxn=stable_hash,
        compute_loss=True,
        sorted_vocab=1,
    )
    model.build_vocab_from_freq(
        {int(c): int(counts[c]) for c in present}, corpus_count=corpus.count_pieces()
    )
    callback = _progress_callback(config.epochs, progress)
    t0 = time.perf_counter()
    try:
        trained, raw = model.train(
            corpus,
            total_words=n_tokens,
            epochs=config.epochs,
            compute_loss=True,
            callbacks=[callback],
        )
    finally:
        callback.close()
    seconds = time.perf_counter() - t0

    keys = np.asarray(model.wv.index_to_key, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    codes_kept = keys[order]
    vectors = np.ascontiguousarray(model.wv.vectors[order], dtype=np.float32)
    metrics: dict[str, Any] = {
        "epoch_losses": [round(x, 6) for x in callback.losses],
        "final_loss": callback.losses[-1] if callback.losses else None,
        "vocab_size": int(codes_kept.shape[0]),
        "items_below_min_count": int(present.size - codes_kept.shape[0]),
        "sequences": int(which.size),
        "sequences_skipped_short": int(len(sequences) - which.size),
        "tokens_per_epoch": n_tokens,
        "tokens_trained": int(trained),
        "window": window,
        "train_seconds": round(seconds, 3),
        "words_per_second": round(trained / seconds, 1) if seconds > 0 else None,
    }
    logger.info(
        "skip-gram: %d items, %d tokens x %d epochs in %.1fs (%.0f words/s), last epoch loss %.4g",
        metrics["vocab_size"], n_tokens, config.epochs, seconds,
        metrics["words_per_second"] or 0.0, metrics["final_loss"] or 0.0,
    )
    return codes_kept, vectors, metrics


def rare_items_policy(seen: int, with_vector: int, key: str, threshold: int) -> dict:
    """What a version's metrics say about rare items: how many items the input had, how many got a
    vector, how many were left out and below which count (the same keys for every interaction producer)."""
    return {"items_seen": seen, "items_with_vector": with_vector, "items_left_out": seen - with_vector,
            key: threshold,
            "rare_items": f"left out: items with fewer than {key}={threshold} interactions get no vector "
                          "(no join row, not recalled)"}
