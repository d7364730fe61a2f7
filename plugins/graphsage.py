"""GraphSAGE: node vectors from sampled-neighbourhood aggregation of features; inductive.

Hamilton, Ying and Leskovec (2017), "Inductive Representation Learning on Large
Graphs", with PinSAGE's random-walk importance neighbourhoods (Ying et al., 2018)
as an option. Layer k computes, for node v and its sampled neighbours N(v),

    h_v^k = σ(W_self h_v^{k-1} + W_neigh AGG({h_u^{k-1} : u ∈ N(v)}) + b)

with AGG the mean, or (``pool``) max_u ReLU(W_pool h_u + b_pool); h^0 are the node
features (a sparse matrix stays sparse: the first layer multiplies it directly).
Training is unsupervised on CPU mini-batches: positives are node pairs that co-occur
in short random walks (the shared walk engine, redrawn every epoch), negatives are drawn ∝ degree^0.75
and shared by the batch, and the loss is (Q = ``negative_weight``, the expectation
estimated by the mean over the batch's negatives)

    −log σ(z_u·z_v) − Q·E_{v_n}[log σ(−z_u·z_{v_n})]

The published vectors are computed layer by layer over every node's full
neighbourhood (the mean the sampler estimates), not from one random sample.

Inductive: ``infer`` embeds nodes added after training from their features and
the edges that link them to known nodes (or to each other)::

    embstore run graphsage --set cora_sage --input edges=cora/edges.csv --input features=cora/features.npz \\
        --entity node_id
    embstore infer cora_sage --input features=new_nodes.csv --input edges=new_edges.csv --publish

Features are normalised by what they are, not by the file they came in (``feature_norm: auto``:
row sums for non-negative, mostly-zero features such as bag-of-words, standard scaling otherwise),
and mostly-zero dense features are multiplied as sparse, so the same features from CSV, parquet or
.npz give the same vectors (on Cora, identical).

Measured (bench/bench_graphsage.py): Cora linear probe 0.78 with the defaults before dim 128 and
dropout 0.5 (now 0.79-0.80, see GraphSageConfig), 2.9 s per epoch;
a 100k-node, 1M-edge graph with 300 sparse features, 329 s per epoch (1.37M pairs), 1.6 GB;
infer embeds 1,000 new nodes there in 2.2 s.

Determinism: with ``threads=1`` (the default) the same inputs, config and seed give
the same vectors bit for bit on one machine; with more threads torch's CPU kernels
may sum in a different order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pydantic
from pydantic import Field

from embstore.config import PluginConfig
from embstore.embeddings import Embeddings
from embstore.errors import InputError
from embstore.graph import Graph
from embstore.hookspecs import hookimpl
from embstore.ids import one_kind, plain, positions
from embstore.linalg import unit_rows
from embstore.producer import Producer
from embstore.sampling import Neighbourhood, UnigramTable, walk_pairs
from embstore.training import EpochLoop
from embstore.walks import WalkConfig, random_walks

if TYPE_CHECKING:
    import scipy.sparse as sp  # imported where used: loading the catalogue does without scipy


class GraphSageConfig(PluginConfig):
    """GraphSAGE options: model, neighbourhood sampling, positives and negatives, training.

    ``dim`` 128 and ``dropout`` 0.5 (were 64 and 0), measured by the linear probe of
    bench/bench_graphsage.py on Cora (standard split) and on a generated citation-like
    graph of Citeseer's size and sparsity (``planted``: 3,300 nodes, 6 classes, 3,700
    words, raw features alone 0.51), so as not to choose on Cora alone; test accuracy
    for seeds 0 / 1 / 2 (each seed a new generated graph)::

                                 Cora                 generated
        dim  64, dropout 0       0.779 0.771 0.755    0.714 0.704 0.720   (the old defaults)
        dim 128, dropout 0.5     0.801 0.789 0.799    0.737 0.700 0.705
        dim 256, dropout 0.5     0.808 0.813 0.793    0.708 0.667 0.717
        dim 128, dropout 0       0.782 0.773          0.707 0.704
        learning_rate 0.002      0.794 0.797          0.704 0.728
        fanouts [25, 10]         0.787 0.800          0.717 0.690
        epochs 6 / 10            0.776 / 0.738 (seed 0; the probe falls with more epochs)

    dim 128 with dropout gains on both graphs; 256 gains a little more on Cora and
    loses on the generated graph, so 128.
    """

    dim: int = Field(128, ge=1, le=4096, description="Output vector dimension (the last layer); 128 "
                     "(was 64), measured with dropout in the class docstring.")
    hidden_dim: int = Field(256, ge=1, le=8192, description="Width of the hidden layers.")
    fanouts: list[int] = Field(
        [10, 10], min_length=1, max_length=5,
        description="Neighbours sampled per node at each hop, nearest hop first; its length is the "
        "number of layers K.")
    aggregator: Literal["mean", "pool"] = Field(
        "mean", description="mean of neighbour vectors, or pool: max over ReLU(W_pool h_u + b).")
    pool_dim: int = Field(256, ge=1, le=8192, description="Width of the pooling layer (aggregator=pool).")
    sampler: Literal["uniform", "weighted", "pinsage"] = Field(
        "uniform", description="uniform over neighbours; weighted by edge weight; pinsage: the importance_top "
        "nodes most visited by short random walks, sampled by visit count.")
    importance_top: int = Field(10, ge=1, description="pinsage: neighbourhood size (top visited nodes).")
    importance_walks: int = Field(20, ge=1, description="pinsage: walks started per node to count visits.")
    importance_walk_length: int = Field(4, ge=2, description="pinsage: nodes per importance walk, start included.")
    feature_norm: Literal["auto", "none", "row", "standard"] = Field(
        "auto", description="row: divide each row by its sum (bag-of-words); standard: subtract column means "
        "and divide by column standard deviations (the result is dense); auto: by what the features are, not "
        "the file they came in: row when every value is >= 0 and at most half are non-zero (counts, "
        "bag-of-words, one-hot, TF-IDF), else standard.")
    directed: bool = Field(False, description="Treat edges as directed (aggregate over out-neighbours only).")
    walk_length: int = Field(5, ge=2, description="Positives: nodes per random walk.")
    walks_per_node: int = Field(2, ge=1, description="Positives: walks started per node, drawn afresh every epoch.")
    window: int = Field(2, ge=1, description="Positives: nodes up to this many steps apart in a walk are pairs.")
    negatives: int = Field(20, ge=1, le=1000, description="Negative nodes drawn per batch, shared by its pairs.")
    negative_weight: float = Field(
        1.0, gt=0, allow_inf_nan=False,
        description="Q in the loss: weight of the negative term, whose expectation is the mean over the "
        "drawn negatives.")
    ns_exponent: float = Field(0.75, allow_inf_nan=False,
                               description="Negatives drawn ∝ degree**ns_exponent (nodes without edges never).")
    epochs: int = Field(3, ge=1, description="Epochs, each over freshly drawn walk pairs (the budget; see patience).")
    batch_size: int = Field(512, ge=1, description="Positive pairs per optimizer step.")
    learning_rate: float = Field(0.005, gt=0, le=10, allow_inf_nan=False, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False, description="Adam weight decay.")
    dropout: float = Field(0.5, ge=0, lt=1, allow_inf_nan=False,
                           description="Dropout between layers in training; 0.5 (was 0), see the class docstring.")
    normalize: bool = Field(True, description="L2-normalize the published vectors.")
    patience: int | None = Field(
        None, ge=1, description="Stop when the epoch loss has not improved for this many epochs; null: run every epoch.")
    min_delta: float = Field(0.001, ge=0, allow_inf_nan=False,
                             description="Relative loss improvement that counts for patience.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for walks, weights, sampling and negatives.")
    threads: int = Field(1, ge=1, description="torch CPU threads; bit-for-bit reproducible only with 1.")

    @pydantic.field_validator("fanouts")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError(f"every fanout must be >= 1, got {v}")
        return v


# --------------------------------------------------------------------- features


COUNT_LIKE_MAX_DENSITY = 0.5  # auto: non-negative features with at most this share of non-zeros are counts
SPARSE_MAX_DENSITY = 0.1  # dense features with at most this share of non-zeros are multiplied as sparse


def _as_model_input(x: np.ndarray | sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
    """Mostly-zero dense features (a bag-of-words read from CSV or parquet) as CSR, the form an .npz
    gives: the first layer then runs the same sparse products on the same numbers, so the vectors are
    the same bit for bit whatever file the features came in (and the products are faster)."""
    import scipy.sparse as sp

    if sp.issparse(x):
        out = sp.csr_matrix(x, dtype=np.float32, copy=True)
    elif x.size == 0 or np.count_nonzero(x) > SPARSE_MAX_DENSITY * x.size:
        return x
    else:
        out = sp.csr_matrix(x, dtype=np.float32)
    out.sum_duplicates()  # canonical: sorted indices, no duplicates, no stored zeros
    out.eliminate_zeros()
    return out


def _count_like(x: np.ndarray | sp.csr_matrix) -> bool:
    """Non-negative and mostly zero (bag-of-words, counts, one-hot, TF-IDF): what ``auto`` row-normalises.
    Read from the values alone, so the same features give the same answer from CSV, parquet or .npz."""
    import scipy.sparse as sp

    size = x.shape[0] * x.shape[1]
    if size == 0:
        return False
    if sp.issparse(x):
        values, nonzero = x.data, int(np.count_nonzero(x.data))
    else:
        values, nonzero = x, int(np.count_nonzero(x))
    return bool(values.size == 0 or values.min() >= 0) and nonzero <= COUNT_LIKE_MAX_DENSITY * size


def _normalizer(x: np.ndarray | sp.csr_matrix, how: str) -> dict:
    import scipy.sparse as sp

    how = ("row" if _count_like(x) else "standard") if how == "auto" else how
    norm: dict = {"how": how}
    if how == "standard":
        if sp.issparse(x):
            mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
            sq = np.asarray(x.multiply(x).mean(axis=0), dtype=np.float64).ravel()
            std = np.sqrt(np.maximum(sq - mean**2, 0))
        else:
            mean = x.mean(axis=0, dtype=np.float64)
            std = x.std(axis=0, dtype=np.float64)
        norm["mean"] = mean
        norm["scale"] = np.where(std > 1e-12, 1.0 / np.maximum(std, 1e-12), 1.0)
    return norm


def _normalize(x: np.ndarray | sp.csr_matrix, norm: dict) -> np.ndarray | sp.csr_matrix:
    """Features as the model takes them. row keeps sparse input sparse; standard centres every column,
    so its result is dense whatever the input was (the same numbers from a sparse or a dense file)."""
    import scipy.sparse as sp

    how = norm["how"]
    if how == "row":
        sums = np.asarray(abs(x).sum(axis=1)).ravel()
        inv = np.where(sums > 0, 1.0 / np.where(sums > 0, sums, 1), 0.0).astype(np.float32)
        return sp.csr_matrix(sp.diags(inv) @ x, dtype=np.float32) if sp.issparse(x) else x * inv[:, None]
    if how == "standard":
        dense = x.toarray() if sp.issparse(x) else np.asarray(x)
        return ((dense - norm["mean"]) * norm["scale"]).astype(np.float32)
    return x


def _rows(x: np.ndarray | sp.csr_matrix, rows: np.ndarray):
    """Feature rows as the first layer takes them: a scipy CSR for sparse features, a dense tensor otherwise."""
    import scipy.sparse as sp
    import torch

    if sp.issparse(x):
        return x[rows]
    return torch.from_numpy(np.ascontiguousarray(x[rows], dtype=np.float32))


def _linear(h, weight):
    """h @ weight.T, where h is a dense tensor or a scipy CSR of fixed features."""
    import scipy.sparse as sp

    return _sparse_product().apply(weight, h) if sp.issparse(h) else h @ weight.t()


def _sparse_product():
    """The autograd function behind ``_linear`` on sparse features, built on first use (torch is
    imported lazily). It multiplies with scipy: on CPU its sparse-dense products run several times
    faster than torch's sparse kernels, and single-threaded, so they are deterministic."""
    global _SPARSE_PRODUCT
    if _SPARSE_PRODUCT is None:
        import torch

        class SparseProduct(torch.autograd.Function):
            @staticmethod
            def forward(ctx, weight, x):
                ctx.x = x
                return torch.from_numpy(np.asarray(x @ np.ascontiguousarray(weight.detach().numpy().T), dtype=np.float32))

            @staticmethod
            def backward(ctx, grad):
                grad_weight = np.asarray(ctx.x.T @ grad.detach().numpy()).T  # CSC @ dense
                return torch.from_numpy(np.ascontiguousarray(grad_weight, dtype=np.float32)), None

        _SPARSE_PRODUCT = SparseProduct
    return _SPARSE_PRODUCT


