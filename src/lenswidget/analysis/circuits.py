"""Circuit discovery: edge attribution over the component graph, exact edge patching, faithfulness.

* :func:`component_graph` -- nodes ``embed``, ``L{l}H{h}``, ``mlp{l}``, ``logits`` and an edge from
  every node to every later node's input (split ``.q``/``.k``/``.v`` into heads, into KV groups on
  grouped-query models). See :mod:`._circuit_graph`.
* :func:`edge_attribution` -- a score per edge: ``"eap"`` (activation difference x gradient, two
  forward passes and one backward), ``"eap-ig"`` (the gradient averaged over interpolated input
  embeddings, EAP-IG-inputs), ``"exact"`` (every edge patched alone). Denoising convention: the
  gradient is taken on the corrupted run, and a positive score means the edge carries the clean
  behaviour (patching it in raises the metric).
* :func:`circuit_metric` -- the metric of a circuit: every edge in it carries its upstream node's
  output in the circuit's own run, every other edge the node's output on the corrupted prompt (the
  standard EAP-IG / MIB evaluation; all edges = the clean run, none = the corrupted run).
* :func:`patch_edge` -- one edge patched alone into the running corrupted model: its reader gets
  the upstream node's clean output instead of its corrupted one, and everything downstream is
  recomputed. This is the quantity EAP estimates to first order (``scores`` are
  ``patch_edge - corrupted metric``), and what ``method="exact"`` computes for every edge. (A
  one-edge *circuit* is a different thing: its upstream node, with no circuit inputs, computes
  its corrupted output, so only ``embed -> ...`` edges can move it.)
* :func:`faithfulness_curve` -- normalized faithfulness ``(m(C) - m(0)) / (m(all) - m(0))`` of the
  top-scoring edges at the MIB benchmark's edge fractions, and of random edge sets of the same
  sizes, all computed exactly in batched runs.

Scores are a dense tensor on the model's device; nothing of shape [n_edges, batch, pos, d_model]
is ever built (EAP holds [n_writers, batch, pos, d_model] of clean-minus-corrupted outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..errors import InputError
from . import _edge_gradients as eg
from . import _edge_patching as ep
from . import _edge_prefix
from ._circuit_graph import ComponentGraph, Reader, component_graph
from .patching import Metric, TokensLike, check_inputs
from .promoted import PromotedTokens, promoted_tokens

__all__ = [
    "ComponentGraph", "Reader", "component_graph", "EdgeScores", "edge_attribution", "circuit_metric",
    "patch_edge", "faithfulness_curve", "FaithfulnessCurve", "METHODS", "MIB_FRACTIONS",
    "promoted_tokens", "PromotedTokens",
]

METHODS = ("eap", "eap-ig", "exact")
#: The MIB benchmark's edge fractions.
MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True, eq=False)
class EdgeScores:
    """A score per edge of ``graph``.

    Attributes:
        graph: the :class:`ComponentGraph`.
        scores: float32 [n_edges] on the model's device; the estimated (``"eap"``, ``"eap-ig"``)
            or exact (``"exact"``) change of the metric when the edge alone carries its clean value.
        method, steps: how they were computed.
        clean_value, corrupted_value: the metric on the clean and the corrupted run.

    ``stats``: which runs computed the scores (see :attr:`stats`).
    """

    graph: ComponentGraph
    scores: torch.Tensor
    method: str
    steps: int
    clean_value: float
    corrupted_value: float
    _runs: Any = field(default=None, repr=False)

    @property
    def edges(self) -> list[str]:
        return self.graph.edges

    @property
    def stats(self) -> dict:
        """``{"shared_prefix", "start", "fallback"}``: the leading positions the clean and corrupted
        prompts share, the position the runs started at (the shared prefix when only the later
        positions were computed, which is exact; else 0) and why not, when they share one."""
        if self._runs is None:
            return {}
        return _edge_prefix.stats(self._runs, "prefix" if self.method == "exact" else "grad_prefix")

    def __len__(self) -> int:
        return self.graph.n_edges

    def order(self, n: int | None = None) -> torch.Tensor:
        """Edge indices by ``|score|``, largest first (LongTensor, on the scores' device)."""
        k = self.graph.n_edges if n is None else max(0, min(int(n), self.graph.n_edges))
        return torch.topk(self.scores.abs(), k, sorted=True).indices

    def top(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` edges with the largest ``|score|``: ``[("L0H3->L1H2.k", 1.2), ...]``."""
        idx = self.order(n).tolist()
        vals = self.scores[idx].tolist()
        return [(self.graph.edges[i], float(v)) for i, v in zip(idx, vals)]

    def score(self, edge: str) -> float:
        """The score of one edge (InputError for an unknown label)."""
        return float(self.scores[self.graph.edge_index(edge)])

    def node_scores(self) -> dict[str, float]:
        """Each node's score: for a writer, the sum of its outgoing edge scores (for EAP this
        equals attribution patching of the node's output); for ``logits``, the sum of its
        incoming edges (every node's direct effect)."""
        g = self.graph
        out = torch.zeros(len(g.writers), dtype=torch.float64, device=self.scores.device)
        out.index_add_(0, g.upstream.to(self.scores.device), self.scores.double())
        res = dict(zip(g.writers, out.tolist()))
        last = g.readers[-1]
        res["logits"] = float(self.scores[last.start : last.start + last.n_up].double().sum())
        return res

    def to_networkx(self, edges: Sequence[str] | torch.Tensor | None = None):
        """A ``networkx.MultiDiGraph``: nodes with ``layer`` and ``score``, one edge per graph edge
        (or per edge in ``edges``) from the upstream node to the downstream node, keyed by its
        label, with ``score`` and ``input`` (``"q"``, ``"k"``, ``"v"``, ``"mlp"``, ``"logits"``).
        Grouped-query key/value edges end at ``L{l}KV{g}`` nodes (``kind="kv_group"``)."""
        try:
            import networkx as nx
        except ImportError as err:  # pragma: no cover
            raise InputError("to_networkx() needs the networkx package: pip install networkx") from err
        g = self.graph
        ns = self.node_scores()
        G = nx.MultiDiGraph()
        for node in g.nodes:
            G.add_node(node, layer=g.node_layer(node), score=ns.get(node, 0.0), kind=_node_kind(node))
        mask = torch.ones(g.n_edges, dtype=torch.bool) if edges is None else g.edge_mask(edges)
        idx = mask.nonzero().reshape(-1).tolist()
        vals = self.scores.detach().cpu()[idx].tolist()
        for i, v in zip(idx, vals):
            r = g.readers[int(g.downstream[i])]
            if r.node not in G:
                G.add_node(r.node, layer=r.layer, score=0.0, kind="kv_group")
            G.add_edge(g.writers[int(g.upstream[i])], r.node, key=g.edges[i], score=float(v), input=r.kind)
        return G

    def __repr__(self) -> str:
        return f"EdgeScores({self.method}, {self.graph.n_edges} edges, top={self.top(3)})"


def _node_kind(node: str) -> str:
    return "embed" if node == "embed" else "logits" if node == "logits" else "mlp" if node.startswith("mlp") else "head"


def _inputs(model: Any, clean: TokensLike, corrupted: TokensLike) -> tuple[torch.Tensor, torch.Tensor]:
    c, r = check_inputs(model, clean, corrupted, "denoise")
    if torch.equal(c, r):
        raise InputError("the clean and corrupted prompts are identical: there is nothing to attribute or patch")
    return c, r


def _steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    return steps


def edge_attribution(
    model: Any,
    clean: TokensLike,
    corrupted: TokensLike,
    metric: Metric,
    *,
    method: str = "eap-ig",
    steps: int = 5,
) -> EdgeScores:
    """Score every edge of :func:`component_graph` ``(model)``.

    Args:
        model: a TransformerBridge in eval mode.
        clean, corrupted: token batches [batch, pos] of the same shape (or texts).
        metric: ``logits [batch, pos, vocab] -> 0-d tensor`` (e.g. :func:`logit_diff_metric`),
            differentiable for the gradient methods.
        method: ``"eap"``: ``sum over prompts and positions (out_u(clean) - out_u(corrupted)) .
            dm/dx_r`` with the gradient on the corrupted run; ``"eap-ig"``: the gradient averaged
            over ``steps`` runs whose input embeddings are ``corrupted + (k / steps) (clean -
            corrupted)``, ``k = 0 .. steps-1`` (a left Riemann sum; ``steps=1`` is EAP);
            ``"exact"``: ``patch_edge(edge) - corrupted metric`` for every edge (one patched run
            per edge, batched; for small models and tests).
        steps: interpolation steps for ``"eap-ig"``.

    Returns:
        :class:`EdgeScores` (``.scores`` float32 [n_edges] on the model's device).

    Raises:
        InputError: prompts of different lengths or identical, an unknown method, ``steps < 1``,
            a metric without a gradient, a model whose residual stream is not additive.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    steps = _steps(steps)
    c, r = _inputs(model, clean, corrupted)
    graph = component_graph(model)
    if method == "exact":
        runs = ep.prepare(model, graph, c, r, metric)
        values = torch.empty(graph.n_edges, dtype=torch.float64)
        for s in range(0, graph.n_edges, 256):  # one-hot masks a block of edges at a time
            idx = torch.arange(s, min(s + 256, graph.n_edges))
            masks = torch.zeros(len(idx), graph.n_edges, dtype=torch.bool)
            masks[torch.arange(len(idx)), idx] = True
            values[idx] = ep.evaluate(runs, masks, "patch", metric)
        scores = (values - runs.m_corr).to(torch.float32).to(c.device)
        return EdgeScores(graph, scores, method, 1, runs.m_clean, runs.m_corr, runs)
    n = 1 if method == "eap" else steps
    scores, runs = eg.gradient_scores(model, graph, c, r, metric, [k / n for k in range(n)])
    return EdgeScores(graph, scores, method, n, runs.m_clean, runs.m_corr, runs)


def _runs_for(model: Any, clean: TokensLike, corrupted: TokensLike, metric: Metric, graph: ComponentGraph | None = None):
    c, r = _inputs(model, clean, corrupted)
    graph = graph or component_graph(model)
    return ep.prepare(model, graph, c, r, metric)


def circuit_metric(model: Any, clean: TokensLike, corrupted: TokensLike, metric: Metric, edges: Any) -> float:
    """The metric of the circuit ``edges`` (labels, indices or a bool mask [n_edges]): the
    corrupted run in which every edge in ``edges`` carries its upstream node's output in this run
    (computed from the circuit's own inputs; ``embed`` gives the clean embedding) and every other
    edge its upstream node's corrupted output. All edges give the clean metric, none the
    corrupted one. Raises InputError for an unknown edge label."""
    runs = _runs_for(model, clean, corrupted, metric)
    mask = runs.graph.edge_mask(edges)
    return float(ep.evaluate(runs, mask[None], "circuit", metric)[0])


def patch_edge(model: Any, clean: TokensLike, corrupted: TokensLike, metric: Metric, edge: str) -> float:
    """The metric of the corrupted run with one edge patched: the edge's downstream input gets
    ``+ out_up(clean) - out_up(corrupted)`` (through the model's own norm and weights for that
    head's q/k/v, that MLP, or the final residual), and everything after it is recomputed.
    ``method="exact"`` scores are this minus the corrupted metric. InputError for an unknown edge."""
    graph = component_graph(model)
    mask = graph.edge_mask([edge] if isinstance(edge, str) else edge)
    runs = _runs_for(model, clean, corrupted, metric, graph)
    return float(ep.evaluate(runs, mask[None], "patch", metric)[0])


@dataclass(frozen=True)
class FaithfulnessCurve:
    """Normalized faithfulness of the top-scoring edges and of random edge sets.

    Attributes:
        fractions: the edge fractions (0..1), ``sizes``: the edge counts they give (>= 1).
        faithfulness: float64 [len(fractions)], ``(m(C) - m_empty) / (m_full - m_empty)`` for the
            ``size`` edges with the largest ``|score|``; ``random``: the same for random edge sets
            of the same sizes; ``metric``/``metric_random``: the raw ``m(C)``.
        m_full, m_empty: the clean and the corrupted metric.
        auc, auc_random: area under each curve over the fractions (trapezoids, divided by the
            range of fractions covered; 1 = faithful at every size).
        random_edges: the edge indices (LongTensor, CPU) of each random set.
        stats: ``{"shared_prefix", "start", "fallback"}`` of the circuits' runs (see
            :attr:`EdgeScores.stats`).
    """

    fractions: list[float]
    sizes: list[int]
    faithfulness: torch.Tensor
    random: torch.Tensor
    metric: torch.Tensor
    metric_random: torch.Tensor
    m_full: float
    m_empty: float
    auc: float
    auc_random: float
    random_edges: list[torch.Tensor] = field(default_factory=list, repr=False)
    stats: dict = field(default_factory=dict, repr=False)


def _auc(x: list[float], y: torch.Tensor) -> float:
    if len(x) < 2:
        return float(y[0]) if len(x) else float("nan")
    xt = torch.tensor(x, dtype=torch.float64)
    return float(torch.trapezoid(y.double(), xt) / (xt[-1] - xt[0]))


def faithfulness_curve(
    model: Any,
    clean: TokensLike,
    corrupted: TokensLike,
    metric: Metric,
    scores: EdgeScores,
    fractions: Sequence[float] | None = None,
    *,
    seed: int = 0,
) -> FaithfulnessCurve:
    """Exact faithfulness (:func:`circuit_metric`) of the top ``|score|`` edges of ``scores`` at
    each edge fraction (default: the MIB fractions 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100 %), and
    of random edge sets of the same sizes (drawn with ``seed``), all circuits in batched runs.

    Raises:
        InputError: a fraction outside (0, 1], scores from another graph, prompts as in
            :func:`edge_attribution`.
    """
    fr = [float(f) for f in (MIB_FRACTIONS if fractions is None else fractions)]
    if not fr or any(not 0.0 < f <= 1.0 for f in fr):
        raise InputError(f"fractions must lie in (0, 1], got {fr}")
    fr = sorted(fr)
    c, r = _inputs(model, clean, corrupted)
    runs = getattr(scores, "_runs", None)
    # the runs recorded while scoring serve when they are of the same prompts and metric
    if runs is None or runs.weights.model is not model or not (
        torch.equal(runs.clean, c) and torch.equal(runs.corrupted, r) and runs.metric is metric
    ):
        runs = ep.prepare(model, component_graph(model), c, r, metric)
    g = runs.graph
    if not isinstance(scores, EdgeScores) or scores.graph.n_edges != g.n_edges or scores.graph.edges[-1] != g.edges[-1]:
        raise InputError("scores must be the EdgeScores of this model's graph (from edge_attribution)")
    if not runs.m_clean != runs.m_corr:
        raise InputError("the metric has the same value on the clean and the corrupted prompt: faithfulness is undefined")
    sizes = [max(1, min(g.n_edges, round(f * g.n_edges))) for f in fr]
    order = scores.order().to("cpu")
    gen = torch.Generator().manual_seed(int(seed))
    masks = torch.zeros(2 * len(sizes), g.n_edges, dtype=torch.bool)
    random_edges = []
    for i, s in enumerate(sizes):
        masks[i, order[:s]] = True
        random_edges.append(torch.randperm(g.n_edges, generator=gen)[:s].sort().values)
        masks[len(sizes) + i, random_edges[-1]] = True
    full = masks.all(1)
    values = torch.full((masks.shape[0],), runs.m_clean, dtype=torch.float64)
    if bool((~full).any()):
        values[~full] = ep.evaluate(runs, masks[~full], "circuit", metric)
    norm = (values - runs.m_corr) / (runs.m_clean - runs.m_corr)
    k = len(sizes)
    return FaithfulnessCurve(
        fractions=fr, sizes=sizes, faithfulness=norm[:k], random=norm[k:], metric=values[:k],
        metric_random=values[k:], m_full=runs.m_clean, m_empty=runs.m_corr,
        auc=_auc(fr, norm[:k]), auc_random=_auc(fr, norm[k:]), random_edges=random_edges,
        stats=_edge_prefix.stats(runs),
    )
