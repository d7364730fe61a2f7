"""Config options that several producers share, declared once: the graph, the walks, node2vec's bias.

A producer's config is composed from these mixins instead of re-declaring the
fields, so a key means the same thing, takes the same values and reads the same
description in every producer::

    from embstore.options import BiasOptions, GraphOptions, WalkLength, WalkOptions
    from embstore.skipgram import SkipGramConfig

    class MyWalkConfig(GraphOptions, BiasOptions, SkipGramConfig):
        walk_length: Annotated[WalkLength, Field(ge=2)] = 40   # another default, a tighter bound

    graph = build_graph(inputs, config, "my_walks")             # reads the GraphOptions
    walks = random_walks(graph, config.walk_config(seed=config.seed))

A subclass that needs a different default redeclares only the default (and, in an
``Annotated[...]``, any tighter bound); type, constraints and description come
from the shared ``Annotated`` types below. Fields appear in the order of the
bases read from right to left: ``class C(GraphOptions, WalkOptions, SkipGramConfig)``
lists the skip-gram options, then the walk options, then the graph options.

This module imports no engine: :class:`WalkConfig`, the walk engine's own options
(``embstore.walks``), is plain configuration and lives here so that
:meth:`WalkOptions.walk_config` can build it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from embstore.config import PluginConfig

# ---------------------------------------------------------------------- field types

WalkLength = Annotated[int, Field(ge=1, description="Nodes per walk, start included; a dead end ends a walk early.")]
WalksPerNode = Annotated[int, Field(
    ge=1, description="Walks started per node (on average with start=degree): a run makes n_nodes × "
    "walks_per_node walks.")]
WalkStart = Annotated[Literal["uniform", "degree"], Field(
    description="uniform: every node starts walks_per_node walks; degree: as many walks in total, starts "
    "drawn in proportion to (weighted) out-degree.")]
FollowWeights = Annotated[bool, Field(
    description="Follow edges in proportion to their weights; False treats all as 1.")]
WalkThreads = Annotated[int | None, Field(
    ge=1, description="Threads for walking; None uses every core. The walks do not depend on it.")]
ReturnParameter = Annotated[float, Field(
    gt=0, allow_inf_nan=False,
    description="node2vec return parameter: weight 1/p for stepping straight back; small p keeps walks "
    "local (BFS-like, structural roles).")]
InOutParameter = Annotated[float, Field(
    gt=0, allow_inf_nan=False,
    description="node2vec in-out parameter: weight 1/q for moving away from the previous node; small q "
    "sends walks outward (DFS-like, communities). p = q = 1 is DeepWalk.")]


# ---------------------------------------------------------------------- the walk engine's options


class WalkConfig(PluginConfig):
    """Options of the walk engine (:func:`embstore.walks.random_walks`).

    Producers do not declare these: they compose :class:`WalkOptions` (and
    :class:`BiasOptions`) into their config and call ``config.walk_config(seed=...)``.
    """

    walk_length: WalkLength = 80
    walks_per_node: WalksPerNode = 10
    p: ReturnParameter = 1.0
    q: InOutParameter = 1.0
    start: WalkStart = "uniform"
    weighted: FollowWeights = True
    seed: int = Field(0, description="Seed: the same seed gives the same walks on any thread count.")
    workers: WalkThreads = None


# ---------------------------------------------------------------------- producer mixins


class GraphOptions(PluginConfig):
    """How :func:`embstore.graph.build_graph` makes a producer's graph from edges or interactions."""

    directed: bool | None = Field(
        None, description="Treat the graph as directed; default (null): directed for interactions, undirected "
        "for edges.")
    min_rating: float | None = Field(None, description="Interactions: drop rows rated below this.")
    session_gap: float | None = Field(
        None, gt=0, description="Interactions: seconds of inactivity that split a user's history.")
    self_loops: bool = Field(True, description="Interactions: keep moves from an item to itself.")
    min_interactions: int = Field(
        1, ge=1, description="Interactions: items with fewer interactions than this (after min_rating) are left "
        "out of the graph and get no vector; the items on either side of one in a history become neighbours. "
        "1 keeps every item. Edges: not used.")


class WalkOptions(PluginConfig):
    """First-order random walks (DeepWalk's); :meth:`walk_config` turns them into the engine's options."""

    walk_length: WalkLength = 80
    walks_per_node: WalksPerNode = 10
    start: WalkStart = "uniform"
    weighted: FollowWeights = True
    walk_workers: WalkThreads = None

    def walk_bias(self) -> tuple[float, float]:
        """node2vec's (p, q) for these walks: (1, 1), unbiased, unless :class:`BiasOptions` sets them."""
        return 1.0, 1.0

    def walk_config(self, seed: int) -> WalkConfig:
        """The walk engine's options for these walks, seeded with ``seed``."""
        p, q = self.walk_bias()
        return WalkConfig(walk_length=self.walk_length, walks_per_node=self.walks_per_node, p=p, q=q,
                          start=self.start, weighted=self.weighted, seed=seed, workers=self.walk_workers)


class BiasOptions(WalkOptions):
    """node2vec's second-order walks: the walk options plus the return (p) and in-out (q) parameters."""

    p: ReturnParameter = 1.0
    q: InOutParameter = 1.0

    def walk_bias(self) -> tuple[float, float]:
        return self.p, self.q
