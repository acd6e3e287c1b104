"""The lens selection: Lens.select / Lens.selection, its observers, the attention grid following
it, the logit-lens table publishing to it, and resample ablation in both widgets."""

from __future__ import annotations

import gc
import threading

import pytest
import torch

from lenswidget import InputError, Lens, models

from .wire import Wire

PROMPT = "the cat sat on the mat and the cat sat on the mat"
OTHER = "a dog ran to the house and a dog ran to the house"  # same token length as PROMPT
SHORT = "the cat sat"


@pytest.fixture()
def lens(toy_model):
    return Lens(toy_model)


@pytest.fixture(scope="module")
def llama_lens():
    """Grouped-query attention (4 heads, 2 key/value heads) and MLPs."""
    return Lens(models.random_hf("llama", seed=0))


def _pattern(model, prompt, layer, head):
    """The head's attention pattern on ``prompt`` from a plain run_with_cache."""
    _, cache = model.run_with_cache(model.to_tokens(prompt))
    return cache[f"blocks.{layer}.attn.hook_pattern"][0, head]


# ---------------------------------------------------------------- Lens.select
def test_select_labels(llama_lens):
    lens = llama_lens
    sel = lens.select("L1H3", PROMPT)
    assert (sel.label, sel.kind, sel.layer, sel.heads, sel.head, sel.prompt, sel.source) == (
        "L1H3", "head", 1, (3,), (1, 3), PROMPT, "python")
    assert lens.selection is sel
    assert lens.select((0, 2)).label == "L0H2"
    kv = lens.select("L1KV1")  # 4 query heads share 2 key/value heads: group 1 is heads 2, 3
    assert (kv.kind, kv.heads, kv.head) == ("kv_group", (2, 3), (1, 2))
    assert lens.select("mlp0").kind == "mlp" and lens.selection.head is None
    assert lens.select("attn1").kind == "attn"
    assert lens.select("embed").layer is None
    assert lens.select(None) is None and lens.selection is None


@pytest.mark.parametrize(
    "label, match",
    [
        ("L2H0", "Layer 2 is out of range"),
        ("L0H4", "Head 4 is out of range"),
        ((0, 9), "Head 9 is out of range"),
        ("mlp0", "no blocks.0.hook_mlp_out"),  # the toy model is attention-only
        ("L0KV0", "no grouped-query attention"),
        ("head 3", "Cannot select 'head 3'"),
        (3, "Cannot select 3"),
        ("l0h0", "Cannot select"),
    ],
)
def test_select_what_the_model_lacks(lens, label, match):
    before = lens.select("L1H2", PROMPT)
    with pytest.raises(InputError, match=match):
        lens.select(label)
    assert lens.selection is before  # kept


def test_select_bad_prompt_and_kv_range(lens, llama_lens):
    with pytest.raises(InputError, match="empty"):
        lens.select("L0H0", "   ")
    with pytest.raises(InputError, match="must be text"):
        lens.select("L0H0", 42)
    with pytest.raises(InputError, match="group 2 is out of range"):
        llama_lens.select("L0KV2")
    assert lens.selection is None


# ---------------------------------------------------------------- observers
def test_observers_weak_unsubscribe_and_deferred(lens):
    seen = []
    stop = lens.observe_selection(seen.append)
    lens.select("L0H1")
    assert [s.label for s in seen] == ["L0H1"]

    class Widgetish:
        def __init__(self):
            self.got = []

        def on(self, sel):
            self.got.append(sel)

    w = Widgetish()
    lens.observe_selection(w.on)
    lens.select("L1H0")
    assert [s.label for s in w.got] == ["L1H0"]
    del w
    gc.collect()
    lens.select("L1H1")  # the collected observer is dropped, not called
    assert [s.label for s in seen] == ["L0H1", "L1H0", "L1H1"]

    # inside a computation (a widget's click handler) the notice waits for its end
    with lens.computation("click"):
        lens.select("L1H3")
        assert lens.selection.label == "L1H3" and seen[-1].label == "L1H1"
    assert seen[-1].label == "L1H3"

    stop()
    lens.select("L0H0")
    assert seen[-1].label == "L1H3"


