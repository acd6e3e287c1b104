"""The component graph, edge attribution (EAP, EAP-IG), faithfulness curves and promoted tokens,
against references written here (hand autograd, TransformerLens's edge attribution patching,
lenswidget's node attribution patching and direct logit attribution)."""

from __future__ import annotations

import pytest
import torch

from lenswidget import models
from lenswidget.analysis import (
    attribution_patching,
    circuit_metric,
    component_graph,
    direct_logit_attribution,
    edge_attribution,
    faithfulness_curve,
    head_scores,
    induction_probe,
    logit_diff_metric,
    promoted_tokens,
    repeated_random_tokens,
)
from lenswidget.errors import InputError

ARCHS = ["toy", "gpt2", "pythia", "llama", "gemma"]


@pytest.fixture(scope="module", params=ARCHS)
def case(request):
    model = models.toy() if request.param == "toy" else models.random_hf(request.param, seed=0)
    gen = torch.Generator().manual_seed(3)
    clean = torch.randint(5, 300, (2, 8), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 1:4] = torch.randint(5, 300, (2, 3), generator=gen)
    corrupted[:, -1] = torch.randint(5, 300, (2,), generator=gen)
    metric = logit_diff_metric([17, 40], [25, 61])
    return request.param, model, clean, corrupted, metric


# ------------------------------------------------------------------ the graph
def _count(n_layers, n_heads, n_kv, mlp=True, parallel=False):
    """Edges by hand: each layer's q/k/v readers see the writers before the layer, the MLP also
    (unless parallel) the layer's own heads, logits every writer."""
    per_layer = n_heads + (1 if mlp else 0)
    total = 0
    for l in range(n_layers):
        before = 1 + l * per_layer
        total += (n_heads + 2 * n_kv) * before
        if mlp:
            total += before + (0 if parallel else n_heads)
    return total + 1 + n_layers * per_layer


def test_graph_sizes_of_gpt2_small_smollm2_and_the_toy_model():
    gpt2 = component_graph(models.random_hf("gpt2", n_layers=12, n_heads=12, d_model=48))
    assert (gpt2.n_nodes, gpt2.n_edges) == (158, 32491) == (158, _count(12, 12, 12))  # EAP-IG's GPT-2 graph
    smol = component_graph(models.random_hf("llama", n_layers=30, n_heads=9, n_kv_heads=3, d_model=72))
    assert (smol.n_nodes, smol.n_edges) == (302, 70651) == (302, _count(30, 9, 3))
    toy = component_graph(models.toy())
    assert (toy.n_nodes, toy.n_edges) == (10, 81) == (10, _count(2, 4, 4, mlp=False))
    assert "mlp0" not in toy.nodes and toy.edges[0] == "embed->L0H0.q"


def test_graph_labels_layers_and_edges(case):
    arch, model, *_ = case
    g = component_graph(model)
    assert g.nodes[0] == "embed" and g.nodes[-1] == "logits"
    assert len(set(g.edges)) == g.n_edges == len(g.upstream) == len(g.downstream)
    for label, up, down in zip(g.edges, g.edge_upstream, g.edge_downstream):
        assert label == f"{up}->{down}"
        assert g.node_layer(up) < g.node_layer(down) or (down.startswith("mlp") and g.node_layer(up) == g.node_layer(down))
    if arch in ("llama", "gemma"):
        assert "L0H1->L1KV0.k" in g.edges and "L0H1->L1H0.k" not in g.edges and "L0H1->L1H3.q" in g.edges
    if arch == "pythia":  # parallel attention and MLP: a layer's heads do not feed its MLP
        assert "L0H0->mlp0" not in g.edges and "L0H0->mlp1" in g.edges
    if arch == "gpt2":
        assert "L0H0->mlp0" in g.edges and "mlp1->logits" in g.edges
    assert g.node_layer("embed") == -1 and g.node_layer("logits") == g.n_layers
    assert g.node_layer("L1H2.k") == 1
    with pytest.raises(InputError, match="unknown node"):
        g.node_layer("L7H0")


