"""The circuit graph's weights overlay without a kernel: head -> head edges carry TransformerLens's
own composition scores (``model.all_composition_scores``), KV-group edges ``Composition.group_edges``;
computed once per model. The grouped-query check runs inside test_circuit_widget's GQA test (it
reuses that circuit)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from lenswidget import InputError
from lenswidget.widgets.circuit import CircuitGraph

from .wire import Wire

CLEAN = "red fish blue tree king ship red fish blue tree king"
CORRUPT = "red fish blue tree king moon red fish blue tree king"


@pytest.fixture(scope="module")
def graph(toy_lens):
    return CircuitGraph(toy_lens, CLEAN, CORRUPT, "ship", "moon", method="eap", size=10)


@pytest.fixture()
def wire(graph):
    return Wire(graph)


def _tl_scores(model):
    """TransformerLens's own ``all_composition_scores`` [L, H, L, H] of each kind."""
    with torch.no_grad():
        return {k: model.all_composition_scores(k.upper()).scores.detach() for k in "qkv"}


def _tl_composition(tl, model, label):
    """TL's composition score (``tl`` from :func:`_tl_scores`) of a head -> head edge; for a key/value
    group the largest over the query heads sharing it."""
    l1, h1, l2, sep, idx, port = re.fullmatch(r"L(\d+)H(\d+)->L(\d+)(H|KV)(\d+)\.([qkv])", label).groups()
    s = tl[port]
    l1, h1, l2, idx = int(l1), int(h1), int(l2), int(idx)
    if sep == "H":
        return float(s[l1, h1, l2, idx])
    per = model.cfg.n_heads // model.cfg.n_key_value_heads
    return float(s[l1, h1, l2, idx * per:(idx + 1) * per].max())


def test_weights_overlay_is_transformerlens_composition(graph, wire, toy_model):
    from lenswidget.analysis.weights import random_baseline

    model = toy_model
    graph.set_size(30)
    reply = wire.request("weights_overlay", {"on": True})
    assert reply["ok"], reply
    drawn = reply["result"]["edges"]
    head_edges = [l for l in graph.current["edges"] if "->L" in l and not l.startswith(("embed", "mlp"))]
    assert head_edges and set(drawn) == set(head_edges)  # every drawn head -> head edge, no other
    mean, std = random_baseline(model)
    tl = _tl_scores(model)
    for label, v in drawn.items():
        want = _tl_composition(tl, model, label)
        assert v["score"] == pytest.approx(want, abs=1e-5) and v["kind"] == label[-1]
        assert v["z"] == pytest.approx((want - mean) / std, rel=1e-4)
    # the trait holds every head -> head edge of the top edges the view holds (for local redraws)
    ov = graph.overlay
    labels, scores = ov["labels"], np.frombuffer(ov["scores"], dtype="<f4")
    held = [l for l in graph.edges["labels"] if "->L" in l and not l.startswith(("embed", "mlp"))]
    assert labels == held and len(labels) == ov["n"] == 48  # 4 x 4 heads x q/k/v into layer 1
    tl_all = [_tl_composition(tl, model, l) for l in labels]
    np.testing.assert_allclose(scores, tl_all, atol=1e-5)
    assert max(tl_all) - min(tl_all) > 0.05  # not one value for all: the weights tell edges apart
    assert ov["max"] == pytest.approx(max(float(t.max()) for t in tl.values()), abs=1e-5)
    # the edge panel: composition beside the data estimate; an edge into logits has none
    r = graph.patch_edge("L0H1->L1H1.k")
    assert r["composition"]["score"] == pytest.approx(_tl_composition(tl, model, "L0H1->L1H1.k"), abs=1e-5)
    assert r["composition"]["kind"] == "k" and r["estimate"] == pytest.approx(graph.edge_scores.score("L0H1->L1H1.k"))
    assert abs(r["composition"]["score"] - r["estimate"]) > 0.01  # two different numbers
    assert graph.patch_edge("L1H1->logits")["composition"] is None
    # off: nothing attached, the panel's number goes with it
    graph.patch_edge("L0H1->L1H1.k")
    off = graph.weights_overlay(False)
    assert off["edges"] == {} and graph.overlay == {} and graph.edge_result["composition"] is None
    assert graph.patch_edge("L0H1->L1H1.q")["composition"] is None


