"""The component graph of a transformer (:func:`component_graph`): nodes, readers and edges.

Kept apart from :mod:`.circuits` so the patching engine (:mod:`._edge_patching`) and the scoring
code share one description of the graph without importing each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError
from .hooks import head_label

_HEAD = re.compile(r"^L(\d+)H(\d+)$")
_KV = re.compile(r"^L(\d+)KV(\d+)$")
_MLP = re.compile(r"^mlp(\d+)$")


@dataclass(frozen=True)
class Reader:
    """One input of the graph: what an edge feeds.

    ``kind`` is ``"q"``, ``"k"``, ``"v"`` (a head's, or on grouped-query models a KV group's,
    query/key/value input), ``"mlp"`` or ``"logits"``; ``index`` the head (q), the KV group (k, v
    on grouped-query models; the head otherwise), ``None`` for mlp/logits. ``n_up`` is how many
    writers (a prefix of ``ComponentGraph.writers``) feed it; its edges are
    ``start .. start + n_up`` in the edge list.
    """

    label: str
    node: str
    kind: str
    layer: int
    index: int | None
    n_up: int
    start: int


@dataclass(frozen=True, eq=False)
class ComponentGraph:
    """The component graph of a model. See :func:`~lenswidget.analysis.component_graph`.

    Attributes:
        nodes: node labels, bottom to top: ``"embed"``, then per layer ``"L{l}H{h}"`` for every
            head and ``"mlp{l}"`` (models with MLPs), then ``"logits"``.
        writers: the nodes with outgoing edges (``nodes`` without ``"logits"``), in order; a
            writer's index is its row in ``upstream``.
        readers: every node input (:class:`Reader`), in forward order; ``downstream`` indexes it.
        edges: ``n_edges`` labels ``"{up}->{down}"`` (``"L0H3->L1H2.k"``, ``"embed->mlp0"``,
            ``"mlp5->logits"``, ``"L2H0->L4KV1.v"`` on grouped-query models), grouped by reader.
        upstream: LongTensor [n_edges], the writer index of each edge.
        downstream: LongTensor [n_edges], the reader index of each edge.
        n_layers, n_heads, n_kv_heads, has_mlp, parallel: the model's layout (``n_kv_heads ==
            n_heads`` without grouped-query attention; ``parallel``: attention and MLP read the
            same residual, as in Pythia, so a layer's heads do not feed its MLP).
    """

    nodes: list[str]
    writers: list[str]
    readers: list[Reader]
    edges: list[str]
    upstream: torch.Tensor
    downstream: torch.Tensor
    n_layers: int
    n_heads: int
    n_kv_heads: int
    has_mlp: bool
    parallel: bool
    _edge_index: dict[str, int] = field(default_factory=dict, repr=False)
    _node_index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def grouped(self) -> bool:
        """Whether keys and values belong to KV groups (grouped-query attention)."""
        return self.n_kv_heads != self.n_heads

    @property
    def edge_upstream(self) -> list[str]:
        """The upstream node label of every edge."""
        return [self.writers[i] for i in self.upstream.tolist()]

    @property
    def edge_downstream(self) -> list[str]:
        """The downstream reader label of every edge (``"L1H2.k"``, ``"mlp0"``, ``"logits"``)."""
        return [self.readers[i].label for i in self.downstream.tolist()]

    def edge_index(self, label: str) -> int:
        """The index of edge ``label``; InputError for an unknown label."""
        try:
            return self._edge_index[label]
        except (KeyError, TypeError):
            raise InputError(
                f"unknown edge {label!r}: edges are labelled '{{up}}->{{down}}', e.g. "
                f"{self.edges[0]!r} or {self.edges[-1]!r}",
                details={"edge": str(label)},
            ) from None

    def node_index(self, label: str) -> int:
        """The index of node ``label`` in ``nodes``; InputError for an unknown label."""
        try:
            return self._node_index[label]
        except (KeyError, TypeError):
            raise InputError(
                f"unknown node {label!r}: nodes are 'embed', 'L{{l}}H{{h}}', 'mlp{{l}}' and 'logits'",
                details={"node": str(label)},
            ) from None

    def node_layer(self, label: str) -> int:
        """The layer of a node or reader label: -1 for ``embed``, ``n_layers`` for ``logits``,
        ``l`` for ``L{l}H{h}``, ``L{l}KV{g}``, ``mlp{l}`` (a ``.q``/``.k``/``.v`` suffix is allowed)."""
        base = str(label).split(".")[0]
        if base == "embed":
            return -1
        if base == "logits":
            return self.n_layers
        for pat in (_HEAD, _KV, _MLP):
            m = pat.match(base)
            if m and int(m.group(1)) < self.n_layers:
                return int(m.group(1))
        self.node_index(base)  # raises the InputError
        raise AssertionError  # pragma: no cover

    def edge_mask(self, edges: Any) -> torch.Tensor:
        """BoolTensor [n_edges] (CPU) true on ``edges``: labels, indices, or a bool mask."""
        if isinstance(edges, torch.Tensor) and edges.dtype == torch.bool:
            if edges.shape != (self.n_edges,):
                raise InputError(f"an edge mask must have shape [{self.n_edges}], got {tuple(edges.shape)}")
            return edges.cpu()
        if isinstance(edges, str):
            edges = [edges]
        mask = torch.zeros(self.n_edges, dtype=torch.bool)
        idx = [e if isinstance(e, int) else self.edge_index(e) for e in (edges.tolist() if isinstance(edges, torch.Tensor) else edges)]
        if any(not 0 <= i < self.n_edges for i in idx):
            raise InputError(f"edge indices must lie in [0, {self.n_edges})")
        mask[idx] = True
        return mask

    def __repr__(self) -> str:
        return f"ComponentGraph({self.n_nodes} nodes, {self.n_edges} edges, {self.n_layers} layers)"


def component_graph(model: Any) -> ComponentGraph:
    """The component graph of ``model``: nodes ``embed`` (token + positional embeddings, i.e.
    ``blocks.0.hook_resid_pre``), ``L{l}H{h}`` (each head's output ``z @ W_O``), ``mlp{l}``
    (``blocks.{l}.hook_mlp_out``; none on attention-only models) and ``logits`` (the final
    residual, read through ``ln_final`` and the unembedding).

    An edge runs from each node to the input of every later node: into a head, separately into
    its query, key and value input (``.q``, ``.k``, ``.v``; on grouped-query models the key and
    value edges go to the KV group, ``L{l}KV{g}.k``/``.v``); into ``mlp{l}`` from every node
    before it (on parallel-attention models such as Pythia, not from layer ``l``'s own heads);
    into ``logits`` from every node.

    Sizes: GPT-2 small 158 nodes and 32,491 edges (as EAP-IG's graph); SmolLM2-135M (30 layers,
    9 heads, 3 KV groups) 302 nodes and 70,651 edges; the toy model (2 attention-only layers of 4
    heads) 10 nodes and 81 edges.

    Raises:
        InputError: not a TransformerLens model.
    """
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(model, "blocks"):
        raise InputError(f"circuits need a TransformerLens model (TransformerBridge), got {type(model).__name__}")
    n_layers, n_heads = int(cfg.n_layers), int(cfg.n_heads)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
    hooks = model.hook_dict
    has_mlp = not bool(getattr(cfg, "attn_only", False)) and "blocks.0.hook_mlp_out" in hooks
    parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
    grouped = n_kv != n_heads

    writers = ["embed"]
    readers: list[Reader] = []
    edges: list[str] = []
    up: list[int] = []
    down: list[int] = []

    def add_reader(label: str, node: str, kind: str, layer: int, index: int | None, n_up: int) -> None:
        readers.append(Reader(label, node, kind, layer, index, n_up, len(edges)))
        r = len(readers) - 1
        for u in range(n_up):
            edges.append(f"{writers[u]}->{label}")
            up.append(u)
            down.append(r)

    for l in range(n_layers):
        before = len(writers)
        for h in range(n_heads):
            add_reader(f"{head_label(l, h)}.q", head_label(l, h), "q", l, h, before)
        for kind in ("k", "v"):
            for g in range(n_kv):
                node = f"L{l}KV{g}" if grouped else head_label(l, g)
                add_reader(f"{node}.{kind}", node, kind, l, g, before)
        writers.extend(head_label(l, h) for h in range(n_heads))
        if has_mlp:
            add_reader(f"mlp{l}", f"mlp{l}", "mlp", l, None, before if parallel else len(writers))
            writers.append(f"mlp{l}")
    add_reader("logits", "logits", "logits", n_layers, None, len(writers))
    nodes = writers + ["logits"]
    return ComponentGraph(
        nodes=nodes,
        writers=writers,
        readers=readers,
        edges=edges,
        upstream=torch.tensor(up, dtype=torch.long),
        downstream=torch.tensor(down, dtype=torch.long),
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        has_mlp=has_mlp,
        parallel=parallel,
        _edge_index={e: i for i, e in enumerate(edges)},
        _node_index={n: i for i, n in enumerate(nodes)},
    )


def prune_to_paths(graph: ComponentGraph, masks: torch.Tensor) -> torch.Tensor:
    """``masks`` [R, n_edges] (bool) restricted to edges on a path ``embed -> ... -> logits``
    inside each row's set.

    In a circuit evaluation (``mode="circuit"``) nothing else matters: a node none of whose
    inputs carries a changed value computes its corrupted output, so an edge out of it carries the
    corrupted value whether or not it is in the set; and a node from which no edge of the set
    leads on to ``logits`` changes nothing the metric reads. Pruning leaves the metric unchanged
    and lets an evaluation skip rows with no path at all and layers before the first kept edge.
    """
    R = masks.shape[0]
    m = masks.to("cpu", torch.bool)
    n_w = len(graph.writers)
    per = graph.n_heads + (1 if graph.has_mlp else 0)
    ratio = graph.n_heads // graph.n_kv_heads
    spans = {}
    for i, r in enumerate(graph.readers):
        spans.setdefault((r.layer, r.kind), []).append(i)

    def edges_of(layer: int, kind: str) -> torch.Tensor:
        rs = spans[(layer, kind)]
        return torch.stack([torch.arange(graph.readers[i].start, graph.readers[i].start + graph.readers[i].n_up) for i in rs])

    live = torch.zeros(R, n_w, dtype=torch.bool)
    live[:, 0] = True
    for l in range(graph.n_layers):
        head0 = 1 + l * per
        hit = {}
        for kind in ("q", "k", "v"):
            e = edges_of(l, kind)
            hit[kind] = (m[:, e] & live[:, None, : e.shape[1]]).any(-1)  # [R, count]
        group = torch.arange(graph.n_heads) // ratio
        live[:, head0 : head0 + graph.n_heads] = hit["q"] | hit["k"][:, group] | hit["v"][:, group]
        if graph.has_mlp:
            e = edges_of(l, "mlp")
            live[:, head0 + graph.n_heads] = (m[:, e] & live[:, None, : e.shape[1]]).any(-1)[:, 0]
    keep = m & live[:, graph.upstream]
    useful = torch.zeros(R, n_w, dtype=torch.bool)
    kept = torch.zeros_like(keep)

    def mark(layer: int, kind: str, reader_useful: torch.Tensor) -> None:
        e = edges_of(layer, kind)  # [count, n_up]
        k = keep[:, e] & reader_useful[:, :, None]
        kept[:, e.reshape(-1)] = k.reshape(R, -1)
        useful[:, : e.shape[1]] |= k.any(1)

    mark(graph.n_layers, "logits", torch.ones(R, 1, dtype=torch.bool))
    for l in reversed(range(graph.n_layers)):
        head0 = 1 + l * per
        if graph.has_mlp:
            mark(l, "mlp", useful[:, head0 + graph.n_heads][:, None])
        heads = useful[:, head0 : head0 + graph.n_heads]
        groups = heads.reshape(R, graph.n_kv_heads, ratio).any(-1)
        mark(l, "q", heads)
        mark(l, "k", groups)
        mark(l, "v", groups)
    return kept.to(masks.device)
