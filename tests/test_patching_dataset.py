"""PatchingHeatmap on a dataset of prompt pairs: sweeps equal TransformerLens's `get_act_patch_*` on the
same batch with a hand-written mean-over-pairs metric; recovery (the default) and the raw logit
difference; the top components; each pair's values for a clicked cell; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import patching as tl_patching

from lenswidget import InputError
from lenswidget.analysis import logit_diff_metric, normalized_metric
from lenswidget.widgets.patching import PatchingHeatmap

from .wire import Wire

# induction pairs on the toy model: "a b c d e X a b c d e" -> X; the corrupted prompt had Y first
_SEQS = [("red fish blue tree king", "ship", "moon"), ("dog cat sun sea hat", "box", "cup"),
         ("book car bed map key", "star", "moon"), ("blue tree dog sea king", "cat", "fish")]
CLEAN = [f"{s} {x} {s}" for s, x, _ in _SEQS]
CORRUPT = [f"{s} {y} {s}" for s, _, y in _SEQS]
ANSWERS = [x for _, x, _ in _SEQS]
WRONGS = [y for _, _, y in _SEQS]
SITES = ["resid_pre", "attn_head_out_all_pos", "attn_head_out_by_pos"]


@pytest.fixture(scope="module")
def ref(toy_lens):
    """TransformerLens's sweeps on the batch, with the metric written here."""
    model = toy_lens.model
    clean = torch.cat([toy_lens.tokenize(p) for p in CLEAN])
    corrupt = torch.cat([toy_lens.tokenize(p) for p in CORRUPT])
    ans = torch.tensor([toy_lens.token_id(a) for a in ANSWERS])
    wrong = torch.tensor([toy_lens.token_id(w) for w in WRONGS])
    rows = torch.arange(len(CLEAN))

    def per_pair(logits):  # each pair's logit[answer] - logit[wrong] at the last position
        return logits[rows, -1, ans] - logits[rows, -1, wrong]

    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean)
        corrupt_logits = model(corrupt)
    ld_clean, ld_corrupt = float(per_pair(clean_logits).mean()), float(per_pair(corrupt_logits).mean())

    def ld(logits):
        return per_pair(logits).mean()

    out = {"clean": clean, "corrupt": corrupt, "cache": clean_cache, "per_pair": per_pair,
           "ld_clean": ld_clean, "ld_corrupt": ld_corrupt,
           "pp_clean": per_pair(clean_logits), "pp_corrupt": per_pair(corrupt_logits)}
    for site in SITES:
        fn = getattr(tl_patching, f"get_act_patch_{site}")
        out[site] = fn(model, corrupt, clean_cache, ld).detach()
    return out


@pytest.fixture()
def hm(toy_lens):
    return PatchingHeatmap(toy_lens, CLEAN, CORRUPT, ANSWERS, WRONGS, sites=SITES)


def _values(entry):
    return np.frombuffer(entry["data"], dtype="<f4").reshape(entry["shape"])


def _recovery(ref, values):
    return (values - ref["ld_corrupt"]) / (ref["ld_clean"] - ref["ld_corrupt"])


def test_metrics_per_prompt_terms(toy_lens, ref):
    logits = toy_lens.model(ref["corrupt"]).detach()
    ids = [toy_lens.token_id(a) for a in ANSWERS], [toy_lens.token_id(w) for w in WRONGS]
    base = logit_diff_metric(*ids)
    torch.testing.assert_close(base.per_prompt(logits), ref["per_pair"](logits))
    assert float(base(logits)) == pytest.approx(float(ref["per_pair"](logits).mean()), abs=1e-5)
    norm = normalized_metric(base, ref["ld_clean"], ref["ld_corrupt"])
    by_hand = (ref["per_pair"](logits) - ref["ld_corrupt"]) / (ref["ld_clean"] - ref["ld_corrupt"])
    torch.testing.assert_close(norm.per_prompt(logits), by_hand)
    assert float(norm.per_prompt(logits).mean()) == pytest.approx(float(norm(logits)), abs=1e-5)
    assert float(ref["pp_clean"].std()) > 0.1  # the pairs differ: per-pair terms are not one broadcast value


