"""What the circuit view draws, computed from an edge list: label parsing, pruning, layout rows.

Pure Python over edge labels ``"{up}->{down}"`` (see :func:`lenswidget.analysis.component_graph`):
``up`` is ``embed``, ``L{l}H{h}`` or ``mlp{l}``; ``down`` is ``L{l}H{h}.{q,k,v}``,
``L{l}KV{g}.{k,v}`` (a key/value group of a grouped-query model), ``mlp{l}`` or ``logits``.
``js/circuit/graph.ts`` mirrors :func:`prune` for instant redraws; both are tested on the same
edge lists.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NODE = re.compile(r"embed|logits|L(\d+)H(\d+)|mlp(\d+)")
_DOWN = re.compile(r"(?:L(\d+)H(\d+)|L(\d+)KV(\d+))\.([qkv])|mlp(\d+)|logits")


@dataclass(frozen=True)
class Edge:
    """One parsed edge label. ``targets`` are the nodes its downstream input feeds (a KV group
    feeds every query head that shares it); ``port`` is ``"q"``, ``"k"``, ``"v"`` or ``""``."""

    label: str
    up: str
    down: str
    port: str
    targets: tuple[str, ...]


def parse_edge(label: str, n_heads: int, n_kv_heads: int) -> Edge:
    """Parse ``"{up}->{down}"``; ``ValueError`` for anything else."""
    up, sep, down = label.partition("->")
    if not sep or _NODE.fullmatch(up) is None or up == "logits":
        raise ValueError(f"not an edge label: {label!r}")
    m = _DOWN.fullmatch(down)
    if m is None:
        raise ValueError(f"not an edge label: {label!r}")
    if m.group(1) is not None:
        node = f"L{m.group(1)}H{m.group(2)}"
        return Edge(label, up, node, m.group(5), (node,))
    if m.group(3) is not None:
        layer, group = int(m.group(3)), int(m.group(4))
        per = max(1, n_heads // max(1, n_kv_heads))
        heads = tuple(f"L{layer}H{h}" for h in range(group * per, (group + 1) * per))
        return Edge(label, up, f"L{layer}KV{group}", m.group(5), heads)
    node = down  # mlp{l} or logits
    return Edge(label, up, node, "", (node,))


def node_order(node: str) -> float:
    """Position in the forward pass: embed first, a layer's heads before its MLP, logits last."""
    if node == "embed":
        return -1.0
    if node == "logits":
        return float("inf")
    m = _NODE.fullmatch(node)
    if m is None:
        raise ValueError(f"not a node label: {node!r}")
    if m.group(1) is not None:
        return 2.0 * int(m.group(1)) + int(m.group(2)) / 1e4  # heads in head order
    return 2.0 * int(m.group(3)) + 1.0


def _band(node: str) -> float:
    """``node_order`` without the head tie-break: nodes of one band never feed each other."""
    o = node_order(node)
    return o if math.isinf(o) else float(math.floor(o))


def prune(edges: list[Edge]) -> tuple[list[Edge], list[str]]:
    """The edges and nodes of ``edges`` that matter: on a path from ``embed`` to ``logits``.

    An edge is kept when its upstream node is reached from ``embed`` and one of its targets has
    a path to ``logits`` (through ``edges``). Dropping the others changes no circuit metric: a
    node no kept edge reaches computes its corrupted output, and a node with no path to logits
    cannot move them. Returns ``(kept edges in input order, their nodes in forward order)``."""
    alive = {"logits"}
    for e in sorted(edges, key=lambda e: -min(_band(t) for t in e.targets)):
        if any(t in alive for t in e.targets):
            alive.add(e.up)
    reached = {"embed"}
    for e in sorted(edges, key=lambda e: _band(e.up)):
        if e.up in reached:
            reached.update(e.targets)
    kept = [e for e in edges if e.up in reached and any(t in alive for t in e.targets)]
    used = {e.up for e in kept} | {t for e in kept for t in e.targets if t in alive}
    return kept, sorted(used, key=node_order)