_SPARSE_PRODUCT = None


# --------------------------------------------------------------------- the model


def _build_model(in_dim: int, config: GraphSageConfig, generator=None):
    import torch
    from torch import nn

    class SageLayer(nn.Module):
        def __init__(self, d_in: int, d_out: int) -> None:
            super().__init__()
            self.pool = config.aggregator == "pool"
            self.self_lin = nn.Linear(d_in, d_out)
            self.neigh_lin = nn.Linear(config.pool_dim if self.pool else d_in, d_out, bias=False)
            if self.pool:
                self.pool_lin = nn.Linear(d_in, config.pool_dim)

        def self_part(self, h):
            return _linear(h, self.self_lin.weight) + self.self_lin.bias

        def message(self, h):
            """What a node sends its neighbours: W_neigh h (mean: linear, so averaging after
            projecting is exact) or ReLU(W_pool h + b_pool) (pool)."""
            if self.pool:
                return torch.relu(_linear(h, self.pool_lin.weight) + self.pool_lin.bias)
            return _linear(h, self.neigh_lin.weight)

        def combine(self, self_part, aggregated):
            if self.pool:
                aggregated = aggregated @ self.neigh_lin.weight.t()
            return self_part + aggregated

        def forward(self, h, n_inner: int, nbr_pos):
            """h: inputs of the outer node set, whose first n_inner nodes are this layer's outputs;
            nbr_pos (n_inner, k) indexes their sampled neighbours in h. Only those n_inner rows
            pay for the self part."""
            agg = torch.nn.functional.embedding_bag(nbr_pos, self.message(h), mode="max" if self.pool else "mean")
            return self.combine(self.self_part(h[:n_inner]), agg)

    class Sage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            k = len(config.fanouts)
            dims = [in_dim] + [config.hidden_dim] * (k - 1) + [config.dim]
            self.layers = nn.ModuleList(SageLayer(dims[i], dims[i + 1]) for i in range(k))
            if generator is not None:
                with torch.no_grad():
                    for p in self.parameters():
                        if p.dim() == 2:
                            bound = (6.0 / (p.shape[0] + p.shape[1])) ** 0.5  # Glorot uniform
                            p.uniform_(-bound, bound, generator=generator)
                        else:
                            p.zero_()

        def forward(self, h, blocks):
            for i, (layer, (n_inner, nbr_pos)) in enumerate(zip(self.layers, blocks)):
                h = layer(h, n_inner, nbr_pos)
                if i < len(self.layers) - 1:
                    h = torch.nn.functional.dropout(torch.relu(h), config.dropout, self.training)
            return h

    return Sage()


