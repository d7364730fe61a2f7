"""A development producer for index tests at size: each item of side_info gets its planted cluster's
centre plus noise (clusters and noise drawn with the seed; distinct vectors, so no ties)."""

import numpy as np

from embstore.config import PluginConfig
from embstore.embeddings import Embeddings
from embstore.hookspecs import hookimpl
from embstore.producer import Producer


class PlantedConfig(PluginConfig):
    dim: int = 16
    clusters: int = 50
    noise: float = 0.3
    seed: int = 0


class Planted(Producer):
    name = "planted"
    Config = PlantedConfig
    requires = frozenset({"side_info"})

    def fit(self, inputs, config):
        ids = inputs.side_info()["item_id"].to_numpy()
        rng = np.random.default_rng(config.seed)
        centres = rng.normal(size=(config.clusters, config.dim))
        vectors = centres[rng.integers(0, config.clusters, len(ids))] + config.noise * rng.normal(size=(len(ids), config.dim))
        return Embeddings(ids, vectors.astype(np.float32))


@hookimpl
def register_producers(register):
    register(Planted)
