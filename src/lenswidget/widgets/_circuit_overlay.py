"""The weights overlay of the circuit graph: head -> head q/k/v edges with their composition score.

The circuit graph's edge scores come from data (EAP / EAP-IG on a prompt pair); the overlay puts
beside them what the weights alone say about the same edge ("A Mathematical Framework for
Transformer Circuits"): the Q-, K- or V-composition score of the upstream head into the
downstream head (:func:`lenswidget.analysis.weights.all_composition_scores`, equal to
TransformerLens's ``model.all_composition_scores``) and its z-score against the random-matrix
baseline. An edge into a key/value group ``L{l}KV{g}.k`` of a grouped-query model gets the
largest score over the query heads that share the group (``Composition.group_edges``). Edges
from or into embed, an MLP or logits have no composition score.

The scores are computed once per model (lazily, when the overlay is first turned on) and kept
while the model's parameters are unchanged (an in-place edit of a weight recomputes them).
"""

from __future__ import annotations

import re
import threading
import weakref
from typing import Any, Iterable

import torch

from ..analysis.weights import Composition, all_composition_scores
from ..encode import encode_tensor

_HEAD_EDGE = re.compile(r"L(\d+)H(\d+)->L(\d+)(H|KV)(\d+)\.([qkv])")
_CACHE: "weakref.WeakKeyDictionary[Any, tuple[tuple, dict[str, Composition]]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _fingerprint(model: Any) -> tuple:
    """Storage and in-place version of every parameter: changes when a weight is edited or replaced."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def compositions(model: Any, progress: Any = None, cancel: Any = None) -> dict[str, Composition]:
    """``{"q", "k", "v": Composition}`` of ``model``, computed once per model and weights
    (``progress`` / ``cancel``: as :func:`~lenswidget.analysis.weights.all_composition_scores`)."""
    key = _fingerprint(model)
    with _LOCK:
        hit = _CACHE.get(model)
        if hit is not None and hit[0] == key:
            return hit[1]
    comps = all_composition_scores(model, progress=progress, cancel=cancel)
    with _LOCK:
        _CACHE[model] = (key, comps)
    return comps


def edge_composition(comps: dict[str, Composition], label: str, n_heads: int, n_kv_heads: int) -> tuple[str, float, float] | None:
    """``(kind, score, z)`` of a head -> head edge (``"L0H3->L1H2.k"``, ``"L0H3->L1KV0.k"``), or
    None for an edge with no composition meaning (embed, MLPs, logits). ``z`` is
    ``(score - baseline_mean) / baseline_std`` (:meth:`Composition.zscore`)."""
    m = _HEAD_EDGE.fullmatch(label)
    if m is None:
        return None
    l1, h1, l2, idx = int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(5))
    kind = m.group(6)
    c = comps[kind]
    if m.group(4) == "H":
        score = float(c.scores[l1, h1, l2, idx])
    else:  # a key/value group: the largest score over its query heads (Composition.group_edges)
        per = n_heads // max(1, n_kv_heads)
        score = float(c.scores[l1, h1, l2, idx * per:(idx + 1) * per].max())
    z = (score - c.baseline_mean) / max(c.baseline_std, 1e-12)
    return kind, score, z


def overlay_map(comps: dict[str, Composition], labels: Iterable[str], n_heads: int, n_kv_heads: int) -> dict[str, tuple[str, float, float]]:
    """``{label: (kind, score, z)}`` for the head -> head edges among ``labels`` (order kept)."""
    out = {}
    for label in labels:
        v = edge_composition(comps, label, n_heads, n_kv_heads)
        if v is not None:
            out[label] = v
    return out


def overlay_entry(comps: dict[str, Composition], entries: dict[str, tuple[str, float, float]]) -> dict:
    """The ``overlay`` trait: ``{on: true, labels, kinds, scores <f32 bytes [n]>, z <f32 bytes
    [n]>, n, baseline_mean, baseline_std, max}`` (``max``: the largest composition score of any
    kind, the top of the shading scale)."""
    labels = list(entries)
    scores = torch.tensor([entries[l][1] for l in labels], dtype=torch.float32)
    z = torch.tensor([entries[l][2] for l in labels], dtype=torch.float32)
    first = comps["q"]
    return {
        "on": True, "labels": labels, "kinds": [entries[l][0] for l in labels],
        "scores": encode_tensor(scores, "f32")[0], "z": encode_tensor(z, "f32")[0], "n": len(labels),
        "baseline_mean": float(first.baseline_mean), "baseline_std": float(first.baseline_std),
        "max": max(float(c.scores.max()) for c in comps.values()),
    }


def edge_info(comps: dict[str, Composition], entry: tuple[str, float, float] | None) -> dict | None:
    """What the edge panel shows beside the data score: ``{kind, score, z, baseline_mean,
    baseline_std}``, or None for an edge with no composition score."""
    if entry is None:
        return None
    kind, score, z = entry
    c = comps[kind]
    return {"kind": kind, "score": score, "z": z, "baseline_mean": float(c.baseline_mean), "baseline_std": float(c.baseline_std)}


class WeightsOverlay:
    """The overlay state of one circuit graph: off until :meth:`show` first computes (or takes
    from the cache) the model's composition scores."""

    def __init__(self, n_heads: int, n_kv_heads: int) -> None:
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.comps: dict[str, Composition] | None = None
        self.edges: dict[str, tuple[str, float, float]] = {}
        self.on = False

    def show(self, model: Any, labels: Iterable[str], progress: Any = None, cancel: Any = None) -> dict:
        """Turn on for the edges ``labels`` (those the view holds); returns the ``overlay`` trait.
        A cancelled first computation raises :class:`~lenswidget.errors.Cancelled` and leaves
        the overlay as it was."""
        self.comps = compositions(model, progress, cancel)
        self.on = True
        self.edges = overlay_map(self.comps, labels, self.n_heads, self.n_kv_heads)
        return overlay_entry(self.comps, self.edges)

    def hide(self) -> dict:
        self.on, self.edges = False, {}
        return {}

    def edge(self, label: str) -> dict | None:
        """The edge panel's composition numbers (None when off or not a head -> head edge)."""
        if not self.on or self.comps is None:
            return None
        entry = self.edges.get(label) or edge_composition(self.comps, label, self.n_heads, self.n_kv_heads)
        return edge_info(self.comps, entry)

    def drawn(self, drawn_edges: Iterable[str]) -> dict:
        """What the view draws: ``{on, baseline_mean, baseline_std, edges: {label: {kind, score, z}}}``
        for the head -> head edges among ``drawn_edges``."""
        first = self.comps["q"] if self.on and self.comps else None
        return {
            "on": self.on,
            "baseline_mean": float(first.baseline_mean) if first else None,
            "baseline_std": float(first.baseline_std) if first else None,
            "edges": {l: {"kind": self.edges[l][0], "score": self.edges[l][1], "z": self.edges[l][2]}
                      for l in drawn_edges if l in self.edges},
        }
