"""Exact edge patching (patch_edge, circuit_metric, method="exact") against hooked runs written here.

Every reference is a plain ``run_with_hooks`` of the corrupted prompt, with node outputs read from
``run_with_cache`` (a head's output is ``z @ W_O`` computed here), and, where TransformerLens has
one, its own edge-ablation faithfulness (``tools.analysis.attribution_patching.faithfulness``).
Inputs are chosen so that each patched value is far from the corrupted one.
"""

from __future__ import annotations

import pytest
import torch

from lenswidget import models
from lenswidget.analysis import circuit_metric, component_graph, edge_attribution, logit_diff_metric, patch_edge
from lenswidget.errors import InputError

ARCHS = ["toy", "gpt2", "pythia", "llama", "gemma"]
# tight tolerances for values compared: the random models' effects are small (1e-4 .. 1e-2)
ABS, REL = 1e-6, 1e-5
MOVED = 20 * ABS


@pytest.fixture(scope="module", params=ARCHS)
def case(request):
    """(arch, model, clean [2, 8], corrupted, metric): two prompts differing in four positions,
    the last (read by the metric) among them."""
    model = models.toy() if request.param == "toy" else models.random_hf(request.param, seed=0)
    gen = torch.Generator().manual_seed(3)
    clean = torch.randint(5, 300, (2, 8), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 1:4] = torch.randint(5, 300, (2, 3), generator=gen)
    corrupted[:, -1] = torch.randint(5, 300, (2,), generator=gen)
    metric = logit_diff_metric([17, 40], [25, 61])
    return request.param, model, clean, corrupted, metric


def _outputs(model, tokens):
    """Every node's output, by label, [batch, pos, d_model], read from the cache by hand."""
    _, cache = model.run_with_cache(tokens)
    out = {"embed": cache["blocks.0.hook_resid_pre"]}
    for l in range(model.cfg.n_layers):
        z = cache[f"blocks.{l}.attn.hook_z"]
        W_O = model.blocks[l].attn.W_O
        for h in range(model.cfg.n_heads):
            out[f"L{l}H{h}"] = z[:, :, h] @ W_O[h]
        if f"blocks.{l}.hook_mlp_out" in cache:
            out[f"mlp{l}"] = cache[f"blocks.{l}.hook_mlp_out"]
    return out, cache


def _metric_of(model, tokens, metric, hooks):
    with torch.no_grad():
        return float(metric(model.run_with_hooks(tokens, fwd_hooks=hooks)))


def _delta(model, clean, corrupted, up):
    with torch.no_grad():
        oc, _ = _outputs(model, clean)
        orr, cache = _outputs(model, corrupted)
    return oc[up] - orr[up], cache


def test_edge_into_logits_is_the_final_residual_plus_the_change(case):
    arch, model, clean, corrupted, metric = case
    corr_value = _metric_of(model, corrupted, metric, [])
    graph = component_graph(model)
    moved = 0
    for up in ["embed", "L0H1", graph.writers[-1]]:
        delta, _ = _delta(model, clean, corrupted, up)
        want = _metric_of(model, corrupted, metric, [("ln_final.hook_in", lambda x, hook: x + delta)])
        got = patch_edge(model, clean, corrupted, metric, f"{up}->logits")
        assert got == pytest.approx(want, abs=ABS, rel=REL), (arch, up)
        moved += abs(want - corr_value) > MOVED
    assert moved >= 2


def _recompute(model, layer, kind, index, x):
    """The hook_q/k/v value of one head (KV group) from residual ``x`` [batch, pos, d], by hand:
    the model's own ln1, then ``W_{kind}[index]`` and its bias."""
    attn = model.blocks[layer].attn
    W = {"q": attn.W_Q, "k": attn.W_K, "v": attn.W_V}[kind][index]
    b = getattr(model, f"b_{kind.upper()}", None)
    out = model.blocks[layer].ln1(x) @ W
    return out if b is None else out + b[layer, index]


@pytest.mark.parametrize("kind", ["q", "k", "v"])
def test_edge_into_a_head_input_recomputes_that_head_only(case, kind):
    arch, model, clean, corrupted, metric = case
    graph = component_graph(model)
    corr_value = _metric_of(model, corrupted, metric, [])
    moved = 0
    layer = graph.n_layers - 1
    for up in ["embed", "L0H2"]:
        delta, cache = _delta(model, clean, corrupted, up)
        for index in range(graph.n_heads if kind == "q" else graph.n_kv_heads):
            reader = f"L{layer}H{index}.{kind}" if kind == "q" or not graph.grouped else f"L{layer}KV{index}.{kind}"
            x = cache[f"blocks.{layer}.hook_resid_pre"] + delta

            def hook(act, hook, index=index, x=x):
                act = act.clone()
                act[:, :, index] = _recompute(model, layer, kind, index, x)
                return act

            want = _metric_of(model, corrupted, metric, [(f"blocks.{layer}.attn.hook_{kind}", hook)])
            got = patch_edge(model, clean, corrupted, metric, f"{up}->{reader}")
            assert got == pytest.approx(want, abs=ABS, rel=REL), (arch, up, reader)
            moved += abs(want - corr_value) > MOVED
    assert moved >= 1


def test_edge_into_q_matches_transformerlens_split_qkv_input():
    """GPT-2: the same patch through TransformerLens's own per-head inputs (use_split_qkv_input)."""
    model = models.random_hf("gpt2", seed=0)
    clean = torch.tensor([[5, 9, 30, 41, 7, 12, 88, 3]])
    corrupted = clean.clone()
    corrupted[0, [1, 2, 7]] = torch.tensor([60, 70, 99])
    metric = logit_diff_metric(17, 25)
    delta, _ = _delta(model, clean, corrupted, "embed")
    got = patch_edge(model, clean, corrupted, metric, "embed->L1H3.q")
    model.set_use_split_qkv_input(True)
    try:
        def hook(x, hook):
            x = x.clone()
            x[:, :, 3] += delta
            return x

        want = _metric_of(model, corrupted, metric, [("blocks.1.attn.hook_q_input", hook)])
    finally:
        model.set_use_split_qkv_input(False)
    assert got == pytest.approx(want, abs=ABS, rel=REL)
    assert abs(want - _metric_of(model, corrupted, metric, [])) > MOVED