def test_dataset_sweep_equals_transformer_lens_in_recovery_and_logit_diff(hm, ref):
    assert len(hm.pairs) == 4 and hm.metric == "normalized"
    assert hm.clean_value == pytest.approx(1.0) and hm.corrupted_value == pytest.approx(0.0, abs=1e-6)
    assert hm.clean_logit_diff == pytest.approx(ref["ld_clean"], abs=1e-4)
    assert hm.corrupted_logit_diff == pytest.approx(ref["ld_corrupt"], abs=1e-4)
    for row, c, x in zip(hm.pairs, ref["pp_clean"], ref["pp_corrupt"]):
        assert row["clean_logit_diff"] == pytest.approx(float(c), abs=1e-4)
        assert row["corrupted_logit_diff"] == pytest.approx(float(x), abs=1e-4)
    assert hm.clean_prompt == "\n".join(CLEAN) and hm.answer == "\n".join(ANSWERS)
    hm.sweep()
    for site in SITES:
        want = _recovery(ref, ref[site]).numpy()
        np.testing.assert_allclose(_values(hm.exact[site]), want, atol=1e-4)
        assert np.nanmax(np.abs(want)) > 0.25  # far from the unpatched 0
    # raw logit difference one setting away: every result converted, equal to TL's raw values
    hm.metric = "logit_diff"
    assert hm.error == {} and set(hm.exact) == set(SITES)
    for site in SITES:
        np.testing.assert_allclose(_values(hm.exact[site]), ref[site].numpy(), atol=1e-4)
    assert hm.clean_value == pytest.approx(ref["ld_clean"], abs=1e-4)
    # the converted preview equals a fresh one computed with the raw metric
    from lenswidget.analysis import attribution_patching

    ids = [hm.lens.token_id(a) for a in ANSWERS], [hm.lens.token_id(w) for w in WRONGS]
    fresh = attribution_patching(hm.lens.model, ref["clean"], ref["corrupt"], logit_diff_metric(*ids), site="resid_pre")
    np.testing.assert_allclose(_values(hm.attribution["resid_pre"]), fresh.values.numpy(), atol=1e-4)


def test_top_components_rank_heads_by_recovery(hm, ref):
    hm.sweep(["attn_head_out_all_pos", "resid_pre"])
    rec = _recovery(ref, ref["attn_head_out_all_pos"])
    order = sorted(((abs(float(rec[l, h])), f"L{l}H{h}", float(rec[l, h]))
                    for l in range(rec.shape[0]) for h in range(rec.shape[1])), key=lambda t: -t[0])[:5]
    top = hm.top("attn_head_out_all_pos", k=5)
    assert [r["label"] for r in top] == [o[1] for o in order]
    for row, (_, _, want) in zip(top, order):
        assert row["recovery"] == pytest.approx(want, abs=1e-4) and row["source"] == "exact"
        assert row["logit_diff"] == pytest.approx(ref["ld_corrupt"] + want * (ref["ld_clean"] - ref["ld_corrupt"]), abs=1e-3)
    assert top[0]["recovery"] > 0.1  # the strongest head restores a real share of the answer
    assert hm.top_components["attn_head_out_all_pos"] == hm.top("attn_head_out_all_pos", hm.top_k)
    # (layer, position) cells name their token
    first = hm.top("resid_pre", 1)[0]
    layer, pos = first["index"]
    assert pos == 6 and first["label"] == f"L{layer} pos 6 {hm.clean_tokens[6]!r}"  # where the pairs differ
    # a row click is a cell click: its cell's value is the row's
    cell = hm.patch("attn_head_out_all_pos", top[0]["index"])
    assert cell["value"] == pytest.approx(top[0]["value"], abs=1e-4)
    with pytest.raises(InputError, match="positive integer"):
        hm.top("resid_pre", k=0)
    with pytest.raises(InputError, match="not shown"):
        hm.top("attn_out", k=3)


def test_top_before_the_sweep_is_the_attribution_estimate(hm):
    top = hm.top("attn_head_out_all_pos", 3)
    assert all(r["source"] == "attribution" for r in top)
    est = _values(hm.attribution["attn_head_out_all_pos"])
    assert top[0]["recovery"] == pytest.approx(float(est[tuple(top[0]["index"])]), abs=1e-5)


