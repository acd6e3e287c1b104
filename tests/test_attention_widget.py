"""The AttentionGrid protocol without a kernel: every message kind, junk included."""

from __future__ import annotations

import math

import pytest
import torch

from lenswidget import InputError
from lenswidget.analysis import ablate_heads, head_scores
from lenswidget.encode import decode_tensor, decode_tril
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
    # a short prompt: the thumbnails are the full patterns (causal triangle only)
    assert grid.patterns_meta["layout"] == "tril" and not grid.patterns_meta["pooled"]
    pat = decode_tril(grid.patterns, grid.patterns_meta)
    assert grid.patterns_meta["dtype"] == "f16"
    torch.testing.assert_close(pat, scores.patterns, atol=1e-3, rtol=0)
    torch.testing.assert_close(decode_tensor(grid.scores, grid.scores_meta), scores.values)
    T = tokens.shape[1]
    assert len(grid.patterns) == 2 * toy_lens.n_layers * toy_lens.n_heads * T * (T + 1) // 2


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


# ---------------------------------------------------------------------- long prompts: bounded bytes
def _max_pool_by_hand(p: torch.Tensor, k: int) -> torch.Tensor:
    """Max over square bins of k tokens, written out (the last bin holds what is left)."""
    n = p.shape[-1]
    side = -(-n // k)
    out = torch.zeros(side, side)
    for i in range(side):
        for j in range(side):
            out[i, j] = p[i * k : (i + 1) * k, j * k : (j + 1) * k].max()
    return out


@pytest.fixture(scope="module")
def long_lens():
    from lenswidget import Lens, models

    return Lens(models.random_hf("llama", n_layers=3, n_heads=4, n_ctx=512, seed=1))


def test_pooled_grid_and_focus_request_on_a_long_prompt(long_lens, monkeypatch):
    from lenswidget.widgets import attention as mod

    monkeypatch.setattr(mod, "KEEP_PATTERNS_BYTES", 0)  # force the block-rerun path
    prompt = " ".join(["the cat sat on the mat", "a dog ran to the door"] * 25)
    grid = AttentionGrid(long_lens, prompt)
    tokens = long_lens.tokenize(prompt)
    T = tokens.shape[1]
    assert T > 200
    ref = head_scores(long_lens.model, tokens)  # every pattern at once: the reference
    meta = grid.patterns_meta
    S = meta["size"]
    k = -(-T // mod.THUMB_MAX)  # tokens a cell
    assert meta["pooled"] and meta["pos"] == T and S == -(-T // k) <= mod.THUMB_MAX < T
    thumbs = decode_tril(grid.patterns, meta)
    for layer, head in [(0, 0), (2, 3)]:
        by_hand = _max_pool_by_hand(ref.patterns[layer, head], k)
        assert float(by_hand.triu(1).abs().max()) == 0.0  # causal: the triangle is everything
        torch.testing.assert_close(thumbs[layer, head], by_hand, atol=1e-3, rtol=0)
        # max-pooling, not mean: a bin's value is its sharpest weight
        mean = ref.patterns[layer, head][:k, :k].mean()
        assert float(by_hand[0, 0]) > float(mean) + 0.05
    torch.testing.assert_close(decode_tensor(grid.scores, grid.scores_meta), ref.values, atol=1e-5, rtol=0)
    assert grid.streamed.patterns is None and grid.streamed.block_inputs is not None
    # the focus request: the full pattern of that head, recomputed from its block's input
    wire = Wire(grid)
    reply = wire.request("pattern", {"layer": 2, "head": 1})
    assert reply["ok"] and reply["result"]["meta"]["layout"] == "tril"
    buffers = [b for c, b in wire.sent if c.get("type") == "reply"][0]
    full = decode_tril(buffers[0], reply["result"]["meta"])
    torch.testing.assert_close(full, ref.patterns[2, 1], atol=1e-3, rtol=0)
    torch.testing.assert_close(grid.pattern(2, 1), ref.patterns[2, 1], atol=1e-5, rtol=0)
    bad = wire.request("pattern", {"layer": 9, "head": 0})
    assert not bad["ok"] and grid.error["kind"] == "input"
    assert wire.request("pattern", {"layer": 0, "head": 0})["ok"]


def test_thumbnail_bytes_are_bounded_for_any_model():
    from lenswidget.widgets.attention import THUMB_BYTES, thumb_layout

    for L, H, T in [(2, 4, 40), (30, 9, 4000), (32, 32, 2048), (80, 64, 4096), (126, 128, 4096)]:
        size, dtype = thumb_layout(L, H, T)
        n_bytes = L * H * size * (size + 1) // 2 * (2 if dtype == "f16" else 1)
        assert n_bytes <= THUMB_BYTES and size >= 4
    assert thumb_layout(2, 4, 40) == (40, "f16")  # short prompts: the full pattern, exact
    assert thumb_layout(32, 32, 2048) == (64, "f16")


def test_too_long_prompt_is_refused_and_state_kept(grid, monkeypatch):
    from lenswidget.widgets import attention as mod

    before = (grid.prompt, grid.patterns)
    monkeypatch.setattr(mod, "MAX_TOKENS", 10)
    with pytest.raises(InputError, match="at most 10"):
        grid.run("the cat sat on the mat and the dog sat on the cat")
    assert (grid.prompt, grid.patterns) == before and "at most 10" in grid.error["message"]
    monkeypatch.setattr(mod, "MAX_TOKENS", 4096)
    assert grid.run("the dog ran") is not None


def test_widgets_do_not_import_the_session_at_run_time():
    """session.py builds widgets; widgets check a lens by shape (base.LensLike) and import Lens
    only for type checking, so there is no import circle."""
    import ast
    import pathlib

    import lenswidget.widgets as pkg

    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level, outside `if TYPE_CHECKING:`
            if isinstance(node, ast.ImportFrom) and node.module == "session":
                raise AssertionError(f"{path.name} imports ..session at run time")
    with pytest.raises(TypeError, match="needs a lenswidget.Lens"):
        AttentionGrid(object(), PROMPT)


# ---------------------------------------------------------------------- long prompts: overview + window
def _tl_pattern(model, tokens, layer: int, head: int) -> torch.Tensor:
    """The reference: TransformerLens's own cached pattern of that head (every pattern at once)."""
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    return cache[f"blocks.{layer}.attn.hook_pattern"][0, head].float().cpu()


@pytest.fixture(scope="module")
def sharp_lens():
    """A random Llama with weights drawn wide (initializer_range=0.2): sharp, head-specific patterns."""
    from lenswidget import Lens, models

    return Lens(models.random_hf("llama", n_layers=3, n_heads=4, n_ctx=512, seed=1, initializer_range=0.2))


def test_focus_overview_and_window_on_a_long_prompt(sharp_lens, monkeypatch):
    long_lens = sharp_lens
    from lenswidget.widgets import attention as mod

    monkeypatch.setattr(mod, "KEEP_PATTERNS_BYTES", 0)  # the block-rerun path, as on a big model
    monkeypatch.setattr(mod, "OVERVIEW", 100)  # bins of several tokens on a ~300-token prompt
    prompt = " ".join(["the cat sat on the mat", "a dog ran to the door"] * 30)
    grid = AttentionGrid(long_lens, prompt)
    tokens = long_lens.tokenize(prompt)
    T = tokens.shape[1]
    assert T > mod.WINDOW_MAX
    ref = _tl_pattern(long_lens.model, tokens, 2, 1)
    other = _tl_pattern(long_lens.model, tokens, 0, 3)
    wire = Wire(grid)

    # the overview: kept from the grid's run (no rerun), the max-pool of TL's pattern
    assert grid.streamed.overviews is not None and grid._full is None
    reply = wire.request("overview", {"layer": 2, "head": 1})
    meta = reply["result"]["meta"]
    k = meta["bin"]
    assert reply["ok"] and k == -(-T // 100) and k > 1 and meta["size"] == -(-T // k) and meta["pos"] == T
    buffers = [b for c, b in wire.sent if c.get("type") == "reply"][0]
    assert len(buffers[0]) == meta["size"] * (meta["size"] + 1)  # f16 triangle only
    over = decode_tril(buffers[0], meta)
    by_hand = _max_pool_by_hand(ref, k)
    torch.testing.assert_close(over, by_hand, atol=2e-3, rtol=0)
    assert float((by_hand - _max_pool_by_hand(other, k)).abs().max()) > 0.05  # the head's own
    mean = ref[:k, :k].mean()
    assert float(by_hand[0, 0]) > float(mean) + 0.05  # max, not mean
    assert grid._full is None  # still no rerun
    torch.testing.assert_close(grid.overview(2, 1).values, over, atol=0, rtol=0)
    # the view's first window (the first 64 tokens) is kept too: exact, still no rerun
    corner = wire.request("window", {"layer": 2, "head": 1, "q0": 0, "q1": 64, "k0": 0, "k1": 64})
    buffers = [b for c, b in wire.sent if c.get("type") == "reply"][0]
    torch.testing.assert_close(decode_tensor(buffers[0], corner["result"]["meta"]), ref[:64, :64], atol=1e-5, rtol=0)
    assert grid._full is None

    # a window at full resolution, with its token labels: TL's pattern sliced
    q0, q1, k0, k1 = T - 40, T, T - 90, T - 20
    reply = wire.request("window", {"layer": 2, "head": 1, "q0": q0, "q1": q1, "k0": k0, "k1": k1})
    assert reply["ok"], reply
    res = reply["result"]
    assert (res["q0"], res["q1"], res["k0"], res["k1"]) == (q0, q1, k0, k1)
    buffers = [b for c, b in wire.sent if c.get("type") == "reply"][0]
    values = decode_tensor(buffers[0], res["meta"])
    assert values.shape == (40, 70) and res["meta"]["dtype"] == "f32"
    torch.testing.assert_close(values, ref[q0:q1, k0:k1], atol=1e-5, rtol=0)
    assert float(values.max()) > 0.05 and float((values - other[q0:q1, k0:k1]).abs().max()) > 0.05
    assert grid.focus_window == [q0, q1, k0, k1]

    # the Python method: the same numbers and labels, focus and window set for the view
    win = grid.window(10, 60, 0, 50, layer=0, head=3)
    torch.testing.assert_close(win.values, other[10:60, 0:50], atol=1e-5, rtol=0)
    str_toks = long_lens.str_tokens(tokens)
    assert win.query_tokens == str_toks[10:60] and win.key_tokens == str_toks[0:50]
    assert grid.focus == [0, 3] and grid.focus_window == [10, 60, 0, 50]
    assert grid.window(0, 5, 0, 5).layer == 0  # the focused head by default

    # bad windows: a clear error, state intact, the next request works
    for args, fragment in [
        ({"q0": 0, "q1": T + 1, "k0": 0, "k1": 5}, "not inside"),
        ({"q0": 5, "q1": 5, "k0": 0, "k1": 5}, "not inside"),
        ({"q0": 0, "q1": 300, "k0": 0, "k1": 10}, "at most 256"),
    ]:
        bad = wire.request("window", {"layer": 2, "head": 1, **args})
        assert not bad["ok"] and fragment in bad["error"]["message"] and grid.error["kind"] == "input"
        assert grid.focus_window == [0, 5, 0, 5]
    junk = wire.request("window", {"layer": 2, "head": 1, "q0": "<b>x</b>", "q1": None, "k0": 0, "k1": 10})
    assert not junk["ok"] and "must be int" in junk["error"]["message"] and grid.focus_window == [0, 5, 0, 5]
    with pytest.raises(InputError, match="at most 256"):
        grid.window(0, 257, 0, 10)
    with pytest.raises(Exception, match="not inside"):
        grid.focus_window = [0, T + 5, 0, 1]
    with pytest.raises(Exception, match="expected an int"):
        grid.focus_window = ["junk", 1, 0, 1]
    with pytest.raises(InputError, match="must be integers"):
        grid.window("junk", 1, 0, 1)
    assert wire.request("window", {"layer": 1, "head": 0, "q0": 0, "q1": 8, "k0": 0, "k1": 8})["ok"]
    assert grid.error == {}
