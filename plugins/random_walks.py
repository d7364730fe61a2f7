"""DeepWalk and node2vec: random walks on a graph, then the shared skip-gram trainer.

The graph comes from interactions (an item graph: edge A→B each time a user moves
from A to B, weights accumulating) or from an edge list. Walks come from the one
walk engine (embstore.walks) and stay int32 arrays end to end, so a graph of 1M
nodes and 10M edges fits this machine.

    embstore run node2vec --set items_n2v --input interactions=ratings.csv --config p=0.25 --config q=4
    embstore run deepwalk --set cora_dw --input edges=cora/edges.csv --entity node_id
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from embstore.embeddings import Embeddings
from embstore.errors import InputError
from embstore.graph import build_graph
from embstore.hookspecs import hookimpl
from embstore.options import BiasOptions, GraphOptions, WalkOptions
from embstore.producer import Producer
from embstore.skipgram import SkipGramConfig, train_skipgram
from embstore.walks import random_walks


class DeepWalkConfig(GraphOptions, WalkOptions, SkipGramConfig):
    """The skip-gram options of embstore.skipgram, then the walk and graph options of embstore.options."""


class Node2VecConfig(BiasOptions, DeepWalkConfig):
    """DeepWalk's options, then node2vec's p and q."""


class _WalkProducer(Producer):
    accepts = frozenset({"interactions", "edges"})
    entity = "item_id"
    conformance_config: ClassVar[dict] = {"walk_length": 10, "walks_per_node": 4, "epochs": 1, "dim": 16}

    def fit(self, inputs: Any, config: DeepWalkConfig, progress: bool | None = None) -> Embeddings:
        """Walk the graph of edges or interactions, then train skip-gram on the walks; ``progress``
        None draws bars only when stderr is a terminal."""
        t0 = time.perf_counter()
        graph = build_graph(inputs, config, self.name)
        if graph.n_edges == 0:
            raise InputError(f"producer {self.name!r}: the graph has no edges, so there is nothing to walk")
        t1 = time.perf_counter()
        walks = random_walks(graph, config.walk_config(seed=config.seed), progress=progress)
        t2 = time.perf_counter()
        codes, vectors, metrics = train_skipgram(walks, config, progress=progress)
        metrics.update(
            nodes=graph.n_nodes, edges=graph.n_edges, directed=graph.directed, walks=len(walks),
            walk_steps=walks.n_tokens, graph_seconds=round(t1 - t0, 3), walk_seconds=round(t2 - t1, 3),
            nodes_without_vector=int(graph.n_nodes - len(codes)),
        )
        return Embeddings(ids=graph.ids[codes], vectors=vectors, metadata=metrics)


class DeepWalk(_WalkProducer):
    """Uniform or weighted first-order random walks, then skip-gram (Perozzi et al., 2014)."""

    name = "deepwalk"
    Config = DeepWalkConfig


class Node2Vec(_WalkProducer):
    """Second-order walks biased by p and q, then skip-gram (Grover and Leskovec, 2016)."""

    name = "node2vec"
    Config = Node2VecConfig


@hookimpl
def register_producers(register) -> None:
    register(DeepWalk)
    register(Node2Vec)