def test_clicked_cell_shows_each_pairs_value_equal_to_a_hooked_run(hm, ref, toy_lens):
    model = toy_lens.model
    layer, head = 1, 1
    name = f"blocks.{layer}.attn.hook_z"

    def patch_z(z, hook):
        z = z.clone()
        z[:, :, head] = ref["cache"][name][:, :, head]
        return z

    with torch.no_grad():
        logits = model.run_with_hooks(ref["corrupt"], fwd_hooks=[(name, patch_z)])
    want = ref["per_pair"](logits)
    cell = hm.patch("attn_head_out_all_pos", [layer, head])
    pp = cell["per_prompt"]
    np.testing.assert_allclose(pp["logit_diff"], want.numpy(), atol=1e-4)
    assert float((want - ref["pp_corrupt"]).abs().min()) > 0.5  # each pair really moved
    assert float(want.max() - want.min()) > 0.2  # ... by different amounts
    own = (want - ref["pp_corrupt"]) / (ref["pp_clean"] - ref["pp_corrupt"])
    np.testing.assert_allclose(pp["recovery"], own.numpy(), atol=1e-4)
    assert cell["value"] == pytest.approx(float(_recovery(ref, want.mean())), abs=1e-4)
    # a head cell is the lens's selection, picked on the first clean prompt
    sel = toy_lens.selection
    assert sel.label == "L1H1" and sel.prompt == CLEAN[0]


def test_apply_box_accepts_lists_and_one_answer_for_all(hm, toy_lens):
    wire = Wire(hm)
    reply = wire.request("set_inputs", {"clean": CLEAN[:2], "corrupted": [CORRUPT[0], CLEAN[1].replace("box", "hat", 1)],
                                        "answer": ANSWERS[:2], "wrong": ["moon", "hat"]})
    assert reply["ok"], reply
    assert len(hm.pairs) == 2 and hm.pairs[1]["wrong"] == "hat"
    # one answer for all pairs
    reply = wire.request("set_inputs", {"clean": [CLEAN[0], CLEAN[0].replace("red", "dog", 1)],
                                        "corrupted": [CORRUPT[0], CORRUPT[0].replace("red", "dog", 1)],
                                        "answer": "ship", "wrong": "moon"})
    assert reply["ok"] and [p["answer"] for p in hm.pairs] == ["ship", "ship"] and hm.answer == "ship"


@pytest.mark.parametrize(
    "args, kind, fragment",
    [
        ({"clean": CLEAN[:3], "corrupted": CORRUPT[:2]}, "input", "3 clean prompts but 2 corrupted"),
        ({"clean": CLEAN[:2], "corrupted": CORRUPT[0]}, "input", "2 clean prompts but 1 corrupted"),
        ({"clean": [], "corrupted": []}, "input", "is empty"),
        ({"answer": ANSWERS[:3]}, "input", "3 answers for 4 prompt pairs"),
        ({"wrong": []}, "input", "0 wrong answers for 4 prompt pairs"),
        ({"answer": ["ship", "box", "star", "cat fish"]}, "input", "answer of pair 4"),
        ({"corrupted": CORRUPT[:3] + ["blue tree dog sea king fish"]}, "input", "In pair 4, the clean prompt is 12 tokens"),
        ({"clean": CLEAN[:3] + ["red " + CLEAN[3]], "corrupted": CORRUPT[:3] + ["red " + CORRUPT[3]]}, "input", "not padded"),
        ({"corrupted": CLEAN}, "input", "identical"),
        ({"answer": ["ship", 3, "star", "cat"]}, "protocol", "must be str or list of str"),
    ],
)
def test_bad_dataset_inputs_keep_state(hm, args, kind, fragment):
    wire = Wire(hm)
    full = {"clean": CLEAN, "corrupted": CORRUPT, "answer": ANSWERS, "wrong": WRONGS, **args}
    before = (hm.clean_prompt, list(hm.pairs), hm.clean_logit_diff, dict(hm.attribution))
    reply = wire.request("set_inputs", full)
    assert not reply["ok"] and reply["error"]["kind"] == kind, reply
    assert fragment in reply["error"]["message"]
    assert (hm.clean_prompt, list(hm.pairs), hm.clean_logit_diff, dict(hm.attribution)) == before
    assert hm.error["message"] == reply["error"]["message"]
    assert wire.request("patch", {"site": "resid_pre", "index": [1, 6]})["ok"]