# ------------------------------------------------------------------ EAP references
def _outputs(model, tokens):
    _, cache = model.run_with_cache(tokens)
    return _outputs_from_cache(model, cache)


def _outputs_from_cache(model, cache):
    """Every node's output by label [n, p, d] (a head's is ``z @ W_O``) from a run's cache."""
    out = {"embed": cache["blocks.0.hook_resid_pre"]}
    for l in range(model.cfg.n_layers):
        z = cache[f"blocks.{l}.attn.hook_z"]
        for h in range(model.cfg.n_heads):
            out[f"L{l}H{h}"] = z[:, :, h] @ model.blocks[l].attn.W_O[h]
        if f"blocks.{l}.hook_mlp_out" in cache:
            out[f"mlp{l}"] = cache[f"blocks.{l}.hook_mlp_out"]
    return out


def _final_grad(model, tokens, metric, embed=None):
    """d metric / d (final residual) by hand autograd (optionally with the embedding replaced)."""
    box = {}

    def leaf(x, hook):
        box["x"] = x.detach().requires_grad_(True)
        return box["x"]

    hooks = [("ln_final.hook_in", leaf)]
    if embed is not None:
        hooks.insert(0, ("blocks.0.hook_resid_pre", lambda x, hook: embed))
    with torch.enable_grad():
        value = metric(model.run_with_hooks(tokens, fwd_hooks=hooks))
        (grad,) = torch.autograd.grad(value, box["x"])
    return grad


def test_eap_scores_of_edges_into_logits_are_a_hand_autograd(case):
    arch, model, clean, corrupted, metric = case
    scores = edge_attribution(model, clean, corrupted, metric, method="eap")
    grad = _final_grad(model, corrupted, metric)
    with torch.no_grad():
        oc, orr = _outputs(model, clean), _outputs(model, corrupted)
    g = scores.graph
    want = torch.stack([((oc[u] - orr[u]) * grad).sum() for u in g.writers])
    got = torch.stack([torch.tensor(scores.score(f"{u}->logits")) for u in g.writers])
    torch.testing.assert_close(got, want.float(), atol=1e-6, rtol=1e-4)
    assert want.abs().max() > 1e-4
    assert scores.scores.device == clean.device and scores.scores.shape == (g.n_edges,)


def test_eap_ig_of_edges_into_logits_averages_gradients_over_interpolated_embeddings():
    model = models.toy()
    clean = torch.tensor([[1, 30, 41, 52, 63, 30, 41, 52]])
    corrupted = clean.clone()
    corrupted[0, 1:5] = torch.tensor([70, 81, 92, 103])
    metric = logit_diff_metric(63, 103)
    steps = 4
    with torch.no_grad():
        _, cc = model.run_with_cache(clean)
        _, rc = model.run_with_cache(corrupted)
    e0, e1 = rc["blocks.0.hook_resid_pre"], cc["blocks.0.hook_resid_pre"]
    grad = sum(_final_grad(model, corrupted, metric, e0 + (k / steps) * (e1 - e0)) for k in range(steps)) / steps
    oc, orr = _outputs(model, clean), _outputs(model, corrupted)
    ig = edge_attribution(model, clean, corrupted, metric, method="eap-ig", steps=steps)
    eap = edge_attribution(model, clean, corrupted, metric, method="eap")
    for u in ["embed", "L0H3", "L1H2"]:
        want = float(((oc[u] - orr[u]) * grad).sum().detach())
        assert ig.score(f"{u}->logits") == pytest.approx(want, abs=1e-5, rel=1e-4)
    assert (ig.scores - eap.scores).abs().max() > 0.1  # the interpolation matters here
    one = edge_attribution(model, clean, corrupted, metric, method="eap-ig", steps=1)
    torch.testing.assert_close(one.scores, eap.scores)


