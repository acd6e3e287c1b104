"""The CircuitGraph protocol without a kernel, against hooked runs written here.

The toy model's induction prompt: the clean prompt repeats ``red fish blue tree king ship``; the
corrupted one had ``moon`` where the first copy had ``ship``, so the induction heads copy the
wrong token. References are TransformerLens runs with hooks written in this file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lenswidget import InputError, Lens, models
from lenswidget.analysis import circuits, direct_logit_attribution, logit_diff_metric, promoted_tokens
from lenswidget.widgets._circuit_data import parse_edge, prune
from lenswidget.widgets.circuit import CircuitGraph

from .test_circuit_overlay import check_grouped_overlay
from .wire import Wire

CLEAN = "red fish blue tree king ship red fish blue tree king"
CORRUPT = "red fish blue tree king moon red fish blue tree king"


@pytest.fixture(scope="module")
def graph(toy_lens):
    return CircuitGraph(toy_lens, CLEAN, CORRUPT, "ship", "moon", size=10)


@pytest.fixture()
def wire(graph):
    return Wire(graph)


@pytest.fixture(scope="module")
def ref(toy_lens):
    """Hand references: tokens, metric, both runs' caches, the metric of a tokens -> logits run."""
    model = toy_lens.model
    clean, corrupt = toy_lens.tokenize(CLEAN), toy_lens.tokenize(CORRUPT)
    metric = logit_diff_metric([toy_lens.token_id("ship")], [toy_lens.token_id("moon")])
    with torch.no_grad():
        _, cc = model.run_with_cache(clean)
        _, rc = model.run_with_cache(corrupt)
    m_clean = float(metric(model(clean).detach()))
    m_corr = float(metric(model(corrupt).detach()))
    return {"model": model, "clean": clean, "corrupt": corrupt, "metric": metric, "cc": cc, "rc": rc,
            "m_clean": m_clean, "m_corr": m_corr}


def _head_out(model, cache, layer, head):
    """[batch, pos, d_model]: head (layer, head)'s write into the residual stream, z @ W_O."""
    return cache[f"blocks.{layer}.attn.hook_z"][:, :, head] @ model.blocks[layer].attn.W_O[head]


def _with_hooks(ref, tokens, hooks):
    with torch.no_grad():
        return float(ref["metric"](ref["model"].run_with_hooks(tokens, fwd_hooks=hooks)))


# ---------------------------------------------------------------------------------------------
# EDGES / GQA are the lists of js/test/circuit.test.ts ("prunes ... as Python does")
EDGES = ["L1H2->logits", "L0H1->L1H2.k", "embed->L1H2.q", "embed->L0H1.v", "L0H3->L1H0.q", "embed->logits",
         "L1H0->logits", "embed->L0H3.q"]
GQA = ["L1H3->logits", "L0H0->L1KV1.k", "L0H1->L1KV0.v", "embed->L0H0.q"]


def test_prune_matches_the_view():
    def run(labels, n, kv=4):
        kept, nodes = prune([parse_edge(l, 4, kv) for l in labels[:n]])
        return [e.label for e in kept], nodes

    assert run(EDGES, 5) == (EDGES[:4], ["embed", "L0H1", "L1H2", "logits"])
    assert run(EDGES, 7) == (EDGES[:4] + ["embed->logits"], ["embed", "L0H1", "L1H2", "logits"])
    assert run(EDGES, 8) == (EDGES, ["embed", "L0H1", "L0H3", "L1H0", "L1H2", "logits"])
    assert run(GQA, 4, kv=2) == (["L1H3->logits", "L0H0->L1KV1.k", "embed->L0H0.q"], ["embed", "L0H0", "L1H3", "logits"])
    assert parse_edge("L0H0->L1KV1.v", 4, 2).targets == ("L1H2", "L1H3")
    for junk in ["logits->L0H0.q", "L0H1->L1H2", "x->logits", "L0H1->L1H2.z"]:
        with pytest.raises(ValueError):
            parse_edge(junk, 4, 4)


def test_construction_traits(graph, ref):
    model = ref["model"]
    g = circuits.component_graph(model)
    assert graph.n_edges == g.n_edges == 81  # 4 x 3 into layer 0, 5 x 4 x 3 into layer 1, 9 into logits
    assert graph.clean_value == pytest.approx(ref["m_clean"], abs=1e-4)
    assert graph.corrupted_value == pytest.approx(ref["m_corr"], abs=1e-4)
    assert graph.clean_value - graph.corrupted_value > 10
    entry = graph.edges
    scores = np.frombuffer(entry["scores"], dtype="<f4")
    assert entry["n"] == len(entry["labels"]) == 81 and entry["n_edges"] == 81
    assert list(np.abs(scores)) == sorted(np.abs(scores), reverse=True)
    by_label = dict(zip(graph.edge_scores.edges, graph.edge_scores.scores.tolist()))
    assert all(by_label[l] == pytest.approx(float(s), abs=1e-6) for l, s in zip(entry["labels"], scores))
    assert graph.size == 10 and graph.current["size"] == 10 and graph.method == "eap-ig"
    assert set(graph.curve) >= {"fractions", "sizes", "faithfulness", "random", "auc", "auc_random"}


