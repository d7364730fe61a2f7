"""Sequences of item codes held compactly: one int32 array plus offsets (CSR layout).

Used for user histories (item2vec) and random walks (DeepWalk, node2vec) alike,
so millions of sequences cost 4 bytes a token instead of a Python list each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class Sequences:
    """``vocab[c]`` is the id of code ``c``; sequence i is ``codes[offsets[i]:offsets[i+1]]``."""

    vocab: np.ndarray  # normalized ids (int64, or object array of str)
    codes: np.ndarray  # int32, all sequences concatenated
    offsets: np.ndarray  # int64, len == number of sequences + 1, offsets[0] == 0

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __iter__(self) -> Iterator[np.ndarray]:
        codes, offsets = self.codes, self.offsets
        for i in range(len(self)):
            yield codes[offsets[i] : offsets[i + 1]]

    def __getitem__(self, i: int) -> np.ndarray:
        return self.codes[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_tokens(self) -> int:
        return int(self.codes.shape[0])

    @classmethod
    def from_lists(cls, vocab: np.ndarray, seqs: list) -> "Sequences":
        """Build from a list of code lists/arrays (tests and small inputs)."""
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        codes = (
            np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs])
            if seqs
            else np.zeros(0, dtype=np.int32)
        )
        return cls(vocab=vocab, codes=codes, offsets=offsets)
