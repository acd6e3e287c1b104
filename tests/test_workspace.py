"""lens.workspace(...): the views of one lens in one layout, linked by the lens selection."""

from __future__ import annotations

import ipywidgets
import pytest
import torch

from lenswidget import InputError, Lens
from lenswidget.widgets import AttentionGrid, LogitLensTable, PatchingHeatmap
from lenswidget.widgets.workspace import Workspace

from .wire import Wire

# induction on the toy model: the clean prompt repeats, so the answer is the token after "the"
CLEAN = "the cat sat on the mat . the cat sat on the"
CORRUPTED = "the dog ran to the house . the dog ran to the"
CLEAN2 = "a man came to a boy . a man came to a"
CORRUPTED2 = "a boy went in a man . a boy went in a"


@pytest.fixture()
def lens(toy_model):
    return Lens(toy_model)


@pytest.fixture()
def ws(lens):
    return lens.workspace(CLEAN, CORRUPTED, " mat", " house", circuit=False)


def test_layout_and_defaults(ws, lens):
    assert isinstance(ws, ipywidgets.VBox) and isinstance(ws, Workspace)
    views = [c for c in ws.children if not isinstance(c, ipywidgets.Label)]
    assert [isinstance(v, c) for v, c in zip(views, [PatchingHeatmap, AttentionGrid, LogitLensTable])] == [True] * 3
    assert len(views) == 3
    assert [type(c) for c in ws.children[::2]] == [ipywidgets.Label] * 3  # a title above each view
    assert set(ws.widgets) == {"patching", "attention", "logit_lens"} and ws.circuit is None
    assert all(v.lens is lens for v in views)
    assert ws.attention.prompt == CLEAN and ws.logit_lens.prompt == CLEAN
    assert ws.attention.ablation_mode == "resample" and ws.attention.resample_prompts == [CORRUPTED]
    assert ws.logit_lens.target == lens.token_id(" mat") and ws.logit_lens.resample_prompts == [CORRUPTED]


def test_patching_cell_focuses_the_grid(ws, lens, toy_model):
    cell = Wire(ws.patching).request("patch", {"site": "attn_head_out_all_pos", "index": [1, 2]})
    assert cell["ok"]
    assert lens.selection.label == "L1H2" and lens.selection.prompt == CLEAN
    assert ws.attention.focus == [1, 2] and ws.attention.linked["source"] == "PatchingHeatmap"
    # the grid's resample ablation of the selected head, from the corrupted prompt, vs a hand hook
    tokens, src = toy_model.to_tokens(CLEAN), toy_model.to_tokens(CORRUPTED)
    _, cache = toy_model.run_with_cache(src)

    def fn(z, hook):
        z = z.clone()
        z[:, :, 2] = cache["blocks.1.attn.hook_z"][:, :, 2]
        return z

    logits = toy_model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", fn)])[0].double()
    want = torch.log_softmax(logits[:-1], -1).gather(-1, tokens[0, 1:, None])[:, 0]
    r = ws.attention.ablate(*ws.attention.focus)
    torch.testing.assert_close(r.logprob_after.double(), want, atol=1e-4, rtol=0)
    # the repeat's predictions lose probability without the induction head's copy (|delta| ~ 3.7 nats)
    assert float(r.delta_logprob.min()) < -1.0


def test_dla_contributor_focuses_the_grid(ws, lens):
    table = ws.logit_lens
    detail = table.select(len(table.row_labels) - 1, len(table.tokens) - 1)
    heads = [label for label in detail["dla"]["labels"] if label.startswith("L")]
    reply = Wire(table).request("pick", {"component": heads[0]})  # the largest head contributor
    assert reply["ok"] and lens.selection.label == heads[0] and lens.selection.source == "LogitLensTable"
    assert ws.attention.focus == list(lens.selection.head)


def test_datasets_and_new_inputs_follow(lens):
    ws = lens.workspace([CLEAN, CLEAN.replace("cat", "dog")], [CORRUPTED, CORRUPTED.replace("dog", "cat")],
                        [" mat", " mat"], [" house", " house"], circuit=False)
    assert ws.attention.resample_prompts == [CORRUPTED, CORRUPTED.replace("dog", "cat")]
    # the heatmap's Apply box: the grid and the table move to the first new pair
    reply = Wire(ws.patching).request(
        "set_inputs", {"clean": [CLEAN2], "corrupted": [CORRUPTED2], "answer": " a", "wrong": " boy"}
    )
    assert reply["ok"]
    assert ws.attention.prompt == CLEAN2 and ws.attention.resample_prompts == [CORRUPTED2]
    assert ws.logit_lens.prompt == CLEAN2 and ws.logit_lens.target == lens.token_id(" a")
    assert ws.logit_lens.resample_prompts == [CORRUPTED2]


def test_bad_input(lens, ws):
    with pytest.raises(InputError, match="tokens"):
        lens.workspace(CLEAN, "the dog ran", " mat", " house", circuit=False)
    with pytest.raises(InputError):
        lens.workspace([CLEAN, CLEAN], [CORRUPTED], " mat", " house", circuit=False)
    with pytest.raises(InputError):
        lens.workspace([], [], " mat", " house", circuit=False)
    # bad new inputs: nothing changes anywhere
    with pytest.raises(InputError):
        ws.set_inputs(CLEAN2, "a boy", " a", " boy")
    assert ws.attention.prompt == CLEAN and ws.logit_lens.prompt == CLEAN and ws.patching.pairs[0]["clean"] == CLEAN
    with pytest.raises(TypeError):
        Workspace("not a lens", CLEAN, CORRUPTED, " mat", " house")


def test_sweep_in_the_background(lens):
    ws = lens.workspace(CLEAN, CORRUPTED, " mat", " house", sweep=True, circuit=False, sites=["attn_head_out_all_pos"])
    ws.patching.wait(120)
    assert ws.patching.sweep_state == "done"
    assert ws.attention.prompt == CLEAN


@pytest.mark.skipif(not hasattr(Lens, "circuit"), reason="no circuit graph in this checkout yet")
def test_circuit_node_focuses_the_grid(lens):
    ws = lens.workspace(CLEAN, CORRUPTED, " mat", " house")
    assert ws.circuit is not None and "circuit" in ws.widgets
    ws.circuit.node("L1H1")
    assert lens.selection.label == "L1H1" and ws.attention.focus == [1, 1]