def test_full_circuit_is_the_clean_run(graph, ref):
    cur = graph.set_size(graph.n_edges)
    assert cur["metric"] == pytest.approx(ref["m_clean"], abs=1e-4)
    assert cur["faithfulness"] == pytest.approx(1.0, abs=1e-5)
    assert graph.faithfulness()["current"]["size"] == 81


def test_set_size_is_the_exact_metric_of_the_top_edges(graph, wire, ref):
    reply = wire.request("set_size", {"size": 8})
    assert reply["ok"]
    cur = reply["result"]
    s = graph.edge_scores.scores
    top = [graph.edge_scores.edges[i] for i in torch.argsort(s.abs(), descending=True)[:8].tolist()]
    m = circuits.circuit_metric(ref["model"], ref["clean"], ref["corrupt"], ref["metric"], top)
    assert cur["metric"] == pytest.approx(m, abs=1e-5)
    assert cur["faithfulness"] == pytest.approx((m - ref["m_corr"]) / (ref["m_clean"] - ref["m_corr"]), abs=1e-6)
    assert 0.2 < cur["faithfulness"] < 0.99  # neither the corrupted nor the clean run
    kept, nodes = prune([parse_edge(l, 4, 4) for l in top])
    assert cur["edges"] == [e.label for e in kept] and cur["nodes"] == nodes
    assert graph.current == cur and graph.size == 8
    # the view's curve point is the same circuit
    assert graph.faithfulness()["current"] == {"size": 8, "fraction": 8 / 81, "faithfulness": cur["faithfulness"], "metric": cur["metric"]}


def test_remove_node_equals_a_clean_run_with_that_head_corrupted(graph, wire, ref):
    graph.set_size(graph.n_edges)
    model, cc, rc = ref["model"], ref["cc"], ref["rc"]
    for label, layer, head in [("L1H3", 1, 3), ("L0H1", 0, 1)]:
        graph.restore()
        reply = wire.request("remove_node", {"label": label})
        assert reply["ok"], reply

        def hook(z, hook, _h=head, _l=layer):
            z[:, :, _h] = rc[f"blocks.{_l}.attn.hook_z"][:, :, _h]
            return z

        expected = _with_hooks(ref, ref["clean"], [(f"blocks.{layer}.attn.hook_z", hook)])
        assert reply["result"]["metric"] == pytest.approx(expected, abs=1e-4)
        assert abs(expected - ref["m_clean"]) > 0.5  # the head matters
        assert reply["result"]["metric_full"] == pytest.approx(ref["m_clean"], abs=1e-4)
        assert graph.removed == [label]
    # removals accumulate; restore puts them back
    assert wire.request("remove_node", {"label": "L1H3"})["ok"]
    assert graph.removed == ["L0H1", "L1H3"]
    assert wire.request("restore")["result"]["metric"] == pytest.approx(ref["m_clean"], abs=1e-4)
    assert graph.removed == []


def test_edge_into_logits_equals_a_hooked_run(graph, wire, ref):
    model, cc, rc = ref["model"], ref["cc"], ref["rc"]
    last = model.cfg.n_layers - 1
    for head in range(4):
        label = f"L1H{head}->logits"
        reply = wire.request("patch_edge", {"edge": label})
        assert reply["ok"]
        delta = (_head_out(model, cc, 1, head) - _head_out(model, rc, 1, head)).detach()

        def add(resid, hook, _d=delta):
            return resid + _d

        expected = _with_hooks(ref, ref["corrupt"], [(f"blocks.{last}.hook_resid_post", add)])
        r = reply["result"]
        assert r["value"] == pytest.approx(expected, abs=1e-4)
        assert r["effect"] == pytest.approx(expected - ref["m_corr"], abs=1e-4)
        assert r["estimate"] == pytest.approx(graph.edge_scores.score(label), abs=1e-6)
        if head == 1:
            assert r["effect"] > 1.0  # an induction head: far from the unpatched run
    assert graph.edge_result["edge"] == "L1H3->logits" and graph.selected == {"edge": "L1H3->logits"}