def test_failing_observer_does_not_break_the_publisher(lens):
    def broken(_sel):
        raise RuntimeError("boom")

    seen = []
    lens.observe_selection(broken)
    lens.observe_selection(seen.append)
    assert lens.select("L0H3").label == "L0H3"
    assert seen[-1].label == "L0H3"


# ---------------------------------------------------------------- the attention grid follows
def test_grid_follows_selection_on_its_prompt(lens):
    grid = lens.attention(PROMPT)
    patterns = grid.patterns
    lens.select("L1H2")
    assert grid.focus == [1, 2] and grid.prompt == PROMPT
    assert grid.patterns is patterns  # same prompt: no rerun
    assert grid.linked == {"label": "L1H2", "source": "python"}
    lens.select("attn0")  # nothing to focus in the grid
    assert grid.focus == [1, 2]


def test_grid_follows_selection_to_another_prompt(lens, toy_model):
    grid = lens.attention(PROMPT)
    lens.select("L0H3", SHORT)
    assert grid.prompt == SHORT and grid.focus == [0, 3]
    head = grid.head_scores.patterns[0, 3]
    ref = _pattern(toy_model, SHORT, 0, 3)
    torch.testing.assert_close(head.float(), ref.float(), atol=1e-5, rtol=0)
    # a real pattern on the new prompt, not the old one's
    assert head.shape == (4, 4) and float(head[3].max()) < 0.999