def _tl_label(node):
    if node.kind == "embed":
        return "embed"
    if node.kind == "attn_head_out":
        return f"L{node.layer}H{node.head}"
    if node.kind == "mlp_out":
        return f"mlp{node.layer}"
    if node.kind == "mlp_in":
        return f"mlp{node.layer}"
    if node.kind == "logits":
        return "logits"
    return f"L{node.layer}H{node.head}.{node.kind[0]}"


@pytest.mark.parametrize("arch", ["gpt2", "pythia"])
def test_eap_equals_transformerlens_edge_attribution_summed_over_positions(arch):
    from transformer_lens.tools.analysis import attribution_patching as ap

    model = models.random_hf(arch, seed=0)
    clean = torch.tensor([[5, 9, 30, 41, 7, 12]])
    corrupted = clean.clone()
    corrupted[0, [1, 2, 5]] = torch.tensor([60, 70, 99])
    metric = logit_diff_metric(17, 25)
    tl = ap.attribution_patch(model, clean, corrupted, metric, ap.EdgeAttributionConfig(granularity="edge"))
    want: dict[str, float] = {}
    for (w, r), s in tl.edge_scores.items():
        label = f"{_tl_label(w)}->{_tl_label(r)}"
        want[label] = want.get(label, 0.0) + s
    ours = edge_attribution(model, clean, corrupted, metric, method="eap")
    assert set(want) == set(ours.edges)
    w = torch.tensor([want[e] for e in ours.edges])
    torch.testing.assert_close(ours.scores.cpu().double(), w.double(), atol=1e-6, rtol=1e-4)
    assert w.abs().max() > 1e-3


def test_node_scores_are_node_attribution_patching(case):
    arch, model, clean, corrupted, metric = case
    scores = edge_attribution(model, clean, corrupted, metric, method="eap")
    nodes = scores.node_scores()
    heads = attribution_patching(model, clean, corrupted, metric, site="attn_head_out_all_pos")
    base = heads.corrupted_value
    g = scores.graph
    for l in range(g.n_layers):
        for h in range(g.n_heads):
            assert nodes[f"L{l}H{h}"] == pytest.approx(float(heads.values[l, h]) - base, abs=1e-5, rel=1e-4)
    resid = attribution_patching(model, clean, corrupted, metric, site="resid_pre")
    assert nodes["embed"] == pytest.approx(float((resid.values[0] - base).sum()), abs=1e-5, rel=1e-4)
    if g.has_mlp:
        mlp = attribution_patching(model, clean, corrupted, metric, site="mlp_out")
        for l in range(g.n_layers):
            assert nodes[f"mlp{l}"] == pytest.approx(float((mlp.values[l] - base).sum()), abs=1e-5, rel=1e-4)
    assert max(abs(v) for v in nodes.values()) > 1e-4


# ------------------------------------------------------------------ discovery on the toy model
@pytest.fixture(scope="module")
def induction():
    """Repeated random tokens; the corrupted prompts' first copy is other random tokens."""
    model = models.toy()
    n = 8
    toks = repeated_random_tokens(model, n, batch=4, seed=1)
    clean, answer = toks[:, :-1], toks[:, -1]
    corrupted = clean.clone()
    corrupted[:, 1 : 1 + n] = repeated_random_tokens(model, n, batch=4, seed=7)[:, 1 : 1 + n]
    metric = logit_diff_metric(answer, corrupted[:, n])
    return model, clean, corrupted, metric


