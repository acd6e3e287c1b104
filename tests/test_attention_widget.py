"""The AttentionGrid protocol without a kernel: every message kind, junk included."""

from __future__ import annotations

import math

import pytest
import torch

from lenswidget import InputError
from lenswidget.analysis import ablate_heads, head_scores
from lenswidget.encode import decode_tensor
from lenswidget.widgets import AttentionGrid

from .wire import Wire

PROMPT = "the cat sat on the mat and the cat sat on the mat"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture()
def grid(toy_lens):
    return AttentionGrid(toy_lens, PROMPT)


@pytest.fixture()
def wire(grid):
    return Wire(grid)


def test_initial_state(grid, toy_lens):
    tokens = toy_lens.tokenize(PROMPT)
    assert grid.prompt == PROMPT
    assert grid.tokens == toy_lens.str_tokens(tokens)
    assert (grid.n_layers, grid.n_heads) == (toy_lens.n_layers, toy_lens.n_heads)
    scores = head_scores(toy_lens.model, tokens)
    pat = decode_tensor(grid.patterns, grid.patterns_meta)
    assert grid.patterns_meta["dtype"] == "f16"
    torch.testing.assert_close(pat, scores.patterns, atol=1e-3, rtol=0)
    torch.testing.assert_close(decode_tensor(grid.scores, grid.scores_meta), scores.values)
    n_weights = pat.numel()
    assert len(grid.patterns) <= 2 * n_weights


def test_ablate_request_equals_python_method(grid, wire, toy_lens):
    reply = wire.request("ablate", {"layer": 1, "head": 0, "mode": "zero"})
    assert reply["ok"] and reply["id"] == "r1"
    expected = ablate_heads(toy_lens.model, toy_lens.tokenize(PROMPT), [(1, 0)], mode="zero").to_json(toy_lens.model)
    assert reply["result"]["delta_logprob"] == pytest.approx(expected["delta_logprob"], abs=1e-6)
    assert grid.last_result == reply["result"]
    assert grid.focus == [1, 0]
    py = grid.ablate(1, 0, "zero")
    assert py.to_json(toy_lens.model)["delta_logprob"] == pytest.approx(reply["result"]["delta_logprob"], abs=1e-6)
    # mode defaults to the widget's ablation_mode
    grid.ablation_mode = "mean"
    reply = wire.request("ablate", {"layer": 0, "head": 1})
    assert reply["ok"] and reply["result"]["mode"] == "mean"


def test_run_and_clear_requests(grid, wire):
    reply = wire.request("run", {"prompt": "the dog ran"})
    assert reply["ok"] and reply["result"]["n_tokens"] == len(grid.tokens)
    assert grid.prompt == "the dog ran"
    wire.request("ablate", {"layer": 0, "head": 0})
    assert grid.last_result
    assert wire.request("clear")["ok"]
    assert grid.last_result == {}


@pytest.mark.parametrize(
    "msg, kind, fragment",
    [
        ("not a dict", "protocol", "message object"),
        ([1, 2, 3], "protocol", "message object"),
        ({"type": "request", "kind": "run", "args": {"prompt": "x"}}, "protocol", "needs an 'id'"),
        ({"type": "bogus", "id": "a"}, "protocol", "Unknown message type"),
        ({"type": "request", "id": "a", "kind": "explode", "args": {}}, "protocol", "Unknown request kind"),
        ({"type": "request", "id": "a", "kind": ["run"], "args": {}}, "protocol", "Unknown request kind"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": "1,2"}, "protocol", "args must be an object"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": {"layer": 1}}, "protocol", "missing argument 'head'"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": {"layer": "1", "head": 0}}, "protocol", "must be int"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": {"layer": True, "head": 0}}, "protocol", "must be int"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": {"layer": 1.5, "head": 0}}, "protocol", "must be int"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": {"layer": 0, "head": 0, "x": 1}}, "protocol", "unknown argument"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": {"layer": 99, "head": 0}}, "input", "out of range"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": {"layer": -1, "head": 0}}, "input", "out of range"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": {"layer": 0, "head": 99}}, "input", "out of range"),
        ({"type": "request", "id": "a", "kind": "ablate", "args": {"layer": 0, "head": 0, "mode": "half"}}, "input", "Unknown ablation mode"),
        ({"type": "request", "id": "a", "kind": "run", "args": {"prompt": ""}}, "input", "empty"),
        ({"type": "request", "id": "a", "kind": "run", "args": {"prompt": "   "}}, "input", "empty"),
        ({"type": "request", "id": "a", "kind": "run", "args": {"prompt": None}}, "protocol", "must be str"),
    ],
)
def test_junk_messages_get_clear_errors_and_state_survives(grid, wire, msg, kind, fragment):
    before = (grid.prompt, grid.patterns, grid.tokens)
    reply = wire.raw(msg)
    assert reply["ok"] is False
    assert reply["error"]["kind"] == kind
    assert fragment in reply["error"]["message"]
    assert grid.error["message"] == reply["error"]["message"]
    assert (grid.prompt, grid.patterns, grid.tokens) == before
    # the widget keeps working, and a good request clears the error
    ok = wire.request("ablate", {"layer": 0, "head": 0})
    assert ok["ok"] and grid.error == {}