def test_edge_into_an_mlp_changes_its_input_only(case):
    arch, model, clean, corrupted, metric = case
    graph = component_graph(model)
    if not graph.has_mlp:
        pytest.skip("attention-only model")
    corr_value = _metric_of(model, corrupted, metric, [])
    up = "L0H0" if not graph.parallel else "embed"
    delta, _ = _delta(model, clean, corrupted, up)
    want = _metric_of(model, corrupted, metric, [("blocks.1.ln2.hook_in", lambda x, hook: x + delta)])
    got = patch_edge(model, clean, corrupted, metric, f"{up}->mlp1")
    assert got == pytest.approx(want, abs=ABS, rel=REL)
    assert abs(want - corr_value) > MOVED


def test_all_edges_give_the_clean_run_and_none_the_corrupted(case):
    arch, model, clean, corrupted, metric = case
    graph = component_graph(model)
    clean_value = _metric_of(model, clean, metric, [])
    corr_value = _metric_of(model, corrupted, metric, [])
    assert abs(clean_value - corr_value) > MOVED
    assert circuit_metric(model, clean, corrupted, metric, graph.edges) == pytest.approx(clean_value, abs=ABS, rel=REL)
    assert circuit_metric(model, clean, corrupted, metric, []) == pytest.approx(corr_value, abs=ABS, rel=REL)


def test_exact_method_is_patch_edge_for_every_edge():
    model = models.toy()
    clean = torch.tensor([[1, 30, 41, 52, 63, 30, 41, 52]])
    corrupted = clean.clone()
    corrupted[0, 1:5] = torch.tensor([70, 81, 92, 103])
    metric = logit_diff_metric(63, 103)
    exact = edge_attribution(model, clean, corrupted, metric, method="exact")
    base = _metric_of(model, corrupted, metric, [])
    got = exact.scores.cpu() + base
    want = torch.tensor([patch_edge(model, clean, corrupted, metric, e) for e in exact.edges])
    torch.testing.assert_close(got.double(), want.double(), atol=1e-5, rtol=1e-5)
    assert (want - base).abs().max() > 0.5


def _tl_node(graph, label):
    """The TransformerLens attribution_patching Node kinds of one of our labels (writer or reader)."""
    from transformer_lens.tools.analysis.attribution_patching import Node

    def make(kind, layer=None, head=None):
        return lambda pos: Node(kind=kind, position=pos, layer=layer, head=head)

    if label == "embed":
        return make("embed")
    if label == "logits":
        return make("logits", graph.n_layers - 1)
    if label.startswith("mlp"):
        return make("mlp_in", int(label[3:]))
    base, _, suffix = label.partition(".")
    layer, head = (int(x) for x in base[1:].split("H"))
    if not suffix:
        return make("attn_head_out", layer, head)
    return make(f"{suffix}_input", layer, head)


def _tl_writer(label):
    from transformer_lens.tools.analysis.attribution_patching import Node

    if label == "embed":
        return lambda pos: Node(kind="embed", position=pos)
    if label.startswith("mlp"):
        return lambda pos: Node(kind="mlp_out", position=pos, layer=int(label[3:]))
    layer, head = (int(x) for x in label[1:].split("H"))
    return lambda pos: Node(kind="attn_head_out", position=pos, layer=layer, head=head)


@pytest.mark.parametrize("arch", ["gpt2", "pythia"])
def test_circuit_metric_equals_transformerlens_faithfulness(arch):
    from transformer_lens.tools.analysis import attribution_patching as ap

    model = models.random_hf(arch, seed=0)
    clean = torch.tensor([[5, 9, 30, 41, 7, 12]])
    corrupted = clean.clone()
    corrupted[0, 1:3] = torch.tensor([60, 70])
    metric = logit_diff_metric(17, 25)
    graph = component_graph(model)
    gen = torch.Generator().manual_seed(0)
    keep = torch.randperm(graph.n_edges, generator=gen)[: graph.n_edges // 2].tolist()
    p = clean.shape[1]
    circuit = []
    for i in keep:
        up, down = graph.edges[i].split("->")
        circuit += [(_tl_writer(up)(pos), _tl_node(graph, down)(pos)) for pos in range(p)]
    tl = ap.faithfulness(model, clean, corrupted, metric, circuit)
    want = tl.corrupt_metric + tl.recovered * (tl.full_metric - tl.corrupt_metric)
    got = circuit_metric(model, clean, corrupted, metric, keep)
    assert got == pytest.approx(want, abs=ABS, rel=REL)
    assert min(abs(want - tl.corrupt_metric), abs(want - tl.full_metric)) > MOVED


def test_unknown_edge_is_an_input_error(case):
    arch, model, clean, corrupted, metric = case
    with pytest.raises(InputError, match="unknown edge"):
        patch_edge(model, clean, corrupted, metric, "L9H9->logits")
    with pytest.raises(InputError, match="unknown edge"):
        circuit_metric(model, clean, corrupted, metric, ["embed->nowhere"])
    with pytest.raises(InputError, match="identical"):
        patch_edge(model, clean, clean, metric, "embed->logits")
    with pytest.raises(InputError, match="different token counts"):
        circuit_metric(model, clean, corrupted[:, :-1], metric, [])
