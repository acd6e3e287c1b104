"""All three widgets, one click each, on random GPT-2 / Pythia / Llama / Gemma models (joint QKV,
parallel attention, grouped-query, rotary), checked against TransformerLens where it has a reference."""

from __future__ import annotations

import numpy as np
import pytest
from transformer_lens import patching as tl_patching

from lenswidget import Lens
from lenswidget.analysis import ablate_heads, logit_diff_metric

from .wire import Wire

PROMPT = "the cat sat on the mat and the dog ran home . the cat sat on the mat"
CLEAN = "red fish blue tree king ship red fish blue tree king"
CORRUPT = "red fish blue tree king moon red fish blue tree king"


@pytest.fixture()
def lens(strong_hf_model):
    """Wide-init weights: every number checked below is far from its trivial value."""
    return Lens(strong_hf_model)


def test_attention_grid(lens):
    grid = lens.attention(PROMPT)
    wire = Wire(grid)
    reply = wire.request("ablate", {"layer": 1, "head": 1, "mode": "zero"})
    assert reply["ok"]
    ref = ablate_heads(lens.model, lens.tokenize(PROMPT), [(1, 1)])
    assert reply["result"]["delta_logprob"] == pytest.approx(ref.delta_logprob.tolist(), abs=1e-5)
    assert max(abs(x) for x in ref.delta_logprob.flatten().tolist()) > 1e-2  # the ablation does something
    assert grid.patterns_meta["shape"][:2] == [lens.n_layers, lens.n_heads]  # (packing of the rest: test_attention_widget)


def test_patching_heatmap(lens):
    hm = lens.patching(CLEAN, CORRUPT, "ship", "moon", sites=["resid_pre", "attn_head_out_all_pos"], metric="logit_diff")
    hm.sweep()
    metric = logit_diff_metric([lens.token_id("ship")], [lens.token_id("moon")])
    _, clean_cache = lens.model.run_with_cache(lens.tokenize(CLEAN))
    ref = tl_patching.get_act_patch_attn_head_out_all_pos(lens.model, lens.tokenize(CORRUPT), clean_cache, metric)
    res = hm.exact_results["attn_head_out_all_pos"]
    clean_v = metric(lens.model(lens.tokenize(CLEAN))).item()
    corrupt_v = metric(lens.model(lens.tokenize(CORRUPT))).item()
    assert abs(clean_v - corrupt_v) > 1e-2
    tl = ref.detach().numpy()
    if hm.metric == "normalized":  # recovery: TL's values, normalised by the two unpatched runs
        tl = (tl - corrupt_v) / (clean_v - corrupt_v)
        assert np.abs(tl).max() > 1e-2  # some head moves the metric far beyond the tolerance
    else:
        assert np.abs(tl - corrupt_v).max() > 1e-2
    np.testing.assert_allclose(res.values.numpy(), tl, atol=1e-4)
    cell = Wire(hm).request("patch", {"site": "attn_head_out_all_pos", "index": [1, 2]})
    assert cell["ok"] and cell["result"]["value"] == pytest.approx(float(ref[1, 2]), abs=1e-4)


def test_logit_lens_table(lens):
    table = lens.logit_lens(PROMPT)
    wire = Wire(table)
    d = wire.request("select", {"row": lens.n_layers, "pos": 3})["result"]
    assert sum(d["dla"]["values"]) + d["dla"]["remainder"] == pytest.approx(d["dla"]["logit"], abs=1e-4)
    label = next(l for l, k in zip(d["dla"]["labels"], d["dla"]["kinds"]) if k in ("head", "mlp"))
    assert wire.request("ablate", {"component": label})["ok"] and table.ablated == [label]
    assert wire.request("undo")["ok"] and table.ablated == []