def test_prompt_longer_than_context(grid, wire, toy_lens):
    long_prompt = " ".join(["cat"] * (toy_lens.n_ctx + 5))
    reply = wire.request("run", {"prompt": long_prompt})
    assert not reply["ok"] and "context" in reply["error"]["message"]
    assert grid.prompt == PROMPT


def test_python_methods_raise_and_show_errors(grid):
    with pytest.raises(InputError, match="empty"):
        grid.run("")
    assert "empty" in grid.error["message"] and grid.prompt == PROMPT
    with pytest.raises(InputError, match="out of range"):
        grid.ablate(0, 99)
    with pytest.raises(InputError):
        grid.focus_head(42, 0)
    grid.focus_head(1, 1)
    assert grid.focus == [1, 1] and grid.error == {}


def test_cancel_of_unknown_id_and_busy_session(grid, wire, toy_lens):
    grid._on_msg(grid, {"type": "cancel", "id": "nope"}, [])  # ignored, no reply, no raise
    with toy_lens.computation("something else"):
        reply = wire.request("ablate", {"layer": 0, "head": 0})
    assert not reply["ok"] and reply["error"]["kind"] == "busy"
    assert wire.request("ablate", {"layer": 0, "head": 0})["ok"]


def test_unknown_kwargs_fail_fast(toy_lens):
    with pytest.raises(TypeError, match="unexpected keyword"):
        AttentionGrid(toy_lens, PROMPT, colour="red")
    with pytest.raises(TypeError, match="Lens"):
        AttentionGrid("not a lens", PROMPT)


@pytest.mark.smollm2
def test_token_strings_are_the_literal_text(smollm2_lens):
    # a BPE tokenizer keeps every character: the tokens of an HTML-looking prompt are plain strings
    # that join back to it (the view sets them with textContent; see js/test and the e2e test)
    grid = AttentionGrid(smollm2_lens, XSS)
    assert "".join(grid.tokens[1:]) == XSS
    assert grid.last_result == {}


def test_state_for_redisplay(grid):
    grid.ablate(1, 1)
    state = grid.get_state()
    for key in ("prompt", "tokens", "patterns", "scores", "focus", "last_result", "color_by"):
        assert key in state
    assert state["last_result"]["label"] == "L1H1"
    assert state["focus"] == [1, 1]


def test_several_widgets_share_one_lens(toy_lens):
    a = AttentionGrid(toy_lens, PROMPT)
    b = AttentionGrid(toy_lens, "the dog ran to the cat")
    assert a.lens is b.lens
    ra, rb = a.ablate(1, 0), b.ablate(1, 0)
    assert ra.tokens.shape != rb.tokens.shape
    assert math.isfinite(float(ra.delta_logprob.sum()))


def test_missing_bundle_is_a_clear_message_not_a_broken_import():
    from lenswidget.widgets.base import bundle, bundle_missing

    esm = bundle("no_such_widget.js")
    assert isinstance(esm, str) and "export default" in esm and "make js" in esm
    assert "missing" in bundle_missing("no_such_widget.js")
    assert bundle_missing("attention.js") is None  # built by `make` before the tests