def test_grid_busy_elsewhere_keeps_state_then_works(lens):
    grid = lens.attention(PROMPT)
    lens.select("L1H0")
    held, release = threading.Event(), threading.Event()

    def hold():
        with lens.computation("sweep"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        lens.select("L0H2", SHORT)  # the grid would need the model: busy
        assert grid.error["kind"] == "busy"
        assert grid.prompt == PROMPT and grid.focus == [1, 0]
        assert lens.selection.label == "L0H2"
    finally:
        release.set()
        t.join()
    lens.select("L0H2", SHORT)
    assert grid.prompt == SHORT and grid.focus == [0, 2] and grid.error == {}


def test_patching_cell_click_selects_head_for_the_grid(lens):
    clean, corrupted = "the cat sat on the mat . the cat sat on the", "the dog ran to the house . the dog ran to the"
    grid = lens.attention(SHORT)
    hm = lens.patching(clean, corrupted, " mat", " house")
    reply = Wire(hm).request("patch", {"site": "attn_head_out_all_pos", "index": [1, 2]})
    assert reply["ok"]
    assert lens.selection.label == "L1H2" and lens.selection.source == "PatchingHeatmap"
    # the grid moved to the prompt the cell was picked on (the heatmap held the model meanwhile)
    assert grid.prompt == clean and grid.focus == [1, 2]


# ---------------------------------------------------------------- the logit lens publishes
def test_dla_contributor_click_publishes(llama_lens):
    lens = llama_lens
    table = lens.logit_lens(PROMPT)
    grid = lens.attention(SHORT)
    wire = Wire(table)
    reply = wire.request("pick", {"component": "L1H1"})
    assert reply["ok"] and reply["result"]["label"] == "L1H1"
    assert lens.selection.source == "LogitLensTable" and lens.selection.prompt == PROMPT
    assert grid.prompt == PROMPT and grid.focus == [1, 1]
    # a component the model lacks: an error reply and banner, the selection kept
    reply = wire.request("pick", {"component": "L7H0"})
    assert not reply["ok"] and reply["error"]["kind"] == "input" and "Layer 7" in reply["error"]["message"]
    assert table.error["kind"] == "input"
    assert lens.selection.label == "L1H1"
    assert table.pick("mlp1").kind == "mlp" and table.error == {}


# ---------------------------------------------------------------- resample in the widgets
def _resample_hand(model, prompt, sources, layer, head):
    """Mean over sources of log p(next token) with the head's z swapped for the source's."""
    tokens = model.to_tokens(prompt)
    lps = []
    for src in sources:
        _, cache = model.run_with_cache(model.to_tokens(src))
        z_src = cache[f"blocks.{layer}.attn.hook_z"][0, :, head]

        def fn(z, hook):
            z = z.clone()
            z[0, :, head] = z_src
            return z

        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", fn)])[0]
        lps.append(torch.log_softmax(logits[:-1].double(), -1).gather(-1, tokens[0, 1:, None])[:, 0])
    return torch.stack(lps).mean(0)


def test_grid_resample_matches_hand_hook_and_bad_sources(lens, toy_model):
    grid = lens.attention(PROMPT, ablation_mode="resample", resample_prompts=[OTHER, PROMPT.replace("cat", "dog")])
    wire = Wire(grid)
    reply = wire.request("ablate", {"layer": 1, "head": 0})
    assert reply["ok"] and reply["result"]["mode"] == "resample" and reply["result"]["n_sources"] == 2
    want = _resample_hand(toy_model, PROMPT, grid.resample_prompts, 1, 0)
    assert reply["result"]["logprob_after"] == pytest.approx(want.tolist(), abs=1e-4)
    assert max(abs(d) for d in reply["result"]["delta_logprob"]) > 0.5  # far from the unablated run
    shown = grid.last_result

    # a source prompt of another length: both tokenizations in the error; state kept; next works
    grid.resample_prompts = [OTHER, SHORT]
    reply = wire.request("ablate", {"layer": 1, "head": 0})
    assert not reply["ok"] and "Resample prompt 2 is 4 tokens but the prompt is 14" in reply["error"]["message"]
    assert reply["error"]["details"]["tokens"] == ["<bos>", "the", "cat", "sat"]
    assert grid.error["kind"] == "input" and grid.last_result == shown
    with pytest.raises(InputError, match="needs source prompts"):
        grid.ablate(1, 0, sources=[])
    r = grid.ablate(1, 0, sources=[OTHER])
    assert r.n_sources == 1 and grid.error == {}


def _hand_run(model, prompt, hook_name, source, head=None):
    """Logits [pos, d_vocab] of ``prompt`` with ``hook_name`` swapped for its value on ``source``
    (only ``head``'s slice for a hook_z)."""
    _, src = model.run_with_cache(model.to_tokens(source))
    value = src[hook_name]

    def fn(x, hook):
        if head is None:
            return value.clone()
        x = x.clone()
        x[:, :, head] = value[:, :, head]
        return x

    return model.run_with_hooks(model.to_tokens(prompt), fwd_hooks=[(hook_name, fn)])[0].double()


def test_logit_lens_resample_matches_hand_hook(lens, llama_lens):
    # a head on the toy model (its induction head: the predictions change a lot)
    table = lens.logit_lens(PROMPT, ablation_mode="resample", resample_prompts=[OTHER])
    target = table.target
    reply = Wire(table).request("ablate", {"component": "L1H0"})
    assert reply["ok"] and table.ablated == ["L1H0"] and table.ablated_mode == "resample"
    probs = torch.softmax(_hand_run(lens.model, PROMPT, "blocks.1.attn.hook_z", OTHER, head=0), -1)
    final = table.result  # its last row reads the model's own output
    torch.testing.assert_close(final.target_prob[-1].double(), probs[:, target], atol=1e-4, rtol=0)
    assert final.top_ids[-1, :, 0].tolist() == probs.argmax(-1).tolist()
    assert (table.original.target_prob[-1] - final.target_prob[-1]).abs().max() > 0.2

    # an MLP on a random Llama (near-uniform predictions: compare logits)
    t2 = llama_lens.logit_lens(PROMPT, ablation_mode="resample", resample_prompts=[OTHER])
    t2.ablate("mlp0")
    logits = _hand_run(llama_lens.model, PROMPT, "blocks.0.hook_mlp_out", OTHER)
    torch.testing.assert_close(t2.result.target_logit[-1].double(), logits[:, t2.target], atol=1e-4, rtol=0)
    assert (t2.original.target_logit[-1] - t2.result.target_logit[-1]).abs().max() > 0.01

    # one source prompt at a time in the table, and the right length; state kept
    for sources, match in (([OTHER, OTHER], "give one resample prompt"), ([SHORT], "tokens but the prompt is")):
        with pytest.raises(InputError, match=match):
            table.ablate("L0H1", sources=sources)
    assert table.ablated == ["L1H0"] and table.error["kind"] == "input"
    table.undo()
    assert table.ablated == [] and table.ablated_mode == ""
