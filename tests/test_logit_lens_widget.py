"""The LogitLensTable protocol without a kernel, checked against ActivationCache and hand-written hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenswidget import InputError
from lenswidget.widgets.logit_lens import LogitLensTable

from .wire import Wire

PROMPT = "red fish blue tree king ship star red fish blue tree king ship"


@pytest.fixture()
def table(toy_lens):
    return LogitLensTable(toy_lens, PROMPT)


@pytest.fixture()
def wire(table):
    return Wire(table)


def _top1(table):
    R, T, k = table.top_meta["shape"]
    return np.frombuffer(table.top_ids, dtype="<i4").reshape(R, T, k)[..., 0]


def test_table_equals_accumulated_resid(table, toy_lens):
    model = toy_lens.model
    tokens = toy_lens.tokenize(PROMPT)
    _, cache = model.run_with_cache(tokens)
    resid = cache.accumulated_resid(apply_ln=True)[:, 0]  # [R, T, d_model]
    with torch.no_grad():
        logits = resid @ model.W_U + model.b_U
    probs = torch.softmax(logits.double(), -1)
    R, T, k = table.top_meta["shape"]
    assert (R, T, k) == (toy_lens.n_layers + 1, tokens.shape[1], table.k)
    ids = np.frombuffer(table.top_ids, dtype="<i4").reshape(R, T, k)
    p16 = np.frombuffer(table.top_probs, dtype="<f2").reshape(R, T, k).astype(np.float32)
    ref_p, ref_ids = probs.topk(k, dim=-1)
    np.testing.assert_allclose(p16, ref_p.float().numpy(), atol=1e-3)
    assert (ids[..., 0] == ref_ids[..., 0].numpy()).all()
    # the default target is the final prediction at the last position
    assert table.target == int(ref_ids[-1, -1, 0]) and table.vocab[str(table.target)] == table.target_text
    stats = table.target_stats
    prob = np.frombuffer(stats["prob"], dtype="<f4").reshape(stats["shape"])
    np.testing.assert_allclose(prob, probs[..., table.target].float().numpy(), atol=1e-5)
    assert len(table.top_ids) + len(table.top_probs) == R * T * k * 6  # int32 + float16: the visible top-k only


def test_select_gives_topk_and_dla_that_sums(table, wire, toy_lens):
    reply = wire.request("select", {"row": 2, "pos": 12})
    assert reply["ok"]
    d = reply["result"]
    assert d["row_label"] == "final" and d["hook"] == "blocks.1.hook_resid_post"
    dla = d["dla"]
    assert sum(dla["values"]) + dla["remainder"] == pytest.approx(dla["logit"], abs=1e-4)
    # centred: the decomposed quantity is the target's logit minus the mean logit of that cell
    tokens = toy_lens.tokenize(PROMPT)
    with torch.no_grad():
        logits = toy_lens.model(tokens)[0, 12]
    assert d["target_logit"] == pytest.approx(float(logits[table.target]), abs=1e-4)
    assert dla["logit"] == pytest.approx(float(logits[table.target] - logits.mean()), abs=1e-4)
    assert [abs(v) for v in dla["values"]] == sorted((abs(v) for v in dla["values"]), reverse=True)
    assert table.cell_detail == d and table.selected == [2, 12]
    # an earlier row decomposes only what was written before that layer
    early = table.select(1, 12)["dla"]["labels"]
    assert all(not label.startswith("L1") for label in early)


def test_set_target_by_text_and_id(table, wire, toy_lens):
    reply = wire.request("set_target", {"target": "king"})
    assert reply["ok"] and table.target == toy_lens.token_id("king") and table.target_text == "king"
    reply = wire.request("set_target", {"target": "ignored", "target_id": toy_lens.token_id("fish")})
    assert reply["ok"] and table.target_text == "fish"
    bad = wire.request("set_target", {"target": "king ship"})
    assert not bad["ok"] and "not one" in bad["error"]["message"] and table.target_text == "fish"
    bad = wire.request("set_target", {"target_id": 10**9})
    assert not bad["ok"] and table.target_text == "fish"


def test_ablate_marks_changed_cells_and_undo_restores(table, wire, toy_lens):
    original = _top1(table).copy()
    table.select(2, 12)
    reply = wire.request("ablate", {"component": "L0H3"})
    assert reply["ok"]
    assert table.ablated == ["L0H3"]
    changed = np.frombuffer(table.changed, dtype=np.uint8).reshape(original.shape)
    now = _top1(table)
    assert ((now != original) == changed.astype(bool)).all()
    assert reply["result"]["changed_cells"] == int(changed.sum()) > 0
    # the ablated table is the logit lens of a run with the head's z zeroed, done by hand here
    tokens = toy_lens.tokenize(PROMPT)

    def hook(z, hook):
        z = z.clone()
        z[:, :, 3] = 0
        return z

    with toy_lens.model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", hook)]):
        _, cache = toy_lens.model.run_with_cache(tokens)
    resid = cache.accumulated_resid(apply_ln=True)[:, 0]
    with torch.no_grad():
        ref = (resid @ toy_lens.model.W_U + toy_lens.model.b_U).argmax(-1)
    assert (now == ref.numpy()).all()
    assert table.cell_detail["ablated"] == ["L0H3"]
    assert wire.request("undo")["ok"]
    assert table.ablated == [] and table.changed == b"" and (_top1(table) == original).all()


@pytest.mark.parametrize(
    "kind, args, fragment",
    [
        ("select", {"row": 99, "pos": 0}, "out of range"),
        ("select", {"row": 0, "pos": -1}, "out of range"),
        ("select", {"row": "0", "pos": 0}, "must be int"),
        ("ablate", {"component": "L9H0"}, "out of range"),
        ("ablate", {"component": "mlp0"}, "no blocks.0.hook_mlp_out"),
        ("ablate", {"component": "<script>"}, "Cannot ablate"),
        ("run", {"prompt": ""}, "empty"),
        ("set_target", {"target": ""}, "empty"),
    ],
)
def test_bad_input(table, wire, kind, args, fragment):
    before = (table.prompt, table.top_ids, table.target)
    reply = wire.request(kind, args)
    assert not reply["ok"] and fragment in reply["error"]["message"], reply
    assert (table.prompt, table.top_ids, table.target) == before
    assert wire.request("select", {"row": 0, "pos": 0})["ok"]


def test_python_methods(table):
    with pytest.raises(InputError):
        table.select(0, 999)
    result = table.run("the cat sat on the mat . the cat sat on the mat")
    assert result.top_ids.shape[1] == len(table.tokens) and table.selected == []
    table.set_target("mat")
    pos = len(table.tokens) - 1
    dla = table.dla(len(table.row_labels) - 1, pos)
    # against the model's own logits (centred: logit - mean logit), computed here
    row = table.lens.model(table.lens.tokenize(table.prompt))[0, pos].detach().float()
    truth = float(row[table.target] - row.mean())
    assert abs(truth) > 1e-2
    assert dla.logit == pytest.approx(truth, abs=1e-4)
    assert dla.total + dla.remainder == pytest.approx(truth, abs=1e-3)


@pytest.mark.smollm2
def test_smollm2_factual(smollm2_lens):
    table = LogitLensTable(smollm2_lens, "The capital of France is", target=" Paris")
    R = len(table.row_labels)
    detail = table.select(R - 1, len(table.tokens) - 1)
    assert detail["top"][0]["token"] == " Paris" and detail["target_rank"] == 0
    dla = detail["dla"]
    assert sum(dla["values"]) + dla["remainder"] == pytest.approx(dla["logit"], abs=1e-3)
    stats = table.target_stats
    rank = np.frombuffer(stats["rank"], dtype="<f4").reshape(stats["shape"])
    assert rank[0, -1] > 0  # the embedding alone does not predict " Paris"