def test_weights_overlay_follows_rescoring_and_is_computed_once(toy_lens, monkeypatch):
    from lenswidget.widgets import _circuit_overlay

    calls = []
    real = _circuit_overlay.all_composition_scores
    monkeypatch.setattr(_circuit_overlay, "all_composition_scores", lambda m, **kw: calls.append(1) or real(m, **kw))
    monkeypatch.setattr(_circuit_overlay, "_CACHE", __import__("weakref").WeakKeyDictionary())
    g = CircuitGraph(toy_lens, CLEAN, CORRUPT, "ship", "moon", method="eap", size=20, max_edges=30)
    assert g.overlay == {} and calls == []  # lazily: not before the overlay is turned on
    g.weights_overlay(True)
    first = list(g.overlay["labels"])
    g.score("eap-ig", 2)  # new top edges: the overlay is rebuilt for them, from the cached scores
    held = [l for l in g.edges["labels"] if "->L" in l and not l.startswith(("embed", "mlp"))]
    assert g.overlay["labels"] == held and g.overlay["labels"] != first
    g2 = CircuitGraph(toy_lens, CLEAN, CORRUPT, "ship", "moon", method="eap", size=5)
    g2.weights_overlay(True)
    assert calls == [1]  # once per model


def test_first_overlay_reports_progress_and_can_be_cancelled(toy_lens, monkeypatch):
    """The first computation (seconds on SmolLM2) runs in the background with progress; a cancel
    leaves the overlay off and the next request computes it."""
    from lenswidget.widgets import _circuit_overlay
    from lenswidget.widgets.base import Progress

    monkeypatch.setattr(_circuit_overlay, "_CACHE", __import__("weakref").WeakKeyDictionary())
    g = CircuitGraph(toy_lens, CLEAN, CORRUPT, "ship", "moon", method="eap", size=10)
    w = Wire(g)
    monkeypatch.setattr(Progress, "cancel_requested", lambda self: True)
    reply = w.request("weights_overlay", {"on": True})
    assert not reply["ok"] and reply["error"]["kind"] == "cancelled", reply
    assert g.overlay == {} and g._overlay.on is False
    monkeypatch.undo()
    monkeypatch.setattr(_circuit_overlay, "_CACHE", __import__("weakref").WeakKeyDictionary())
    reply = w.request("weights_overlay", {"on": True}, rid="r2")
    assert reply["ok"] and reply["result"]["on"] is True
    steps = [(m["done"], m["total"]) for m in w.progress() if m["id"] == "r2"]
    assert steps and steps[-1][0] == steps[-1][1] and len(steps) >= 1, steps
    assert g.overlay["labels"]


def test_bad_overlay_argument_is_an_error(graph, wire):
    reply = wire.request("weights_overlay", {"on": "yes"})
    assert not reply["ok"] and "must be bool" in reply["error"]["message"]
    with pytest.raises(InputError, match="on .True. or off"):
        graph.weights_overlay("yes")
    assert wire.request("set_size", {"size": 12})["ok"]


def check_grouped_overlay(model, g):
    """The weights overlay on a grouped-query model (4 query heads, 2 key/value heads): K/V edges
    go to key/value groups, valued as ``Composition.group_edges`` and TL's scores say."""
    from lenswidget.analysis.weights import all_composition_scores

    g.weights_overlay(True)
    ov = g.overlay
    got = dict(zip(ov["labels"], np.frombuffer(ov["scores"], dtype="<f4").tolist()))
    kv = [l for l in got if "KV" in l]
    assert kv and all(l.endswith((".k", ".v")) for l in kv)
    assert not any(l.endswith((".k", ".v")) and "KV" not in l for l in got)  # K/V edges go to groups
    comps = all_composition_scores(model)
    grouped = {**comps["k"].group_edges(2), **comps["v"].group_edges(2)}
    tl = _tl_scores(model)
    for label in kv:
        assert got[label] == pytest.approx(grouped[label], abs=1e-5)
        assert got[label] == pytest.approx(_tl_composition(tl, model, label), abs=1e-5)
    q = [l for l in got if l.endswith(".q")]
    assert q and all(got[l] == pytest.approx(comps["q"].edges()[l], abs=1e-6) for l in q)
    # a group's value is its strongest query head's, not a mean: check one that differs
    label = kv[0]
    l1, h1, grp = int(label[1]), int(label.split("H")[1].split("-")[0]), int(label.split("KV")[1][0])
    per_head = comps[label[-1]].scores[l1, h1, 1, 2 * grp:2 * grp + 2]
    assert float(per_head.max()) - float(per_head.min()) > 1e-3
    # an in-place weight edit is seen: the cached scores are recomputed
    k_edge = next(l for l in kv if l.endswith(".k"))
    before = g.patch_edge(k_edge)["composition"]["score"]
    w_k = model.blocks[1].attn.k.weight
    with torch.no_grad():
        w_k.copy_(w_k[:1].expand_as(w_k).clone())  # every key row the same: a rank-1 W_K
    g.weights_overlay(True)
    after = g.patch_edge(k_edge)["composition"]
    assert abs(after["score"] - before) > 0.02
    assert after["score"] == pytest.approx(_tl_composition(_tl_scores(model), model, k_edge), abs=1e-5)
