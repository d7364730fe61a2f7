"""A development producer that can infer: an item is the mean of its categories' random vectors."""

import numpy as np

from embstore.config import PluginConfig
from embstore.embeddings import Embeddings
from embstore.hookspecs import hookimpl
from embstore.inputs import split_multi
from embstore.producer import Producer


class SideMeanConfig(PluginConfig):
    dim: int = 8
    seed: int = 0
    column: str = "genre"


def _embed(frame, table, config):
    cells = split_multi(frame[config.column])
    return np.stack([np.mean([table[c] for c in cats if c in table] or [np.zeros(config.dim)], axis=0)
                     for cats in cells]).astype(np.float32)


class SideMean(Producer):
    name = "side_mean"
    Config = SideMeanConfig
    requires = frozenset({"side_info"})

    def fit(self, inputs, config):
        frame = inputs.side_info()
        rng = np.random.default_rng(config.seed)
        cats = sorted({c for cell in split_multi(frame[config.column]) for c in cell})
        table = {c: rng.normal(size=config.dim) for c in cats}
        return Embeddings(frame["item_id"].to_numpy(), _embed(frame, table, config), state={"table": table})

    def infer(self, state, inputs, config):
        frame = inputs.side_info()
        return Embeddings(frame["item_id"].to_numpy(), _embed(frame, state["table"], config))


@hookimpl
def register_producers(register):
    register(SideMean)
