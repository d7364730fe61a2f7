"""DeepWalk and node2vec: random walks on a graph, then the shared skip-gram trainer.

The graph comes from interactions (an item graph: edge A→B each time a user moves
from A to B, weights accumulating) or from an edge list. Walks come from the one
walk engine (embstore.walks) and stay int32 arrays end to end, so a graph of 1M
nodes and 10M edges fits this machine.

    embstore run node2vec --set items_n2v --input interactions=ratings.csv --config p=0.25 --config q=4
    embstore run deepwalk --set cora_dw --input edges=cora/edges.csv --entity node_id

Rare items. From interactions, an item with fewer than ``min_interactions`` (10)
interactions is no node of the graph: it gets no vector, and the items on either
side of it in a history become neighbours. The version's metrics say so
(``items_seen``, ``items_with_vector``, ``items_left_out``, ``min_interactions``,
``rare_items``); the measurement behind 10 is in :class:`DeepWalkConfig`. Edges
inputs keep every node.

Against the node2vec paper (Grover and Leskovec, 2016, section 4.3: one-vs-rest
logistic regression, 50% of the nodes labelled, Macro-F1; BlogCatalog,
PPI, Wikipedia POS). Read beside its reference implementation
(aditya-grover/node2vec, ``src/main.py``, ``src/node2vec.py``):

- Walks: the same. 80 nodes, 10 per node, each round a shuffled order of all
  nodes, a first step ∝ w(v,x) and later ones ∝ w(v,x)·α(t,x) with α 1/p, 1, 1/q:
  our engine's distribution (tests/test_walks.py checks it by chi-square).
- Skip-gram: the reference trains 1 epoch with window 10 and gensim's defaults
  of the day, which downsample frequent nodes (``sample`` 1e-3); ours trains 5
  epochs, window 5, no downsampling. On a generated graph of the Wikipedia POS
  network's kind (bench/bench_graph_producers.py multilabel: 4,374 words,
  174k edges weighted by co-occurrence counts 1..1,354, 40 labels from a
  hidden-Markov corpus; dim 128, p = q = 1, 3 splits), Macro-F1: our defaults
  0.507; window 10: 0.445; sample 1e-3: 0.485; 1 epoch: 0.425; all three as
  the reference: 0.309; the same edges unweighted: 0.437. So our defaults are
  not what falls short, and following the weights matters on such a graph.
- Edge weights: the reference reads the edge list into a networkx DiGraph and
  calls ``to_undirected()``, which keeps one weight per edge; our graph sums
  repeated edges. A symmetric adjacency matrix written out by its non-zeros
  (each edge both ways, a self loop once; the paper's graphs come as .mat
  matrices) therefore doubled every edge but the self loops, so walks stepped
  onto self loops half as often as the reference's. Fixed: an undirected edge list that gives every
  edge both ways with equal weights is read once (``embstore.graph.listed_both_ways``;
  metric ``edges_listed_both_ways``), and gives the same vectors as the list
  written once (tests/test_random_walks.py). A word co-occurrence graph can
  hold self loops (a word next to itself), so this is one candidate for the
  POS gap; how large a part it is could not be measured without the graph.
- The paper picks p and q from {0.25, 0.5, 1, 2, 4} each (25 pairs), the
  held-out comparison from {0.25, 1, 4} (9): a pair such as (4, 0.5) or
  (2, 1) is outside that grid.
- Nodes without edges: neither implementation sees them (an edge list has
  none), so a labelled node without edges has no vector in either; an
  evaluator must give both the same treatment.
- Directedness: both read an edge list as undirected by default.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import Field

from embstore.embeddings import Embeddings
from embstore.errors import InputError
from embstore.graph import build_graph_report
from embstore.hookspecs import hookimpl
from embstore.options import BiasOptions, GraphOptions, WalkOptions
from embstore.producer import Producer
from embstore.skipgram import SkipGramConfig, rare_items_policy, train_skipgram
from embstore.walks import random_walks


class DeepWalkConfig(GraphOptions, WalkOptions, SkipGramConfig):
    """The skip-gram options of embstore.skipgram, then the walk and graph options of embstore.options.

    One default differs from the shared ones, chosen on recall from an item graph
    built from interactions: MovieLens latest-small in two disjoint halves of
    users (odd ids tuning, even ids checking, each trained and scored on its
    own; ratings >= 3.5, last item held out, user = mean of the last 5 training
    items, seen excluded; ``bench/bench_quality.py sweep deepwalk``), HR@10
    tuning / checking, popularity 0.046 / 0.036, item-kNN 0.054 / 0.093,
    "recallable" the share of held-out items with a vector::

        old defaults (min_interactions 1, window 5)   0.025 / 0.043  recallable 1.00 / 1.00
        min_interactions 10, window  5                0.075 / 0.061             0.59 / 0.65
        min_interactions 10, window 10 (2 seeds)      0.068-0.071 / 0.086-0.093
        min_interactions 10, window 20 (2 seeds)      0.075-0.079 / 0.086-0.093 (twice the time)
        min_interactions  5, window 10                0.064 / 0.093             0.73 / 0.79
        min_interactions 20, window 10                0.054 / 0.082             0.38 / 0.45
        undirected, min_interactions 10, window 10    0.075 / 0.086-0.111

    ``min_interactions`` 10: an item seen fewer times is no node of the graph, so
    it gets no vector, as item2vec's ``min_count`` (same threshold, same reason:
    with every item kept, the walks start as many walks from an item seen once
    as from a hit, and its noisy vector crowds the top 10). ``window`` stays 5:
    10 or 20 were no better on the tuning half (only on the checking half), and
    10 was worse on a weighted co-occurrence graph (see the module docstring).
    The graph stays directed (the seeds' item graph): undirected was no better
    on the tuning half. Edges inputs are not filtered: every node keeps its vector.
    """

    min_interactions: int = Field(
        10, ge=1, description="Interactions: items with fewer interactions than this (after min_rating) are left "
        "out of the graph and get no vector; the items on either side of one in a history become neighbours. "
        "1 keeps every item. Edges: not used.")


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
        graph, report = build_graph_report(inputs, config, self.name)
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
        if "items_seen" in report:  # an item graph from interactions: say what happened to the rare items
            metrics.update(rare_items_policy(report["items_seen"], int(len(codes)), "min_interactions",
                                             report["min_interactions"]))
        if "edges_listed_both_ways" in report:
            metrics["edges_listed_both_ways"] = report["edges_listed_both_ways"]
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
