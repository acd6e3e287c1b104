"""Edge attribution and exact edge patching from the prompts' shared prefix (``_edge_prefix``).

Prompts that share their first ``k`` positions: the engines compute only positions ``k..``. Every
value is compared with the same engine over every position (``k`` forced to 0) and with a
reference written here (hand autograd for EAP / EAP-IG edges into the logits, hooked runs for
``patch_edge`` / ``circuit_metric``), on inputs where it is far from the corrupted value.
"""

from __future__ import annotations

import pytest
import torch

from lenswidget import models
from lenswidget.analysis import (
    _edge_gradients as eg, _edge_patching as ep, _edge_prefix as prefix, circuit_metric, component_graph,
    edge_attribution, faithfulness_curve, logit_diff_metric, patch_edge,
)

from tests.test_circuits import _final_grad, _outputs_from_cache  # hand autograd; node outputs

ARCHS = ["toy", "gpt2", "llama"]
# a value counted as moved: >= 60x the tolerances below (abs 1e-5, rel 1e-4 of values ~ 1)
MOVED = 0.01


def _model(arch):
    return models.toy() if arch == "toy" else models.random_hf(arch, seed=0, initializer_range=0.2)


def _prompts(n, p, k, seed=0):
    """clean [n, p]: random words, their second half a repeat of the first (induction on the toy
    model); corrupted: the same up to ``k``, different words from there."""
    gen = torch.Generator().manual_seed(seed)
    half = torch.randint(9, 300, (n, p // 2), generator=gen)
    clean = torch.cat([half, half], 1)[:, :p]
    corrupted = clean.clone()
    corrupted[:, k:] = torch.randint(9, 300, (n, p - k), generator=gen)
    return clean, corrupted


@pytest.fixture(scope="module", params=ARCHS)
def long_case(request):
    """(arch, model, clean, corrupted, metric, k): 3 prompts x 96 tokens sharing 64 (a batch long
    enough for the gradient engine's prefix path)."""
    model = _model(request.param)
    clean, corrupted = _prompts(3, 96, 64)
    metric = logit_diff_metric(clean[:, 48].tolist(), clean[:, 49].tolist())  # induction at the last position
    return request.param, model, clean, corrupted, metric, 64


def _every_position(monkeypatch):
    """Force k = 0 (the engines' path before the prefix)."""
    monkeypatch.setattr(prefix, "MIN_SHARED_FRACTION", 2.0)


# ------------------------------------------------------------------ references
def _outputs(model, tokens):
    """Every node's output by label [n, p, d] (a head's is ``z @ W_O``), and the cache."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    return _outputs_from_cache(model, cache), cache


def _metric_of(model, tokens, metric, hooks=()):
    with torch.no_grad():
        return float(metric(model.run_with_hooks(tokens, fwd_hooks=list(hooks))))


# ------------------------------------------------------------------ (a) EAP, EAP-IG
@pytest.mark.parametrize("method,steps", [("eap", 1), ("eap-ig", 3)])
def test_gradient_scores_from_the_prefix_equal_every_position_and_hand_autograd(long_case, method, steps, monkeypatch):
    arch, model, clean, corrupted, metric, k = long_case
    got = edge_attribution(model, clean, corrupted, metric, method=method, steps=steps)
    assert got.stats == {"shared_prefix": k, "start": k, "fallback": ""}  # the prefix path ran
    # the hand reference: delta . dm/dx of the final residual, averaged over interpolated embeddings
    oc, _ = _outputs(model, clean)
    orr, rc = _outputs(model, corrupted)
    e0, e1 = orr["embed"], oc["embed"]
    grad = sum(_final_grad(model, corrupted, metric, e0 + (a / steps) * (e1 - e0)) for a in range(steps)) / steps
    g = got.graph
    want = torch.stack([((oc[u] - orr[u]) * grad).sum() for u in g.writers]).float()
    into_logits = torch.tensor([got.score(f"{u}->logits") for u in g.writers])
    torch.testing.assert_close(into_logits, want, rtol=1e-4, atol=1e-5)
    assert want.abs().max() > MOVED
    _every_position(monkeypatch)
    full = edge_attribution(model, clean, corrupted, metric, method=method, steps=steps)
    assert full.stats["start"] == 0 and "under 2" in full.stats["fallback"]
    torch.testing.assert_close(got.scores, full.scores, rtol=1e-4, atol=1e-5)
    assert got.scores.abs().max() > MOVED and (got.scores != 0).float().mean() > 0.5
    assert got.clean_value == pytest.approx(full.clean_value, abs=1e-5)
    assert got.corrupted_value == pytest.approx(full.corrupted_value, abs=1e-5)
    # what the exact evaluations use afterwards: complete [n_writers, n, p, d] outputs
    for mine, theirs in [(got._runs.out_clean, full._runs.out_clean), (got._runs.out_corr, full._runs.out_corr)]:
        assert mine.shape == theirs.shape == (len(g.writers), 3, 96, model.cfg.d_model)
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ (b) exact evaluations
def _edge_sets(graph, seed=1):
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([0.01, 0.05, 0.2, 0.5, 0.9])[:, None]
    masks = torch.rand(len(sizes), graph.n_edges, generator=gen) < sizes
    masks[0, graph.edges.index("embed->logits")] = True
    return masks


@pytest.mark.parametrize("mode", ["circuit", "patch"])
def test_edge_sets_from_the_prefix_equal_every_position(long_case, mode, monkeypatch):
    arch, model, clean, corrupted, metric, k = long_case
    graph = component_graph(model)
    masks = _edge_sets(graph)
    runs = ep.prepare(model, graph, clean, corrupted, metric)
    got = ep.evaluate(runs, masks, mode, metric)
    assert runs.memo["prefix"] == k and prefix.stats(runs)["start"] == k and runs.memo["prefix_fallback"] == ""
    _every_position(monkeypatch)
    full_runs = ep.prepare(model, graph, clean, corrupted, metric)
    want = ep.evaluate(full_runs, masks, mode, metric)
    assert full_runs.memo["prefix"] == 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert (want - runs.m_corr).abs().max() > MOVED  # the sets move the metric


def test_patch_edge_and_circuit_metric_equal_hooked_runs(long_case):
    arch, model, clean, corrupted, metric, k = long_case
    graph = component_graph(model)
    oc, _ = _outputs(model, clean)
    orr, cache = _outputs(model, corrupted)
    corr_value, clean_value = _metric_of(model, corrupted, metric), _metric_of(model, clean, metric)
    moved = 0
    for up in ["embed", "L0H1", graph.writers[-1]]:  # into the logits: the final residual plus the change
        delta = oc[up] - orr[up]
        want = _metric_of(model, corrupted, metric, [("ln_final.hook_in", lambda x, hook, delta=delta: x + delta)])
        assert patch_edge(model, clean, corrupted, metric, f"{up}->logits") == pytest.approx(want, abs=1e-5, rel=1e-4)
        moved += abs(want - corr_value) > MOVED
    # into a last-layer head's query: that head's q recomputed from the changed residual, by hand
    layer, head = graph.n_layers - 1, 2
    attn = model.blocks[layer].attn
    x = cache[f"blocks.{layer}.hook_resid_pre"] + (oc["embed"] - orr["embed"])
    q = model.blocks[layer].ln1(x) @ attn.W_Q[head]
    b_q = getattr(model, "b_Q", None)
    q = q if b_q is None else q + b_q[layer, head]

    def set_q(act, hook):
        act = act.clone()
        act[:, :, head] = q
        return act

    want = _metric_of(model, corrupted, metric, [(f"blocks.{layer}.attn.hook_q", set_q)])
    assert patch_edge(model, clean, corrupted, metric, f"embed->L{layer}H{head}.q") == pytest.approx(want, abs=1e-5, rel=1e-4)
    moved += abs(want - corr_value) > MOVED
    assert moved >= 2
    # a circuit of every edge is the clean run, of none the corrupted run; the direct path only
    # (embed -> logits) is the corrupted final residual plus the embedding's change
    assert abs(clean_value - corr_value) > MOVED
    assert circuit_metric(model, clean, corrupted, metric, graph.edges) == pytest.approx(clean_value, abs=1e-4, rel=1e-4)
    assert circuit_metric(model, clean, corrupted, metric, []) == pytest.approx(corr_value, abs=1e-5)
    delta = oc["embed"] - orr["embed"]
    want = _metric_of(model, corrupted, metric, [("ln_final.hook_in", lambda x, hook: x + delta)])
    assert circuit_metric(model, clean, corrupted, metric, ["embed->logits"]) == pytest.approx(want, abs=1e-5, rel=1e-4)


def test_faithfulness_curve_reports_the_prefix_and_matches_every_position(monkeypatch):
    model = models.toy()
    clean, corrupted = _prompts(3, 96, 64)
    metric = logit_diff_metric(clean[:, 48].tolist(), clean[:, 49].tolist())
    scores = edge_attribution(model, clean, corrupted, metric, method="eap")
    curve = faithfulness_curve(model, clean, corrupted, metric, scores, [0.05, 0.2, 0.5])
    assert curve.stats == {"shared_prefix": 64, "start": 64, "fallback": ""}
    _every_position(monkeypatch)
    full = faithfulness_curve(model, clean, corrupted, metric, edge_attribution(model, clean, corrupted, metric, method="eap"),
                              [0.05, 0.2, 0.5])
    assert full.stats["start"] == 0
    torch.testing.assert_close(curve.metric, full.metric, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(curve.metric_random, full.metric_random, rtol=1e-4, atol=1e-5)
    assert (curve.metric - curve.m_empty).abs().max() > 0.5


def test_short_batch_patched_runs_record_the_prefix_when_first_used(monkeypatch):
    """2 x 24 tokens: the gradient engine runs every position (one short pass costs less), the
    patched runs record the keys/values then and start at k."""
    model = models.toy()
    clean, corrupted = _prompts(2, 24, 16)
    metric = logit_diff_metric(clean[:, 12].tolist(), clean[:, 13].tolist())
    scores = edge_attribution(model, clean, corrupted, metric, method="eap")
    assert scores.stats["start"] == 0 and "short batch" in scores.stats["fallback"]
    runs = scores._runs
    assert runs.memo["prefix_kv"] is None
    masks = _edge_sets(scores.graph)
    got = ep.evaluate(runs, masks, "circuit", metric)
    assert runs.memo["prefix"] == 16 and runs.memo["prefix_kv"] is not None
    _every_position(monkeypatch)
    want = ep.evaluate(ep.prepare(model, scores.graph, clean, corrupted, metric), masks, "circuit", metric)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert (want - runs.m_corr).abs().max() > 0.5


# ------------------------------------------------------------------ (d) fallbacks, (e) edge cases
def test_a_failed_check_falls_back_to_every_position_with_the_same_numbers(monkeypatch):
    model = models.toy()
    clean, corrupted = _prompts(3, 96, 64)
    metric = logit_diff_metric(clean[:, 48].tolist(), clean[:, 49].tolist())
    ok = edge_attribution(model, clean, corrupted, metric, method="eap-ig", steps=2)
    graph = ok.graph
    masks = _edge_sets(graph)
    ok_rows = ep.evaluate(ok._runs, masks, "patch", metric)
    monkeypatch.setattr(prefix, "mismatch", lambda final, expected: "forced mismatch")
    bad = edge_attribution(model, clean, corrupted, metric, method="eap-ig", steps=2)
    assert bad.stats == {"shared_prefix": 64, "start": 0, "fallback": "forced mismatch"}
    torch.testing.assert_close(bad.scores, ok.scores, rtol=1e-4, atol=1e-5)
    runs = ep.prepare(model, graph, clean, corrupted, metric)
    rows = ep.evaluate(runs, masks, "patch", metric)
    assert runs.memo["prefix"] == 0 and runs.memo["prefix_fallback"] == "forced mismatch"
    torch.testing.assert_close(rows, ok_rows, rtol=1e-4, atol=1e-5)
    assert (ok_rows - runs.m_corr).abs().max() > 0.5


def test_a_block_call_that_raises_falls_back(monkeypatch):
    model = models.toy()
    clean, corrupted = _prompts(3, 96, 64)
    metric = logit_diff_metric(clean[:, 48].tolist(), clean[:, 49].tolist())
    graph = component_graph(model)
    masks = _edge_sets(graph)
    want = ep.evaluate(ep.prepare(model, graph, clean, corrupted, metric), masks, "circuit", metric)
    real = prefix.run_blocks

    def broken(*args, **kwargs):
        if args[7]:  # the start position
            raise RuntimeError("no prefix here")
        return real(*args, **kwargs)

    monkeypatch.setattr(prefix, "run_blocks", broken)
    runs = ep.prepare(model, graph, clean, corrupted, metric)
    got = ep.evaluate(runs, masks, "circuit", metric)
    assert runs.memo["prefix"] == 0 and "no prefix here" in runs.memo["prefix_fallback"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    scores = edge_attribution(model, clean, corrupted, metric, method="eap")
    assert scores.stats["start"] == 0 and "no prefix here" in scores.stats["fallback"]


def test_identical_prompts_and_a_metric_before_the_prefix_give_the_corrupted_value(monkeypatch):
    model = models.toy()
    clean, corrupted = _prompts(3, 96, 64)
    graph = component_graph(model)
    masks = _edge_sets(graph)
    late = logit_diff_metric(clean[:, 48].tolist(), clean[:, 49].tolist())
    # k == p: clean == corrupted (internal API; the public one refuses identical prompts)
    runs = ep.prepare(model, graph, clean, clean, late)
    assert ep.evaluate(runs, masks, "patch", late).tolist() == [runs.m_corr] * len(masks)
    assert runs.memo["prefix"] == 96 and runs.m_clean == pytest.approx(runs.m_corr, abs=1e-6)
    scores, same = eg.gradient_scores(model, graph, clean, clean, late, [0.0])
    assert float(scores.abs().max()) == 0.0 and same.memo["grad_prefix"] == 96
    # a metric that reads position 40 < k: nothing there can change
    early = logit_diff_metric(clean[:, 41].tolist(), clean[:, 42].tolist(), pos=40)
    assert list(early.positions) == [40]
    runs = ep.prepare(model, graph, clean, corrupted, early)
    got = ep.evaluate(runs, masks, "patch", early)
    assert got.tolist() == [runs.m_corr] * len(masks)
    assert abs(runs.m_corr - _metric_of(model, clean, early)) < 1e-5  # the clean run agrees there
    _every_position(monkeypatch)
    want = ep.evaluate(ep.prepare(model, graph, clean, corrupted, early), masks, "patch", early)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_short_shared_prefix_runs_every_position():
    model = models.toy()
    clean, corrupted = _prompts(3, 96, 10)
    metric = logit_diff_metric(clean[:, 48].tolist(), clean[:, 49].tolist())
    scores = edge_attribution(model, clean, corrupted, metric, method="eap")
    assert scores.stats["shared_prefix"] == 10 and scores.stats["start"] == 0
    assert "under 0.25" in scores.stats["fallback"]


# ------------------------------------------------------------------ SmolLM2
@pytest.fixture(scope="module")
def smol_case(smollm2_model):
    model = smollm2_model
    lead = " The museum opened a new wing for modern sculpture and paintings last spring, and visitors came from far away."
    c = model.to_tokens(lead + " The Eiffel Tower is located in the city of")
    r = model.to_tokens(lead + " The Colosseum is located in the city of")
    tok = model.tokenizer
    metric = logit_diff_metric(tok.encode(" Paris", add_special_tokens=False)[0], tok.encode(" Rome", add_special_tokens=False)[0])
    return model, c, r, metric


@pytest.mark.smollm2
def test_smollm2_eap_from_the_prefix_equals_every_position(smol_case, monkeypatch):
    model, clean, corrupted, metric = smol_case
    k = prefix.ps.shared_prefix(clean, corrupted)
    assert k >= 0.6 * clean.shape[1]
    monkeypatch.setattr(eg, "SHARED_CLEAN_TOKENS", 0)  # a short batch: take the prefix path anyway
    got = edge_attribution(model, clean, corrupted, metric, method="eap")
    assert got.stats == {"shared_prefix": k, "start": k, "fallback": ""}
    _every_position(monkeypatch)
    full = edge_attribution(model, clean, corrupted, metric, method="eap")
    assert full.stats["start"] == 0
    torch.testing.assert_close(got.scores, full.scores, rtol=1e-3, atol=1e-3 * float(full.scores.abs().max()))
    assert [e for e, _ in got.top(5)] == [e for e, _ in full.top(5)] and float(full.scores.abs().max()) > 1.0
    assert got.clean_value == pytest.approx(full.clean_value, abs=1e-3) and abs(got.clean_value - got.corrupted_value) > 1.0
