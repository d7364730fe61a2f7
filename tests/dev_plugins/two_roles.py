"""A development plugin loaded through EMBSTORE_PLUGINS: users and items in one space."""

import numpy as np

from embstore.config import PluginConfig
from embstore.embeddings import Embeddings
from embstore.hookspecs import hookimpl
from embstore.producer import Producer

__version__ = "0.0.1"


class TwoRolesConfig(PluginConfig):
    dim: int = 4
    seed: int = 0


class TwoRoles(Producer):
    name = "two_roles"
    Config = TwoRolesConfig
    requires = frozenset({"interactions"})
    entities = {"user": "user_id", "item": "item_id"}

    def fit(self, inputs, config):
        frame = inputs.interactions()
        rng = np.random.default_rng(config.seed)
        users = np.unique(frame["user_id"].to_numpy())
        items = np.unique(frame["item_id"].to_numpy())
        return {
            "user": Embeddings(users, rng.normal(size=(len(users), config.dim)).astype(np.float32)),
            "item": Embeddings(items, rng.normal(size=(len(items), config.dim)).astype(np.float32)),
        }


@hookimpl
def register_producers(register):
    register(TwoRoles)