def test_edge_into_a_key_equals_a_hooked_run(graph, ref):
    """L0H1 -> L1H1.k: only head L1H1's key is recomputed, with the model's own ln1 and W_K, from
    the residual plus L0H1's clean − corrupted output; everything else is the corrupted run."""
    model, cc, rc = ref["model"], ref["cc"], ref["rc"]
    r = graph.patch_edge("L0H1->L1H1.k")
    delta = (_head_out(model, cc, 0, 1) - _head_out(model, rc, 0, 1)).detach()
    attn = model.blocks[1].attn
    with torch.no_grad():
        normed = model.blocks[1].ln1(rc["blocks.1.hook_resid_pre"] + delta)
        k_new = normed @ attn.W_K[1] + attn.b_K[1]

    def patch_k(k, hook):
        k = k.clone()
        k[:, :, 1] = k_new
        return k

    expected = _with_hooks(ref, ref["corrupt"], [("blocks.1.attn.hook_k", patch_k)])
    assert r["value"] == pytest.approx(expected, abs=1e-4)
    assert abs(expected - ref["m_corr"]) > 1e-2
    assert r["effect"] == pytest.approx(expected - ref["m_corr"], abs=1e-4)


def test_node_click(graph, wire, ref, toy_lens):
    reply = wire.request("node", {"label": "L1H1"})
    assert reply["ok"]
    r = reply["result"]
    pattern = ref["cc"]["blocks.1.attn.hook_pattern"][0, 1, -1]
    np.testing.assert_allclose(r["attention"]["weights"], pattern.numpy(), atol=1e-6)
    assert r["attention"]["pos"] == ref["clean"].shape[1] - 1
    # direct logit attribution to ship − moon, by hand: (out − mean(out)) / scale · (γ ⊙ (W_U[ship] − W_U[moon]))
    model = ref["model"]
    out = _head_out(model, ref["cc"], 1, 1)[0, -1]
    scale = ref["cc"]["ln_final.hook_scale"][0, -1].reshape(-1)[0]
    gamma = model.ln_final._original_component.weight
    u = model.W_U[:, toy_lens.token_id("ship")] - model.W_U[:, toy_lens.token_id("moon")]
    hand = float((((out - out.mean()) / scale * gamma) @ u).detach())
    assert r["dla"] == pytest.approx(hand, abs=1e-4)
    assert abs(hand) > 0.5
    p = promoted_tokens(model, ref["clean"], "L1H1", pos=-1, k=10)
    assert [t["id"] for t in r["promoted"]] == p.promoted_ids.tolist()
    assert [t["token"] for t in r["promoted"]] == [t for t, _, _ in p.promoted]
    assert toy_lens.token_id("ship") in [t["id"] for t in r["promoted"]]  # an induction head copies
    assert graph.selected == {"node": "L1H1"} and graph.node_result == r
    assert toy_lens.selection is not None and toy_lens.selection.label == "L1H1"
    emb = graph.node("embed")
    dla = direct_logit_attribution(model, ref["clean"][0], toy_lens.token_id("ship"), wrong=toy_lens.token_id("moon"))
    assert emb["dla"] == pytest.approx(dla.component("embed") + (dla.component("pos_embed") if "pos_embed" in dla.labels else 0.0), abs=1e-5)
    assert "attention" not in emb and graph.node("logits")["label"] == "logits"


def test_score_in_background_with_progress_and_cancel(toy_lens):
    g = CircuitGraph(toy_lens, CLEAN, CORRUPT, "ship", "moon", method="eap", size=6)
    w = Wire(g)
    before = dict(g.current)
    reply = w.request("score", {"method": "eap-ig", "steps": 3})
    assert reply["ok"] and reply["result"]["method"] == "eap-ig"
    assert [p["done"] for p in w.progress()] == [0, 1, 2]
    assert g.method == "eap-ig" and g.steps == 3 and g.score_state == "done"
    ref = circuits.edge_attribution(toy_lens.model, toy_lens.tokenize(CLEAN), toy_lens.tokenize(CORRUPT),
                                    g.work.metric, method="eap-ig", steps=3)
    torch.testing.assert_close(g.edge_scores.scores, ref.scores)
    # a cancelled rescoring keeps the scores shown, and the widget works on
    shown = g.edges
    g._on_msg(g, {"type": "request", "id": "s1", "kind": "score", "args": {"method": "eap", "steps": 1}}, [])
    g._on_msg(g, {"type": "cancel", "id": "s1"}, [])
    g.wait(60)
    if g.method == "eap-ig":  # cancelled before it finished
        assert g.edges is shown and g.error["kind"] == "cancelled"
    assert g.score_state in ("idle", "done")
    assert w.request("set_size", {"size": before["size"]})["ok"]