def _sample_blocks(targets: np.ndarray, hood: Neighbourhood, fanouts: list[int], rng: np.random.Generator):
    """Node sets hop by hop, each the previous set followed by the new nodes its sampled neighbours
    add (so a layer's outputs are a prefix of its inputs), and per layer, the one nearest the
    features first, (size of the inner set, positions of its sampled neighbours in the outer set).
    Returns (outer node codes, blocks, positions of the targets in the innermost set)."""
    inner = np.unique(targets)
    sets, samples = [inner], []
    for k in fanouts:
        nb = hood.sample(sets[-1], k, rng)
        samples.append(nb)
        sets.append(np.concatenate([sets[-1], np.setdiff1d(nb, sets[-1])]))
    blocks = []
    for hop in range(len(fanouts) - 1, -1, -1):
        outer = sets[hop + 1]
        order = np.argsort(outer, kind="stable")
        blocks.append((int(sets[hop].shape[0]), order[np.searchsorted(outer[order], samples[hop])]))
    return sets[-1], blocks, np.searchsorted(inner, targets)


def _embed_all(model, x, hood: Neighbourhood, config: GraphSageConfig, chunk_arcs: int = 1 << 20) -> np.ndarray:
    """Every node's vector, layer by layer over full (importance) neighbourhoods, in eval mode."""
    import scipy.sparse as sp
    import torch

    model.eval()
    rows, cols, vals = hood.row_normalized()
    n = hood.n_nodes
    with torch.no_grad():
        h = x if sp.issparse(x) else torch.from_numpy(np.ascontiguousarray(x, np.float32))
        if config.aggregator == "mean":
            adj = torch.sparse_coo_tensor(torch.from_numpy(np.vstack([rows, cols])),
                                          torch.from_numpy(vals.astype(np.float32)), (n, n),
                                          check_invariants=False).coalesce()
        for i, layer in enumerate(model.layers):
            msg = layer.message(h)
            if config.aggregator == "mean":
                agg = torch.sparse.mm(adj, msg)
            else:
                agg = torch.full((n, msg.shape[1]), float("-inf"))
                for a in range(0, rows.shape[0], chunk_arcs):
                    r = torch.from_numpy(rows[a : a + chunk_arcs])
                    agg.scatter_reduce_(0, r[:, None].expand(-1, msg.shape[1]),
                                        msg[torch.from_numpy(cols[a : a + chunk_arcs])], reduce="amax")
            h = layer.combine(layer.self_part(h), agg)
            if i < len(model.layers) - 1:
                h = torch.relu(h)
        out = h.numpy().astype(np.float32)
    return unit_rows(out) if config.normalize else out