def test_pair_of_different_lengths_is_named_with_both_tokenizations(hm):
    with pytest.raises(InputError) as err:
        hm.set_inputs(CLEAN, CORRUPT[:2] + ["book car bed map", CORRUPT[3]], ANSWERS, WRONGS)
    d = err.value.details
    assert d["pair"] == 2 and d["clean_tokens"][1:3] == ["book", "car"] and len(d["corrupted_tokens"]) == 5
    assert "pair 3" in str(err.value) and "'map'" in str(err.value)
    with pytest.raises(InputError) as err:
        hm.set_inputs(CLEAN[:3] + ["red " + CLEAN[3]], CORRUPT[:3] + ["red " + CORRUPT[3]], ANSWERS, WRONGS)
    assert err.value.details["lengths"] == [12, 12, 12, 13] and err.value.details["pair"] == 3
    assert len(hm.pairs) == 4 and hm.clean_prompt == "\n".join(CLEAN)


def test_top_components_when_noising_rank_by_distance_from_the_clean_run(toy_lens, ref):
    from lenswidget.analysis import patch_sweep, top_components

    ids = [toy_lens.token_id(a) for a in ANSWERS], [toy_lens.token_id(w) for w in WRONGS]
    res = patch_sweep(toy_lens.model, ref["clean"], ref["corrupt"], logit_diff_metric(*ids),
                      site="attn_head_out_all_pos", direction="noise")
    rec = (res.values - ref["ld_corrupt"]) / (ref["ld_clean"] - ref["ld_corrupt"])  # TL-independent by hand
    effect = sorted(((abs(float(rec[l, h]) - 1), f"L{l}H{h}") for l in range(2) for h in range(rec.shape[1])), reverse=True)
    rows = top_components(res, k=3)
    assert [r["label"] for r in rows] == [e[1] for e in effect[:3]]
    assert effect[0][0] > 0.2  # noising the strongest head takes a real share of the answer away
    assert rows[0]["hook"] == f"blocks.{rows[0]['index'][0]}.attn.hook_z"


def test_grouped_query_model_dataset_equals_transformer_lens():
    """A random Llama (4 query heads sharing 2 key/value heads), 2 pairs with their own answers."""
    from lenswidget import Lens, models

    lens = Lens(models.random_hf("llama", seed=0))
    clean = ["red fish blue tree king ship red fish", "dog cat sun sea hat box dog cat"]
    corrupt = ["red fish blue tree king moon red fish", "dog cat sun sea hat cup dog cat"]
    hm = lens.patching(clean, corrupt, [" blue", " sun"], [" tree", " sea"], sites=["attn_head_v_all_pos", "resid_pre"])
    hm.sweep()
    toks = [torch.cat([lens.tokenize(p) for p in ps]) for ps in (clean, corrupt)]
    ans = torch.tensor([lens.token_id(" blue"), lens.token_id(" sun")])
    wrong = torch.tensor([lens.token_id(" tree"), lens.token_id(" sea")])

    def ld(logits):
        return (logits[[0, 1], -1, ans] - logits[[0, 1], -1, wrong]).mean()

    with torch.no_grad():
        _, cache = lens.model.run_with_cache(toks[0])
        lo, hi = float(ld(lens.model(toks[1]))), float(ld(lens.model(toks[0])))
    for site in ("attn_head_v_all_pos", "resid_pre"):
        want = getattr(tl_patching, f"get_act_patch_{site}")(lens.model, toks[1], cache, ld).detach()
        want = (want - lo) / (hi - lo)
        np.testing.assert_allclose(_values(hm.exact[site]), want.numpy(), atol=1e-3)
        assert float(want.abs().max()) > 0.25
    assert hm.top("attn_head_v_all_pos", 1)[0]["label"].split("KV")[0].startswith("L")  # named by group
    # a residual-stream cell names no component: the lens's selection stays as it was
    hm.patch("attn_head_v_all_pos", hm.top("attn_head_v_all_pos", 1)[0]["index"])
    before = lens.selection
    hm.patch("resid_pre", [0, 5])
    assert lens.selection == before and "KV" in before.label
