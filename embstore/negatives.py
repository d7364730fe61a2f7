"""Negative sampling for implicit feedback: items a user has not interacted with.

One sampler for every producer that trains on positives only (FM today; any
two-tower or graph producer that needs random "not this" examples). Usage::

    from embstore.negatives import NegativeSampler

    sampler = NegativeSampler(n_items, user_codes, item_codes, exponent=0.0)
    rng = np.random.default_rng(seed)
    neg = sampler.sample(batch_users, k=4, rng=rng)   # (len(batch_users), 4) item codes

Items are drawn with probability proportional to ``count ** exponent`` (0:
uniform over items, 1: by popularity, 0.75: word2vec's smoothing), where
``count`` is how often the item occurs in the given interactions; the weighted
draw itself is ``embstore.sampling.UnigramTable``, shared with the graph
producers, and this module adds what implicit feedback needs on top: per-user
exclusion of seen items and a candidate pool. Draws that
hit an item the user has interacted with are redrawn; after a few rounds the
few rows still colliding (users who have seen most items) are drawn exactly
from their complement, so a returned negative is never a seen item.

Deterministic: the same interactions, arguments and ``rng`` state give the
same draws.
"""

from __future__ import annotations

import numpy as np

from embstore.errors import InputError
from embstore.sampling import UnigramTable

_ROUNDS = 8


class NegativeSampler:
    """Draws unseen items for users; ``user_codes``/``item_codes`` are 0-based int codes.

    ``candidates`` restricts the draws to those item codes (e.g. items that occur in
    training, leaving cold catalogue items alone); default all of ``0..n_items-1``.
    """

    def __init__(self, n_items: int, user_codes: np.ndarray, item_codes: np.ndarray,
                 exponent: float = 0.0, candidates: np.ndarray | None = None) -> None:
        user_codes = np.asarray(user_codes, dtype=np.int64)
        item_codes = np.asarray(item_codes, dtype=np.int64)
        if user_codes.shape != item_codes.shape or user_codes.ndim != 1:
            raise ValueError("user_codes and item_codes must be 1-D arrays of one length")
        if item_codes.size and (item_codes.min() < 0 or item_codes.max() >= n_items):
            raise ValueError(f"item codes must lie in [0, {n_items})")
        self.n_items = int(n_items)
        pool = np.arange(self.n_items, dtype=np.int64) if candidates is None else \
            np.unique(np.asarray(candidates, dtype=np.int64))
        if pool.size and (pool[0] < 0 or pool[-1] >= n_items):
            raise ValueError(f"candidate item codes must lie in [0, {n_items})")
        if pool.size < 2:
            raise InputError(f"negative sampling needs at least 2 candidate items, got {pool.size}")
        self._pool = pool
        self._seen = np.unique(user_codes * self.n_items + item_codes)
        in_pool = np.isin(self._seen % self.n_items, pool)
        seen_users, per_user = np.unique(self._seen[in_pool] // self.n_items, return_counts=True)
        full = seen_users[per_user >= pool.size]
        if full.size:
            raise InputError(
                f"user code {int(full[0])} has interacted with all {pool.size} candidate items; "
                "there is no item left to sample as a negative"
            )
        if exponent == 0.0:
            weights = np.zeros(self.n_items)
            weights[pool] = 1.0
        else:
            counts = np.bincount(item_codes, minlength=self.n_items).astype(np.float64)
            weights = np.zeros(self.n_items)
            weights[pool] = counts[pool] ** exponent
            if not weights.sum() > 0:
                raise InputError("no candidate item has a positive sampling weight (none occurs)")
        self._weights = weights
        self._table = UnigramTable(weights, exponent=1.0)  # the shared weighted draw

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._table.sample(n, rng)

    def is_seen(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean mask: did ``users[j]`` interact with ``items[j]``."""
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        if self._seen.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = np.searchsorted(self._seen, keys)
        pos = np.minimum(pos, self._seen.shape[0] - 1)
        return self._seen[pos] == keys

    def sample(self, users: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """``k`` unseen item codes for each of ``users``: int64 array of shape (len(users), k)."""
        users = np.repeat(np.asarray(users, dtype=np.int64), k)
        items = self._draw(users.shape[0], rng)
        bad = np.flatnonzero(self.is_seen(users, items))
        for _ in range(_ROUNDS):
            if bad.size == 0:
                break
            items[bad] = self._draw(bad.size, rng)
            bad = bad[self.is_seen(users[bad], items[bad])]
        for j in bad:  # rare: users who have seen most items; draw from the exact complement
            u = users[j]
            lo, hi = np.searchsorted(self._seen, [u * self.n_items, (u + 1) * self.n_items])
            allowed = self._pool[~np.isin(self._pool, self._seen[lo:hi] - u * self.n_items)]
            w = self._weights[allowed]
            if not w.sum() > 0:  # only zero-weight items left: fall back to uniform
                w = np.ones(allowed.size)
            items[j] = allowed[rng.choice(allowed.size, p=w / w.sum())]
        return items.reshape(-1, k)