def _torch_threads_kept(threads: int):
    """Set torch's thread count back to ``threads`` after a walk: the walk engine's first parallel call
    starts numba's OpenMP layer, which resets the process's OpenMP thread count (torch's too), so the
    first epoch of the first fit in a process ran on every core and summed in another order (its
    vectors differed from every later fit's)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _neighbourhood(graph: Graph, config: GraphSageConfig, progress: bool | None) -> Neighbourhood:
    if config.sampler == "pinsage":
        hood = Neighbourhood.importance(graph, top=config.importance_top, walks_per_node=config.importance_walks,
                                        walk_length=config.importance_walk_length, seed=config.seed,
                                        progress=progress)
        _torch_threads_kept(config.threads)
        return hood
    return Neighbourhood.of_graph(graph, weighted=config.sampler == "weighted")


def _train(model, x, graph: Graph, hood: Neighbourhood, config: GraphSageConfig, progress: bool | None) -> EpochLoop:
    import torch
    import torch.nn.functional as F

    walk_cfg = WalkConfig(walk_length=config.walk_length, walks_per_node=config.walks_per_node,
                          weighted=config.sampler == "weighted", seed=config.seed)

    def positives(epoch: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Fresh walks every epoch (seeded by seed and epoch): pairs of distinct co-occurring nodes."""
        cfg = walk_cfg.model_copy(update={"seed": (config.seed << 16) + epoch})
        walks = random_walks(graph, cfg, progress=progress if epoch == 0 else False)
        _torch_threads_kept(config.threads)
        centers, contexts = walk_pairs(walks, config.window)
        differ = centers != contexts
        return centers[differ], contexts[differ], len(walks)

    centers, contexts, n_walks = positives(0)
    if centers.size == 0:
        raise InputError("graphsage: the walks give no pairs of distinct nodes; the graph needs edges between nodes")
    # negatives ∝ degree**ns_exponent (the walks' visit frequency of an undirected graph)
    negatives = UnigramTable(graph.degree(weighted=config.sampler == "weighted"), config.ns_exponent)
    rng = np.random.default_rng(config.seed)
    batches = -(-centers.shape[0] // config.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loop = EpochLoop("graphsage", config.epochs, batches, progress, config.patience, config.min_delta)
    model.train()
    pairs_seen = 0
    for epoch in loop:
        if epoch > 0:
            centers, contexts, _ = positives(epoch)
        n_pairs = centers.shape[0]
        batches = -(-n_pairs // config.batch_size)
        pairs_seen += n_pairs
        order = rng.permutation(n_pairs)
        total = 0.0
        for b in range(batches):
            sel = order[b * config.batch_size : (b + 1) * config.batch_size]
            m = sel.shape[0]
            neg = negatives.sample(config.negatives, rng)
            targets = np.concatenate([centers[sel], contexts[sel], neg])
            outer, blocks, pos = _sample_blocks(targets, hood, config.fanouts, rng)
            blocks = [(n_inner, torch.from_numpy(nb)) for n_inner, nb in blocks]
            z = model(_rows(x, outer), blocks)[torch.from_numpy(pos)]
            zu, zv, zn = z[:m], z[m : 2 * m], z[2 * m :]
            loss = (F.softplus(-(zu * zv).sum(-1)) + config.negative_weight * F.softplus(zu @ zn.t()).mean(-1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            loop.batch_done(total / (b + 1))
        loop.epoch_done(total / batches)
    loop.extra = {"walks_per_epoch": n_walks, "pairs": int(pairs_seen // max(len(loop.losses), 1))}
    return loop


# --------------------------------------------------------------------- the producer


def _graph_and_features(edges, ids_f: np.ndarray, x, directed: bool) -> tuple[Graph, Any]:
    """The graph over edge endpoints and feature ids, and the feature rows in graph-code order."""
    graph = Graph.from_edges(edges["src"].to_numpy(), edges["dst"].to_numpy(), edges["weight"].to_numpy(),
                             directed=directed, nodes=ids_f)
    codes = graph.codes_of(ids_f)  # every edge node has a row: _check_features ran first
    order = np.empty(graph.n_nodes, np.int64)
    order[codes] = np.arange(ids_f.shape[0])
    return graph, x[order]


def _check_features(ids_f: np.ndarray, edges) -> None:
    """No edge endpoint matches any feature id: almost always ids of different kinds."""
    ends = np.concatenate([edges["src"].to_numpy(), edges["dst"].to_numpy()])
    known = _isin(ends, ids_f)
    if not known.any():
        raise InputError(
            f"no node in edges has a features row (e.g. edge node {plain(ends[0])!r}; feature ids look like "
            f"{plain(ids_f[0])!r}): do the id columns hold the same ids?"
        )
    if not known.all():
        bad = ends[np.flatnonzero(~known)[0]]
        count = np.unique(ends[~known]).shape[0]
        raise InputError(f"features have no row for {count} node(s) in edges, e.g. {plain(bad)!r}; every node needs one")


class GraphSage(Producer):
    """Unsupervised GraphSAGE (torch) with mean or pooling aggregators; inductive ``infer``."""

    name = "graphsage"
    Config = GraphSageConfig
    requires = frozenset({"edges", "features"})
    entity = "node_id"
    conformance_config: ClassVar[dict] = {"epochs": 1, "dim": 8, "hidden_dim": 16, "fanouts": [3, 3],
                                          "walks_per_node": 2, "batch_size": 64}

    def fit(self, inputs: Any, config: GraphSageConfig, progress: bool | None = None) -> Embeddings:
        """Train on edges and features; ``progress`` None draws bars only when stderr is a terminal.
        ``Embeddings.state`` holds the weights, the graph and the features ``infer`` builds on."""
        import scipy.sparse as sp
        import torch

        edges = inputs.edges()
        ids_f, x = inputs.features()
        _check_features(ids_f, edges)
        graph, x = _graph_and_features(edges, ids_f, x, config.directed)
        x = _as_model_input(x)
        if graph.n_edges == 0:
            raise InputError("graphsage: the graph has no edges")
        norm = _normalizer(x, config.feature_norm)
        xn = _normalize(x, norm)
        with EpochLoop.threads(config.threads):
            torch.manual_seed(config.seed)  # dropout draws from torch's global generator
            model = _build_model(x.shape[1], config, torch.Generator().manual_seed(config.seed))
            hood = _neighbourhood(graph, config, progress)
            loop = _train(model, xn, graph, hood, config, progress)
            vectors = _embed_all(model, xn, hood, config)
        metrics = loop.metrics()
        metrics.update(nodes=graph.n_nodes, edges=graph.n_edges, features=int(x.shape[1]),
                       sparse_features=bool(sp.issparse(x)), feature_norm=norm["how"], **loop.extra)
        state = {
            "ids": graph.ids, "indptr": graph.indptr, "indices": graph.indices, "weights": graph.weights,
            "features": x, "norm": norm, "in_dim": int(x.shape[1]),
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        }
        return Embeddings(ids=graph.ids, vectors=vectors, metadata=metrics, state=state)

    def infer(self, state: dict, inputs: Any, config: GraphSageConfig) -> Embeddings:
        """Vectors for every row of the features input: nodes added after training (and known nodes,
        whose feature rows are then replaced), aggregated over the trained graph plus the given
        edges, which link new nodes to known nodes or to each other."""
        import scipy.sparse as sp
        import torch

        new_ids, xn = inputs.features()
        if xn.shape[1] != state["in_dim"]:
            raise InputError(f"features have {xn.shape[1]} columns; the model was trained on {state['in_dim']}")
        old_ids = state["ids"]
        n_old = old_ids.shape[0]
        deg = np.diff(state["indptr"])
        src = [old_ids[np.repeat(np.arange(n_old), deg)]]
        dst = [old_ids[state["indices"]]]
        w = [state["weights"].astype(np.float64)]
        if "edges" in inputs.kinds:
            e = inputs.edges()
            s, d, ew = e["src"].to_numpy(), e["dst"].to_numpy(), e["weight"].to_numpy()
            ends = np.concatenate([s, d])
            known = _isin(ends, old_ids) | _isin(ends, new_ids)
            if not known.all():
                raise InputError(f"edge node {plain(ends[np.flatnonzero(~known)[0]])!r} is neither a trained node nor "
                                 "in the features input; give it a features row")
            src.append(s)
            dst.append(d)
            w.append(ew)
            if not config.directed:
                src.append(d)
                dst.append(s)
                w.append(ew)
        src_all, dst_all = _concat_ids(src), _concat_ids(dst)
        graph = Graph.from_edges(src_all, dst_all, np.concatenate(w), directed=True,
                                 nodes=_concat_ids([old_ids, new_ids]))
        x_old = state["features"]
        n = graph.n_nodes
        old_codes = graph.codes_of(old_ids)
        new_codes = graph.codes_of(new_ids)
        order = np.zeros(n, np.int64)  # row of [x_old; xn] for each merged code
        order[old_codes] = np.arange(n_old)
        order[new_codes] = n_old + np.arange(new_ids.shape[0])  # given rows win for known nodes
        # new rows take the form the trained rows had, and the trained normalisation (its column
        # means and scales for standard, a per-row division for row)
        if sp.issparse(x_old):
            stacked = sp.vstack([x_old, sp.csr_matrix(xn)], format="csr", dtype=np.float32)
        else:
            stacked = np.vstack([x_old, xn.toarray() if sp.issparse(xn) else xn]).astype(np.float32)
        x = _normalize(stacked[order], state["norm"])
        with EpochLoop.threads(config.threads):
            model = _build_model(state["in_dim"], config)
            model.load_state_dict(state["model"])
            hood = _neighbourhood(graph, config, False)
            vectors = _embed_all(model, x, hood, config)[new_codes]
        unseen = int((~_isin(new_ids, old_ids)).sum())
        return Embeddings(ids=new_ids, vectors=vectors, metadata={"new_nodes": unseen,
                                                                   "known_nodes": int(new_ids.shape[0] - unseen)})


def _isin(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which of ``values`` are among the (unique) ``ids``; int and str ids compare as text."""
    return positions(values, ids, mixed="text") >= 0


def _concat_ids(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(one_kind(parts))


@hookimpl
def register_producers(register) -> None:
    register(GraphSage)