def test_discovery_finds_the_induction_circuit(induction):
    model, clean, corrupted, metric = induction
    prev = head_scores(model, clean[:1])["previous_token"][0]
    prev_head = f"L0H{int(prev.argmax())}"
    ind = induction_probe(model)[1]
    ind_heads = [f"L1H{h}" for h in range(ind.shape[0]) if ind[h] > 0.5]
    assert prev.max() > 0.4 and len(ind_heads) >= 2
    for method in ("eap-ig", "exact"):
        top = [e for e, _ in edge_attribution(model, clean, corrupted, metric, method=method).top(15)]
        assert any(e in top for e in (f"{prev_head}->{h}.k" for h in ind_heads)), (method, top)
        assert sum(f"{h}->logits" in top for h in ind_heads) >= 2, (method, top)


def test_faithfulness_curve_is_circuit_metric_of_the_top_and_random_edges(induction):
    model, clean, corrupted, metric = induction
    scores = edge_attribution(model, clean, corrupted, metric, method="eap-ig")
    curve = faithfulness_curve(model, clean, corrupted, metric, scores, fractions=[0.05, 0.2, 0.5, 1.0])
    g = scores.graph
    assert curve.sizes == [round(0.05 * 81), round(0.2 * 81), round(0.5 * 81), 81]
    with torch.no_grad():
        m_full = float(metric(model(clean)))
        m_empty = float(metric(model(corrupted)))
    assert curve.m_full == pytest.approx(m_full, rel=1e-5) and curve.m_empty == pytest.approx(m_empty, rel=1e-5)
    order = scores.scores.abs().argsort(descending=True).tolist()
    for i, size in enumerate(curve.sizes[:3]):
        top = [g.edges[j] for j in order[:size]]
        f = (circuit_metric(model, clean, corrupted, metric, top) - m_empty) / (m_full - m_empty)
        assert float(curve.faithfulness[i]) == pytest.approx(f, abs=1e-5)
        rnd = curve.random_edges[i].tolist()
        assert len(rnd) == size
        fr = (circuit_metric(model, clean, corrupted, metric, rnd) - m_empty) / (m_full - m_empty)
        assert float(curve.random[i]) == pytest.approx(fr, abs=1e-5)
    assert float(curve.faithfulness[-1]) == pytest.approx(1.0) and float(curve.random[-1]) == pytest.approx(1.0)
    # the top half of the edges recovers the behaviour, a random half does not
    assert float(curve.faithfulness[2]) > float(curve.random[2]) + 0.5
    x, y = [0.05, 0.2, 0.5, 1.0], curve.faithfulness.tolist()
    auc = sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(3)) / (x[-1] - x[0])
    assert curve.auc == pytest.approx(auc)


def test_default_fractions_are_mibs():
    model = models.toy()
    clean = torch.tensor([[1, 30, 41, 52, 63, 30, 41, 52]])
    corrupted = clean.clone()
    corrupted[0, 1:5] = torch.tensor([70, 81, 92, 103])
    metric = logit_diff_metric(63, 103)
    curve = faithfulness_curve(model, clean, corrupted, metric, edge_attribution(model, clean, corrupted, metric, method="eap"))
    assert curve.fractions == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    assert curve.sizes[:3] == [1, 1, 1] and curve.sizes[-1] == 81


# ------------------------------------------------------------------ results
def test_top_node_scores_and_networkx(case):
    arch, model, clean, corrupted, metric = case
    s = edge_attribution(model, clean, corrupted, metric, method="eap")
    top = s.top(5)
    mags = s.scores.abs().sort(descending=True).values[:5].tolist()
    assert [abs(v) for _, v in top] == pytest.approx(mags)
    assert all(s.score(e) == v for e, v in top)
    G = s.to_networkx()
    assert G.number_of_edges() == s.graph.n_edges
    e, v = top[0]
    up, down = e.split("->")
    assert G.edges[up, down.split(".")[0], e]["score"] == pytest.approx(v)
    sub = s.to_networkx([e for e, _ in top])
    assert sub.number_of_edges() == 5
    assert G.nodes["logits"]["layer"] == s.graph.n_layers


