"""The WeightsView protocol without a kernel, against TransformerLens and hand-written products."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenswidget import InputError
from lenswidget.encode import decode_tensor
from lenswidget.widgets.weights import WeightsView

from .wire import Wire

PROMPT = "red fish blue tree red fish blue"


@pytest.fixture(scope="module")
def view(toy_lens):
    return WeightsView(toy_lens, PROMPT)


@pytest.fixture()
def wire(view):
    return Wire(view)


def _f32(data, shape):
    return np.frombuffer(data, dtype="<f4").reshape(shape)


def test_heatmap_is_transformerlens_scores_of_the_tab(view, toy_model):
    n = 8
    for kind in "qkv":
        view.kind = kind
        ref = toy_model.all_composition_scores(kind.upper()).scores.detach().reshape(n, n)
        assert view.comp_meta["shape"] == [n, n]
        np.testing.assert_allclose(decode_tensor(view.comp, view.comp_meta).numpy(), ref.numpy(), atol=1e-5)
    view.kind = "k"
    assert view.labels[3] == "L0H3" and view.n_layers == 2 and view.n_heads == 4
    b = view.baseline
    assert 0 < b["std"] < b["mean"] < b["max"]["k"]


def test_copying_strip_equals_explicit_eigenvalues(view, toy_model):
    got = decode_tensor(view.copying, view.copying_meta)
    W_E, W_U = toy_model.W_E.double(), toy_model.W_U.double()
    lam = torch.linalg.eigvals(W_E @ toy_model.W_V[1, 0].double() @ toy_model.W_O[1, 0].double() @ W_U)
    assert float(got[1, 0]) == pytest.approx(float(lam.sum().real / lam.abs().sum()), abs=1e-4)
    assert got.shape == (2, 4) and float(got[1, 0]) > 0.99 and float(got[0, 3]) < 0


def test_pair_click_gives_scores_and_both_patterns(view, wire, toy_lens, toy_model):
    reply = wire.request("pair", {"src_layer": 0, "src_head": 3, "dst_layer": 1, "dst_head": 1})
    assert reply["ok"], reply
    r = reply["result"]
    ref = toy_model.all_composition_scores("K").scores.detach()[0, 3, 1, 1]
    assert r["kind"] == "k" and r["src"] == "L0H3" and r["dst"] == "L1H1"
    assert r["score"] == pytest.approx(float(ref), abs=1e-5)
    assert r["z"]["k"] > 10 and r["scores"]["q"] < r["score"]
    # both patterns are the heads' hook_pattern on the prompt
    _, cache = toy_model.run_with_cache(toy_lens.tokenize(PROMPT))
    T = len(view.tokens)
    np.testing.assert_allclose(_f32(r["src_pattern"], (T, T)), cache["blocks.0.attn.hook_pattern"][0, 3].numpy(), atol=1e-6)
    np.testing.assert_allclose(_f32(r["dst_pattern"], (T, T)), cache["blocks.1.attn.hook_pattern"][0, 1].numpy(), atol=1e-6)
    assert view.selected_pair == [0, 3, 1, 1] and view.pair_result["score"] == r["score"]
    # the Python method, with labels, and switching the tab
    same = view.pair("L0H3", "L1H1", kind="q")
    assert view.kind == "q" and same["kind"] == "q" and same["score"] == pytest.approx(r["scores"]["q"])
    view.kind = "k"


def test_head_click_gives_ov_table_qk_and_promoted(view, wire, toy_lens, toy_model):
    reply = wire.request("head", {"layer": 1, "head": 2})
    assert reply["ok"], reply
    r = reply["result"]
    assert r["label"] == "L1H2" and r["copying"] > 0.99
    ids = toy_lens.tokenize(PROMPT)[0]
    distinct = list(dict.fromkeys(ids.tolist()))
    assert [row["source_id"] for row in r["ov"]["rows"]] == distinct
    full = toy_model.W_E[distinct] @ toy_model.W_V[1, 2] @ toy_model.W_O[1, 2] @ toy_model.W_U
    top = full.topk(view.k, dim=-1)
    for s, row in enumerate(r["ov"]["rows"]):
        assert [c["id"] for c in row["top"]] == top.indices[s].tolist()
        assert row["top"][0]["value"] == pytest.approx(float(top.values[s, 0]), abs=1e-5)
    T = len(ids)
    qk = _f32(r["qk"], (T, T))
    x = toy_model.W_E[ids]
    assert float(qk[4, 2]) == pytest.approx(float(x[4] @ toy_model.W_Q[1, 2] @ toy_model.W_K[1, 2].T @ x[2]), rel=1e-5, abs=1e-5)
    # promoted tokens: the head's output at the last position through the unembedding
    from lenswidget.analysis import promoted_tokens

    p = promoted_tokens(toy_model, ids, "L1H2", pos=-1, k=view.k)
    assert [e["id"] for e in r["promoted"]["promoted"]] == p.promoted_ids.tolist()
    assert view.selected_head == [1, 2] and toy_lens.selection.label == "L1H2"


def test_new_prompt_redraws_open_panels(toy_lens):
    v = WeightsView(toy_lens, PROMPT)
    v.pair((0, 3), (1, 0))
    v.head(1, 0)
    v.run("king ship star king ship")
    T = len(v.tokens)
    assert T == 6 and v.pair_result["shape"] == [T, T] and v.head_result["qk_shape"] == [T, T]
    assert [row["source"] for row in v.head_result["ov"]["rows"]][1:] == ["king", "ship", "star"]
    v.clear()
    assert v.pair_result == {} and v.head_result == {}


@pytest.mark.parametrize(
    "kind, args, fragment",
    [
        ("pair", {"src_layer": 1, "src_head": 0, "dst_layer": 1, "dst_head": 2}, "earlier layer"),
        ("pair", {"src_layer": 1, "src_head": 0, "dst_layer": 0, "dst_head": 2}, "earlier layer"),
        ("pair", {"src_layer": 0, "src_head": 9, "dst_layer": 1, "dst_head": 2}, "Head 9 is out of range"),
        ("pair", {"src_layer": 0, "src_head": 0, "dst_layer": 5, "dst_head": 2}, "Layer 5 is out of range"),
        ("head", {"layer": 0, "head": -1}, "out of range"),
        ("head", {"layer": "0", "head": 1}, "must be int"),
        ("run", {"prompt": "   "}, "empty"),
        ("nope", {}, "Unknown request kind"),
    ],
)
def test_bad_requests_error_and_keep_state(view, wire, kind, args, fragment):
    view.pair("L0H3", "L1H2")
    before = (view.prompt, dict(view.pair_result), view.kind)
    reply = wire.request(kind, args)
    assert not reply["ok"] and fragment in reply["error"]["message"]
    assert view.error["message"] == reply["error"]["message"]
    assert (view.prompt, view.pair_result, view.kind) == before
    assert wire.request("head", {"layer": 1, "head": 1})["ok"] and view.error == {}


def test_python_methods_raise_input_errors(view):
    with pytest.raises(InputError, match="Unknown composition kind"):
        view.pair("L0H3", "L1H2", kind="x")
    with pytest.raises(InputError, match="L\\{layer\\}H\\{head\\}"):
        view.head("head three")
    with pytest.raises(InputError, match="earlier layer"):
        view.pair("L1H0", "L0H0")
    assert view.error["kind"] == "input"
    with pytest.raises(Exception):
        view.kind = "x"
    assert view.kind in ("q", "k", "v")


@pytest.mark.smollm2
def test_smollm2_view_has_270_heads_and_copying_heads(smollm2_lens):
    v = smollm2_lens.weights("The capital of France is")
    assert v.comp_meta["shape"] == [270, 270] and len(v.comp) == 270 * 270 * 4
    cop = decode_tensor(v.copying, v.copying_meta)
    assert cop.shape == (30, 9) and float(cop.max()) > 0.5
    r = v.head(*divmod(int(cop.argmax()), 9))
    assert r["copying"] == pytest.approx(float(cop.max()), abs=1e-6)
    assert len(r["ov"]["rows"]) == len(set(smollm2_lens.tokenize("The capital of France is")[0].tolist()))
