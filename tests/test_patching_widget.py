"""The PatchingHeatmap protocol without a kernel, against lenswidget.analysis and TransformerLens."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformer_lens import patching as tl_patching

from lenswidget import InputError
from lenswidget.analysis import logit_diff_metric, patch_sweep
from lenswidget.widgets.patching import PatchingHeatmap

from .wire import Wire

CLEAN = "red fish blue tree king ship red fish blue tree king"
CORRUPT = "red fish blue tree king moon red fish blue tree king"
SITES = ["resid_pre", "attn_head_out_all_pos"]


@pytest.fixture()
def heatmap(toy_lens):
    return PatchingHeatmap(toy_lens, CLEAN, CORRUPT, "ship", "moon", sites=SITES, metric="logit_diff")


@pytest.fixture()
def wire(heatmap):
    return Wire(heatmap)


def _values(entry):
    return np.frombuffer(entry["data"], dtype="<f4").reshape(entry["shape"])


def test_inputs_and_attribution_preview(heatmap, toy_lens):
    model = toy_lens.model
    metric = logit_diff_metric([toy_lens.token_id("ship")], [toy_lens.token_id("moon")])
    clean, corrupt = toy_lens.tokenize(CLEAN), toy_lens.tokenize(CORRUPT)
    assert heatmap.clean_value == pytest.approx(float(metric(model(clean).detach())), abs=1e-5)
    assert heatmap.corrupted_value == pytest.approx(float(metric(model(corrupt).detach())), abs=1e-5)
    assert heatmap.clean_value > 0 > heatmap.corrupted_value
    assert set(heatmap.attribution) == set(SITES) and heatmap.exact == {}
    assert _values(heatmap.attribution["resid_pre"]).shape == (toy_lens.n_layers, clean.shape[1])
    assert "mlp_out" not in heatmap.available_sites  # attention-only


def test_sweep_request_streams_and_equals_transformer_lens(heatmap, wire, toy_lens):
    reply = wire.request("sweep", {"sites": SITES})
    assert reply["ok"] and reply["result"] == {"partial": False}
    assert wire.progress(), "no progress messages"
    assert heatmap.sweep_state == "done"
    model = toy_lens.model
    metric = logit_diff_metric([toy_lens.token_id("ship")], [toy_lens.token_id("moon")])
    clean, corrupt = toy_lens.tokenize(CLEAN), toy_lens.tokenize(CORRUPT)
    _, clean_cache = model.run_with_cache(clean)
    ref = tl_patching.get_act_patch_resid_pre(model, corrupt, clean_cache, metric)
    np.testing.assert_allclose(_values(heatmap.exact["resid_pre"]), ref.detach().numpy(), atol=1e-4)
    ref_heads = tl_patching.get_act_patch_attn_head_out_all_pos(model, corrupt, clean_cache, metric)
    np.testing.assert_allclose(_values(heatmap.exact["attn_head_out_all_pos"]), ref_heads.detach().numpy(), atol=1e-4)


def test_patch_click_equals_the_sweep_cell(heatmap, wire):
    heatmap.sweep()
    reply = wire.request("patch", {"site": "attn_head_out_all_pos", "index": [1, 1]})
    assert reply["ok"]
    cell = reply["result"]
    exact = float(heatmap.exact_results["attn_head_out_all_pos"].values[1, 1])
    assert cell["value"] == pytest.approx(exact, abs=1e-4)
    assert cell["exact"] == pytest.approx(exact, abs=1e-6)
    assert cell["hook"] == "blocks.1.attn.hook_z" and cell["head"]["label"] == "L1H1"
    n = len(heatmap.clean_tokens)
    assert len(cell["head"]["clean_pattern"]) == 4 * n * n
    assert heatmap.cell_result["value"] == cell["value"] and heatmap.selected["index"] == [1, 1]
    assert len(cell["top_after"]) == 10
    # the Python method returns the same
    assert heatmap.patch("attn_head_out_all_pos", [1, 1])["value"] == pytest.approx(cell["value"], abs=1e-6)


def test_cancel_leaves_partial_result_and_widget_usable(heatmap, wire, toy_lens):
    heatmap._on_msg(heatmap, {"type": "request", "id": "s1", "kind": "sweep", "args": {"sites": SITES}}, [])
    heatmap._on_msg(heatmap, {"type": "cancel", "id": "s1"}, [])
    heatmap.wait(60)
    assert heatmap.sweep_state in ("partial", "done")
    if heatmap.sweep_state == "partial":
        entries = [e for e in heatmap.exact.values()]
        assert not entries or any(e["partial"] for e in entries) or len(entries) < len(SITES)
    # cancel a sweep through the Python method with the cancel flag already set
    heatmap.cancel()
    results = heatmap.sweep()
    assert heatmap.sweep_state == "done" and all(not r.partial for r in results.values())
    assert wire.request("patch", {"site": "resid_pre", "index": [0, 3]})["ok"]


def test_cancelled_sweep_in_analysis_is_marked_partial(toy_lens):
    calls = []
    metric = logit_diff_metric([toy_lens.token_id("ship")], [toy_lens.token_id("moon")])
    result = patch_sweep(
        toy_lens.model, toy_lens.tokenize(CLEAN), toy_lens.tokenize(CORRUPT), metric, site="resid_pre",
        batch_size=2, cancel=lambda: bool(calls.append(1)) or len(calls) > 1,
    )
    assert result.partial and torch.isnan(result.values).any() and not torch.isnan(result.values).all()


@pytest.mark.parametrize(
    "args, kind, fragment",
    [
        ({"clean": CLEAN, "corrupted": "red fish", "answer": "ship", "wrong": "moon"}, "input", "tokens"),
        ({"clean": CLEAN, "corrupted": CLEAN, "answer": "ship", "wrong": "moon"}, "input", "identical"),
        ({"clean": CLEAN, "corrupted": CORRUPT, "answer": "ship moon", "wrong": "moon"}, "input", "not one"),
        ({"clean": CLEAN, "corrupted": CORRUPT, "answer": "ship", "wrong": "ship"}, "input", "same token"),
        ({"clean": "", "corrupted": CORRUPT, "answer": "ship", "wrong": "moon"}, "input", "empty"),
        ({"clean": CLEAN, "corrupted": CORRUPT, "answer": 3, "wrong": "moon"}, "protocol", "must be str"),
        ({"clean": CLEAN, "corrupted": CORRUPT, "answer": "ship"}, "protocol", "missing"),
    ],
)
def test_bad_inputs(heatmap, wire, args, kind, fragment):
    before = (heatmap.clean_prompt, heatmap.corrupted_prompt, heatmap.clean_value)
    reply = wire.request("set_inputs", args)
    assert not reply["ok"] and reply["error"]["kind"] == kind and fragment in reply["error"]["message"]
    assert (heatmap.clean_prompt, heatmap.corrupted_prompt, heatmap.clean_value) == before
    assert heatmap.error["message"] == reply["error"]["message"]


def test_different_lengths_show_both_tokenizations(heatmap, wire):
    reply = wire.request("set_inputs", {"clean": CLEAN, "corrupted": "red fish blue", "answer": "ship", "wrong": "moon"})
    details = reply["error"]["details"]
    assert details["clean_tokens"][1:3] == ["red", "fish"] and len(details["corrupted_tokens"]) == 4


@pytest.mark.parametrize(
    "kind, args, fragment",
    [
        ("patch", {"site": "resid_pre", "index": [99, 0]}, "outside site"),
        ("patch", {"site": "resid_pre", "index": [0]}, ""),
        ("patch", {"site": "nonsense", "index": [0, 0]}, "Unknown site"),
        ("patch", {"site": "resid_pre", "index": "0,0"}, "must be list"),
        ("patch", {"site": "resid_pre", "index": [0, True]}, "integers"),
        ("set_sites", {"sites": ["mlp_out"]}, "unsupported"),
        ("set_sites", {"sites": []}, "at least one"),
        ("set_sites", {"sites": [1, 2]}, "list of site names"),
        ("sweep", {"sites": ["bogus"]}, "unsupported"),
    ],
)
def test_junk_cell_and_site_requests(heatmap, wire, kind, args, fragment):
    reply = wire.request(kind, args)
    assert not reply["ok"] and fragment in reply["error"]["message"]
    assert wire.request("patch", {"site": "resid_pre", "index": [1, 6]})["ok"]


def test_set_sites_and_settings(heatmap, wire):
    assert wire.request("set_sites", {"sites": ["attn_out", "resid_pre"]})["ok"]
    assert heatmap.sites == ["attn_out", "resid_pre"] and "attn_out" in heatmap.attribution
    heatmap.metric = "normalized"
    assert heatmap.clean_value == pytest.approx(1.0) and heatmap.corrupted_value == pytest.approx(0.0)
    heatmap.sweep(["resid_pre"])
    vals = heatmap.exact_results["resid_pre"].values
    # the prompts differ only at position 6: patching it at layer 0 makes the run the clean one
    assert float(vals[0, 6]) == pytest.approx(1.0, abs=1e-4)
    assert float(vals[0, 3]) == pytest.approx(0.0, abs=1e-4)
    heatmap.direction = "noise"
    assert heatmap.exact == {} and heatmap.error == {}
    res = heatmap.sweep(["resid_pre"])["resid_pre"]
    assert res.direction == "noise"


def test_python_errors_raise(heatmap):
    with pytest.raises(InputError, match="identical"):
        heatmap.set_inputs(CLEAN, CLEAN, "ship", "moon")
    assert "identical" in heatmap.error["message"]
    assert math.isfinite(heatmap.clean_value)


def test_state_for_redisplay(heatmap):
    heatmap.sweep()
    heatmap.patch("resid_pre", [1, 6])
    state = heatmap.get_state()
    for key in ("exact", "attribution", "cell_result", "selected", "clean_tokens", "sweep_state"):
        assert key in state
    assert state["sweep_state"] == "done"


def test_settings_change_while_busy_is_refused_and_reverted(heatmap, toy_lens):
    with toy_lens.computation("a sweep"):
        heatmap.direction = "noise"
    assert heatmap.direction == "denoise" and heatmap.error["kind"] == "busy"
    heatmap.direction = "noise"  # once free, it applies
    assert heatmap.direction == "noise" and heatmap.error == {}


def test_attribution_is_recomputed_for_new_inputs(heatmap, toy_lens):
    from lenswidget.analysis import attribution_patching

    heatmap.set_sites(["attn_out"])
    heatmap.set_inputs("red fish blue tree king star red fish blue tree king", CORRUPT, "star", "moon")
    heatmap.set_sites(["resid_pre", "attn_out"])
    metric = logit_diff_metric([toy_lens.token_id("star")], [toy_lens.token_id("moon")])
    fresh = attribution_patching(toy_lens.model, toy_lens.tokenize("red fish blue tree king star red fish blue tree king"),
                                 toy_lens.tokenize(CORRUPT), metric, site="attn_out")
    np.testing.assert_allclose(_values(heatmap.attribution["attn_out"]), fresh.values.numpy(), atol=1e-5)


def test_grouped_query_kv_sites_are_labelled_by_group():
    from lenswidget import Lens, models

    lens = Lens(models.random_hf("llama", seed=0))  # 4 query heads, 2 key/value heads
    hm = lens.patching(CLEAN, CORRUPT, "ship", "moon", sites=["attn_head_k_all_pos", "attn_head_out_all_pos"])
    assert hm.attribution["attn_head_k_all_pos"]["labels"]["head"] == ["KV0", "KV1"]
    assert hm.attribution["attn_head_out_all_pos"]["labels"]["head"] == ["H0", "H1", "H2", "H3"]
    cell = hm.patch("attn_head_k_all_pos", [1, 1])
    assert "head" not in cell  # a key/value group is not one query head: no single pattern to show
    assert "head" in hm.patch("attn_head_out_all_pos", [1, 1])