def test_promoted_tokens_equal_direct_logit_attribution(case):
    arch, model, clean, corrupted, metric = case
    toks = clean[0]
    for comp in ["embed", "L1H2"] + (["mlp1"] if "blocks.1.hook_mlp_out" in model.hook_dict else []):
        r = promoted_tokens(model, toks, comp, pos=-1, k=5)
        for token, tid, value in r.promoted[:2] + r.suppressed[:2]:
            dla = direct_logit_attribution(model, toks, tid, pos=-1)
            parts = ["embed", "pos_embed"] if comp == "embed" else [comp]
            want = sum(dla.component(p) for p in parts if p in dla.labels)
            assert value == pytest.approx(want, abs=1e-4, rel=1e-4), (arch, comp, token)
        assert r.promoted_values[0] > r.suppressed_values[0]
        assert r.promoted_values.tolist() == sorted(r.promoted_values.tolist(), reverse=True)
    r = promoted_tokens(model, toks, "L1H2", pos=-1, k=3)
    _, cache = model.run_with_cache(toks[None])
    pattern = cache["blocks.1.attn.hook_pattern"][0, 2, -1]
    torch.testing.assert_close(r.attention, pattern)
    assert r.attended[0][0] == int(pattern.argmax())


# ------------------------------------------------------------------ bad input
def test_bad_input_is_an_input_error(case):
    arch, model, clean, corrupted, metric = case
    with pytest.raises(InputError, match="different token counts"):
        edge_attribution(model, clean, corrupted[:, :-1], metric)
    with pytest.raises(InputError, match="identical"):
        edge_attribution(model, clean, clean.clone(), metric)
    with pytest.raises(InputError, match="steps"):
        edge_attribution(model, clean, corrupted, metric, steps=0)
    with pytest.raises(InputError, match="method"):
        edge_attribution(model, clean, corrupted, metric, method="acdc")
    s = edge_attribution(model, clean, corrupted, metric, method="eap")
    with pytest.raises(InputError, match="fractions"):
        faithfulness_curve(model, clean, corrupted, metric, s, fractions=[0.0, 0.5])
    with pytest.raises(InputError, match="unknown edge"):
        s.score("embed->L99H0.q")
    with pytest.raises(InputError, match="unknown component"):
        promoted_tokens(model, clean[0], "L0H99")
    with pytest.raises(InputError, match="k must be"):
        promoted_tokens(model, clean[0], "L0H0", k=0)
    # state intact: the next call works
    assert edge_attribution(model, clean, corrupted, metric, method="eap").scores.shape == s.scores.shape


def test_eap_ig_is_the_same_when_its_steps_are_split_over_batches(monkeypatch, induction):
    from lenswidget.analysis import _edge_gradients as eg

    model, clean, corrupted, metric = induction
    whole = edge_attribution(model, clean, corrupted, metric, method="eap-ig", steps=5)
    monkeypatch.setattr(eg, "MAX_GRAD_TOKENS", clean.numel())  # one row group per batch
    split = edge_attribution(model, clean, corrupted, metric, method="eap-ig", steps=5)
    torch.testing.assert_close(split.scores, whole.scores, atol=1e-5, rtol=1e-4)
    assert split.clean_value == pytest.approx(whole.clean_value) and split.corrupted_value == pytest.approx(whole.corrupted_value)
    monkeypatch.setattr(eg, "SHARED_CLEAN_TOKENS", 0)  # the clean run on its own, without gradients
    alone = edge_attribution(model, clean, corrupted, metric, method="eap-ig", steps=5)
    torch.testing.assert_close(alone.scores, whole.scores, atol=1e-5, rtol=1e-4)
    curve = faithfulness_curve(model, clean, corrupted, metric, alone, fractions=[0.5])
    assert float(curve.faithfulness[0]) == pytest.approx(
        (circuit_metric(model, clean, corrupted, metric, [e for e, _ in alone.top(40)]) - curve.m_empty)
        / (curve.m_full - curve.m_empty), abs=1e-5)