@pytest.mark.parametrize(
    "kind, args, fragment",
    [
        ("set_inputs", {"clean": CLEAN, "corrupted": "red fish", "answer": "ship", "wrong": "moon"}, "tokens"),
        ("set_inputs", {"clean": CLEAN, "corrupted": CLEAN, "answer": "ship", "wrong": "moon"}, "identical"),
        ("set_inputs", {"clean": CLEAN, "corrupted": CORRUPT, "answer": "ship moon", "wrong": "moon"}, "not one"),
        ("set_inputs", {"clean": CLEAN, "corrupted": CORRUPT, "answer": "ship", "wrong": "ship"}, "same token"),
        ("set_size", {"size": 0}, "between 1 and 81"),
        ("set_size", {"size": 82}, "between 1 and 81"),
        ("set_size", {"size": "5"}, "must be int"),
        ("patch_edge", {"edge": "L9H9->logits"}, "Unknown edge"),
        ("patch_edge", {"edge": "L0H1->L1H2"}, "Unknown edge"),
        ("node", {"label": "L7H0"}, "Unknown node"),
        ("node", {"label": "mlp0"}, "Unknown node"),  # attention-only
        ("remove_node", {"label": "embed"}, "cannot be removed"),
        ("remove_node", {"label": "Lx"}, "Unknown node"),
        ("score", {"method": "eap-ig", "steps": 0}, "at least 1"),
        ("score", {"method": "acdc"}, "Unknown scoring method"),
    ],
)
def test_bad_input_is_an_error_and_state_survives(graph, wire, kind, args, fragment):
    graph.set_size(10)
    before = (graph.clean_prompt, graph.size, dict(graph.current), graph.method, graph.edges["labels"][:5])
    reply = wire.request(kind, args)
    assert not reply["ok"] and fragment in reply["error"]["message"], reply
    assert graph.error["message"] == reply["error"]["message"]
    assert (graph.clean_prompt, graph.size, dict(graph.current), graph.method, graph.edges["labels"][:5]) == before
    assert wire.request("set_size", {"size": 12})["ok"]


def test_python_methods_raise(graph):
    with pytest.raises(InputError, match="between 1 and 81"):
        graph.set_size(1000)
    with pytest.raises(InputError, match="Unknown edge"):
        graph.patch_edge("nope")
    with pytest.raises(InputError, match="at least 1"):
        graph.score("eap-ig", 0)
    with pytest.raises(InputError, match="percent"):
        graph.set_size(percent=0)
    assert graph.set_size(percent=10)["size"] == 8
    with pytest.raises(InputError, match="not in the circuit"):
        graph.set_size(1)
        graph.remove_node("L0H0")


def test_to_networkx_is_the_circuit_drawn(graph):
    cur = graph.set_size(12)
    nx_graph = graph.to_networkx()
    assert sorted(nx_graph.nodes) == sorted(cur["nodes"])
    labels = {d["label"] for _, _, d in nx_graph.edges(data=True)}
    assert labels == set(cur["edges"])
    edge = cur["edges"][0]
    e = parse_edge(edge, 4, 4)
    assert nx_graph.edges[e.up, e.targets[0]]["score"] == pytest.approx(graph.edge_scores.score(edge))


def test_state_for_redisplay(graph):
    graph.patch_edge(graph.current["edges"][0])
    state = graph.get_state()
    for key in ("edges", "node_scores", "curve", "current", "size", "edge_result", "selected", "removed"):
        assert key in state


def test_grouped_query_model_builds_and_patches_kv_edges():
    lens = Lens(models.random_hf("llama", seed=0))  # 4 query heads, 2 key/value heads, MLPs
    g = lens.circuit(CLEAN, CORRUPT, "ship", "moon", method="eap", size=20)
    kv = [l for l in g.edge_scores.edges if "KV" in l]
    assert kv and all(parse_edge(l, 4, 2).targets in {("L1H0", "L1H1"), ("L1H2", "L1H3")} for l in kv if ">L1KV" in l)
    r = g.patch_edge(kv[-1])
    assert r["edge"] == kv[-1] and math.isfinite(r["value"])
    assert g.n_kv_heads == 2 and g.has_mlp
    kept, nodes = prune([parse_edge(l, 4, 2) for l in g.edge_scores.edges])
    assert len(kept) == g.n_edges and "mlp1" in nodes
    check_grouped_overlay(lens.model, g)  # last: it edits the model's weights
