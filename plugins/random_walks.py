"""DeepWalk and node2vec: random walks on a graph, then the shared skip-gram trainer.

The graph comes from interactions (an item graph: edge A→B each time a user moves
from A to B, weights accumulating) or from an edge list. Walks come from the one
walk engine (embstore.walks) and stay int32 arrays end to end, so a graph of 1M
nodes and 10M edges fits this machine.

    embstore run node2vec --set items_n2v --input interactions=ratings.csv --config p=0.25 --config q=4
    embstore run deepwalk --set cora_dw --input edges=cora/edges.csv --entity node_id
"""

from __future__ import annotations

import sys
import time
from typing import Any, ClassVar

from pydantic import Field

from embstore.embeddings import Embeddings
from embstore.errors import InputError
from embstore.graph import build_graph
from embstore.hookspecs import hookimpl
from embstore.producer import Producer
from embstore.skipgram import SkipGramConfig, train_skipgram
from embstore.walks import WalkConfig, random_walks


class DeepWalkConfig(SkipGramConfig):
    """Walk options, graph options, then the skip-gram options of embstore.skipgram."""

    walk_length: int = Field(80, ge=1, description="nodes per walk (a dead end ends a walk early)")
    walks_per_node: int = Field(10, ge=1, description="walks started per node (on average with start=degree)")
    start: str = Field("uniform", pattern="^(uniform|degree)$",
                       description="uniform: every node starts walks_per_node walks; degree: starts drawn by weighted degree")
    weighted: bool = Field(True, description="follow edges in proportion to their weights")
    walk_workers: int | None = Field(None, ge=1, description="threads for walking (None: all cores); walks do not depend on it")
    directed: bool | None = Field(
        None, description="treat the graph as directed; default: directed for interactions, undirected for edges"
    )
    min_rating: float | None = Field(None, description="interactions: drop rows rated below this")
    session_gap: float | None = Field(None, gt=0, description="interactions: seconds of inactivity that split a user's history")
    self_loops: bool = Field(True, description="interactions: keep moves from an item to itself")


class Node2VecConfig(DeepWalkConfig):
    p: float = Field(1.0, gt=0, allow_inf_nan=False,
                     description="return parameter: weight 1/p for stepping back (small p: local, structural roles)")
    q: float = Field(1.0, gt=0, allow_inf_nan=False,
                     description="in-out parameter: weight 1/q for moving away (small q: outward, communities)")


class _WalkProducer(Producer):
    accepts = frozenset({"interactions", "edges"})
    entity = "item_id"
    conformance_config: ClassVar[dict] = {"walk_length": 10, "walks_per_node": 4, "epochs": 1, "dim": 16}

    def _walk_config(self, config: DeepWalkConfig) -> WalkConfig:
        return WalkConfig(
            walk_length=config.walk_length, walks_per_node=config.walks_per_node,
            p=getattr(config, "p", 1.0), q=getattr(config, "q", 1.0), start=config.start,
            weighted=config.weighted, seed=config.seed, workers=config.walk_workers,
        )

    def fit(self, inputs: Any, config: DeepWalkConfig, progress: bool | None = None) -> Embeddings:
        t0 = time.perf_counter()
        graph = build_graph(inputs, config, self.name)
        if graph.n_edges == 0:
            raise InputError(f"producer {self.name!r}: the graph has no edges, so there is nothing to walk")
        t1 = time.perf_counter()
        show = sys.stderr.isatty() if progress is None else progress
        walks = random_walks(graph, self._walk_config(config), progress=show)
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
