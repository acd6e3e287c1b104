"""`AttentionGrid`: every layer x head at a glance, one head in full, click a head to ablate it.

Mirrors ``js/attention.ts``. Traits and requests are listed in docs/protocol.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import traitlets

from ..analysis.ablation import MODES, AblationResult, ablate_heads
from ..analysis.attention_stream import (
    PatternOverview, PatternWindow, StreamedAttention, check_window, head_pattern, overview_triangle, stream_attention,
)
from ..analysis.heads import SCORE_NAMES, HeadScores
from ..encode import encode_tensor, encode_tril
from ..errors import InputError
from ..selection import Selection
if TYPE_CHECKING:  # widgets check the lens through base.LensLike: no import circle with session.py
    from ..session import Lens
from ._resample import resample_tokens
from .base import LensWidget, Request, bundle

#: thumbnails of every head (the grid) travel in at most this many bytes
THUMB_BYTES = 6 * 1024**2
#: the largest thumbnail side; a head's thumbnail is its full pattern on prompts this short
THUMB_MAX = 64
#: a focused head's full pattern travels as float16 up to this many bytes, else as uint8
FOCUS_F16_BYTES = 8 * 1024**2
#: the grid shows prompts up to this many tokens (a focused head's uint8 triangle is then <= 8.4 MB)
MAX_TOKENS = 4096
#: keep every full pattern in memory (CPU float32) up to this many bytes; beyond it a focused
#: head's pattern is recomputed from its block's kept input
KEEP_PATTERNS_BYTES = 64 * 1024**2
#: a focused head is drawn in full up to this many tokens; longer prompts show an overview (max-pooled)
#: and a window of at most this many tokens a side at full resolution, with token labels
WINDOW_MAX = 256
#: overview side in cells (about the focus panel's width in CSS px), kept for every head while the
#: grid is built on prompts over WINDOW_MAX tokens (float16 triangles, at most OVERVIEW_BYTES in all)
OVERVIEW = 512
OVERVIEW_BYTES = 256 * 1024**2
#: the view's first window (queries and keys 0..CORNER-1) is kept for every head too: exact, no rerun
CORNER = 64


def thumb_layout(n_layers: int, n_heads: int, pos: int) -> tuple[int, str]:
    """Thumbnail side (at most; see ``pool_size``) and dtype so that every head's causal
    triangle fits :data:`THUMB_BYTES`."""
    size = min(pos, THUMB_MAX)
    for dtype, width in (("f16", 2), ("u8", 1)):
        s = size
        while s > 4 and n_layers * n_heads * s * (s + 1) // 2 * width > THUMB_BYTES:
            s -= 1
        if s == size or dtype == "u8":
            return s, dtype
    raise AssertionError  # pragma: no cover


class AttentionGrid(LensWidget):
    """All attention heads of a model on one prompt, live.

    Made by ``lens.attention(prompt)``. Every click in the view is also a method here:
    :meth:`run` (new prompt), :meth:`focus_head`, :meth:`ablate` (returns the
    :class:`~lenswidget.analysis.AblationResult` whose ``to_json()`` the view draws), :meth:`clear`.
    """

    _BUNDLE = "attention.js"
    _esm = bundle("attention.js")

    prompt = traitlets.Unicode("").tag(sync=True)
    tokens = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    n_layers = traitlets.Int(0).tag(sync=True)
    n_heads = traitlets.Int(0).tag(sync=True)
    patterns = traitlets.Bytes(b"").tag(sync=True)
    patterns_meta = traitlets.Dict({}).tag(sync=True)
    scores = traitlets.Bytes(b"").tag(sync=True)
    scores_meta = traitlets.Dict({}).tag(sync=True)
    score_names = traitlets.List(traitlets.Unicode(), list(SCORE_NAMES)).tag(sync=True)
    color_by = traitlets.Enum(list(SCORE_NAMES), default_value="induction").tag(sync=True)
    focus = traitlets.List(traitlets.Int(), []).tag(sync=True)
    ablation_mode = traitlets.Enum(list(MODES), default_value="zero").tag(sync=True)
    #: source prompts for ``"resample"`` ablation (each the prompt's token length)
    resample_prompts = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    #: the lens selection this grid last followed: ``{label, source}``, or ``{}``
    linked = traitlets.Dict({}).tag(sync=True)
    last_result = traitlets.Dict({}).tag(sync=True)
    #: the focused head's window at full resolution: ``[q0, q1, k0, k1]`` (queries q0 <= q < q1,
    #: keys k0 <= k < k1), or ``[]`` for the view's default
    focus_window = traitlets.List(traitlets.Int(), []).tag(sync=True)

    REQUESTS = {
        "run": Request("run", {"prompt": str}),
        "ablate": Request("ablate", {"layer": int, "head": int, "mode": (str, None)}),
        "clear": Request("clear", {}),
        "pattern": Request("pattern", {"layer": int, "head": int}),
        "overview": Request("overview", {"layer": int, "head": int}),
        "window": Request("window", {"layer": int, "head": int, "q0": int, "q1": int, "k0": int, "k1": int}),
    }

    def __init__(self, lens: Lens, prompt: str, **kwargs: Any) -> None:
        super().__init__(lens, **kwargs)
        self.head_scores: HeadScores | None = None
        self.streamed: StreamedAttention | None = None
        self._tokens: torch.Tensor | None = None
        self.last_ablation: AblationResult | None = None
        self._full: tuple[int, int, torch.Tensor] | None = None  # the last focused head's pattern
        self.run(prompt)
        # follow the lens's selection (a head picked in any view of this lens); held weakly
        self._unfollow = lens.observe_selection(self._follow_selection)

    # ------------------------------------------------------------------ validation of JS-set traits
    @traitlets.validate("focus")
    def _check_focus(self, proposal: Any) -> list[int]:
        value = list(proposal["value"])
        if not value:
            return []
        if len(value) != 2:
            raise traitlets.TraitError("focus is [] or [layer, head]")
        try:
            return list(self.lens.check_head(*value))
        except InputError as err:
            raise traitlets.TraitError(str(err)) from None

    @traitlets.validate("focus_window")
    def _check_window(self, proposal: Any) -> list[int]:
        value = list(proposal["value"])
        if not value:
            return []
        if len(value) != 4:
            raise traitlets.TraitError("focus_window is [] or [q0, q1, k0, k1]")
        try:
            return list(check_window(len(self.tokens), *value, WINDOW_MAX))
        except InputError as err:
            raise traitlets.TraitError(str(err)) from None

    # ------------------------------------------------------------------ public API (each click)
    def run(self, prompt: str) -> HeadScores:
        """Run the model on ``prompt``: new patterns and scores in the view. Returns the scores."""

        return self._python_call(lambda: self._exclusive("run", lambda: self._run(prompt)))

    def ablate(
        self, layer: int, head: int, mode: str | None = None, sources: list[str] | None = None
    ) -> AblationResult:
        """Rerun the model with head ``(layer, head)`` ablated (``mode`` "zero", "mean" or
        "resample", default the widget's ``ablation_mode``); show and return the change.
        ``"resample"`` takes the head's z from ``sources`` (prompts of the same token length;
        default ``resample_prompts``) and averages over them."""

        return self._python_call(
            lambda: self._exclusive("ablate", lambda: self._ablate(layer, head, mode, sources))
        )

    def focus_head(self, layer: int, head: int) -> None:
        """Show head ``(layer, head)`` full size."""
        self._python_call(lambda: setattr(self, "focus", list(self.lens.check_head(layer, head))))

    def pattern(self, layer: int, head: int) -> torch.Tensor:
        """The full attention pattern of head ``(layer, head)``: float32 [pos, pos] (queries as
        rows), what the focus panel draws (the view asks for it when the grid's thumbnails are
        pooled). Recomputed from that one block's kept input on long prompts."""
        return self._python_call(lambda: self._exclusive("pattern", lambda: self._pattern(layer, head).clone()))

    def overview(self, layer: int, head: int) -> PatternOverview:
        """Head ``(layer, head)``'s pattern max-pooled to at most :data:`OVERVIEW` cells a side:
        what the focus panel draws zoomed out on prompts over :data:`WINDOW_MAX` tokens (the view
        gets it as float16; kept from the grid's run, no rerun)."""

        def get() -> PatternOverview:
            tri, side, k = self._overview(layer, head)
            rows, cols = torch.tril_indices(side, side)
            values = torch.zeros(side, side)
            values[rows, cols] = tri.float()
            return PatternOverview(values=values, bin=k, pos=len(self.tokens), layer=int(layer), head=int(head))

        return self._python_call(lambda: self._exclusive("overview", get))

    def window(self, q0: int, q1: int, k0: int, k1: int, layer: int | None = None, head: int | None = None) -> PatternWindow:
        """Show queries ``q0 <= q < q1`` x keys ``k0 <= k < k1`` (at most :data:`WINDOW_MAX` a
        side) of head ``(layer, head)`` (default the focused head; it becomes focused) at full
        resolution with token labels; returns what the view draws."""

        def get() -> PatternWindow:
            f = (layer, head) if layer is not None or head is not None else tuple(self.focus)
            if len(f) != 2:
                raise InputError("No head is focused: pass layer and head, or focus one first.")
            win = self._window(f[0], f[1], q0, q1, k0, k1)
            with self.hold_sync():
                self.focus = [win.layer, win.head]
                self.focus_window = [win.q0, win.q1, win.k0, win.k1]
            return win

        return self._python_call(lambda: self._exclusive("window", get))

    def clear(self) -> None:
        """Remove the ablation result from the view."""
        self.last_ablation = None
        self.last_result = {}

    # ------------------------------------------------------------------ request handlers
    def _req_run(self, prompt: str) -> dict:
        self._run(prompt)
        return {"n_tokens": len(self.tokens)}

    def _req_ablate(self, layer: int, head: int, mode: str | None) -> dict:
        return self._ablate(layer, head, mode, None).to_json(self.lens.model)

    def _req_clear(self) -> dict:
        self.clear()
        return {}

    def _req_pattern(self, layer: int, head: int) -> tuple[dict, list]:
        pat = self._pattern(layer, head)
        pos = pat.shape[-1]
        dtype = "f16" if pos * (pos + 1) // 2 * 2 <= FOCUS_F16_BYTES else "u8"
        data, meta = encode_tril(pat, dtype, lo=0.0, hi=1.0)
        return {"layer": layer, "head": head, "meta": meta}, [data]

    def _req_overview(self, layer: int, head: int) -> tuple[dict, list]:
        tri, side, k = self._overview(layer, head)
        pos = len(self.tokens)
        meta = {"dtype": "f16", "shape": [int(tri.shape[0])], "scale": 1.0, "offset": 0.0, "layout": "tril",
                "size": side, "pos": pos, "bin": k, "pooled": k > 1}
        return {"layer": int(layer), "head": int(head), "meta": meta}, [tri.numpy().astype("<f2").tobytes()]

    def _req_window(self, layer: int, head: int, q0: int, q1: int, k0: int, k1: int) -> tuple[dict, list]:
        win = self._window(layer, head, q0, q1, k0, k1)
        self.focus_window = [win.q0, win.q1, win.k0, win.k1]
        data, meta = encode_tensor(win.values, "f32")
        bounds = {"q0": win.q0, "q1": win.q1, "k0": win.k0, "k1": win.k1}
        return {"layer": win.layer, "head": win.head, **bounds, "meta": meta}, [data]

    # ------------------------------------------------------------------ work
    def _run(self, prompt: str) -> HeadScores:
        tokens = self.lens.tokenize(prompt)
        if tokens.shape[-1] < 2:
            raise InputError("The prompt needs at least one token after BOS to show attention.")
        if tokens.shape[-1] > MAX_TOKENS:
            raise InputError(
                f"The prompt is {tokens.shape[-1]} tokens; the attention grid shows at most {MAX_TOKENS}. "
                "Shorten it (lenswidget.analysis.stream_attention computes the scores of longer prompts).",
                details={"n_tokens": int(tokens.shape[-1]), "max_tokens": MAX_TOKENS},
            )
        L, H = self.lens.n_layers, self.lens.n_heads
        size, dtype = thumb_layout(L, H, int(tokens.shape[-1]))
        # one layer's patterns at a time: scores and pooled thumbnails, never all patterns at once
        overview = OVERVIEW if tokens.shape[-1] > WINDOW_MAX else 0
        streamed = stream_attention(self.lens.model, tokens, thumb=size, keep_patterns_bytes=KEEP_PATTERNS_BYTES,
                                    overview=overview, overview_bytes=OVERVIEW_BYTES,
                                    corner=CORNER if overview else 0)
        pat_bytes, pat_meta = encode_tril(streamed.thumbs, dtype, lo=0.0, hi=1.0)
        pat_meta.update(pos=streamed.pos, pooled=streamed.pooled, bin=-(-streamed.pos // streamed.size),
                        window_max=WINDOW_MAX)
        score_bytes, score_meta = encode_tensor(streamed.values, "f32")
        full = streamed.patterns
        empty = torch.zeros(L, H, 0, 0)
        scores = HeadScores(values=streamed.values, names=streamed.names, patterns=full if full is not None else empty)
        self.head_scores = scores
        self.streamed = streamed
        self._tokens = tokens
        self.last_ablation = None
        self._full = None
        with self.hold_sync():
            self.focus_window = []
            self.prompt = prompt
            self.tokens = self.lens.str_tokens(tokens)
            self.n_layers = L
            self.n_heads = H
            self.patterns = pat_bytes
            self.patterns_meta = pat_meta
            self.scores = score_bytes
            self.scores_meta = score_meta
            self.last_result = {}
        return scores

    def _pattern(self, layer: Any, head: Any) -> torch.Tensor:
        layer, head = self.lens.check_head(layer, head)
        assert self.streamed is not None
        if self._full is not None and self._full[:2] == (layer, head):
            return self._full[2]
        pattern = head_pattern(self.lens.model, self.streamed, layer, head)
        self._full = (layer, head, pattern)  # scrolling a window slices it: one rerun a head
        return pattern

    def _overview(self, layer: Any, head: Any) -> tuple[torch.Tensor, int, int]:
        layer, head = self.lens.check_head(layer, head)
        assert self.streamed is not None
        kept = self.streamed.overviews is not None
        return overview_triangle(self.streamed, None if kept else self._pattern(layer, head), layer, head, OVERVIEW)

    def _window(self, layer: Any, head: Any, q0: Any, q1: Any, k0: Any, k1: Any) -> PatternWindow:
        layer, head = self.lens.check_head(layer, head)
        q0, q1, k0, k1 = check_window(len(self.tokens), q0, q1, k0, k1, WINDOW_MAX)
        corners = self.streamed.corners if self.streamed is not None else None
        kept = self._full is not None and self._full[:2] == (layer, head)
        if corners is not None and not kept and q1 <= corners.shape[-1] and k1 <= corners.shape[-1]:
            values = corners[layer, head, q0:q1, k0:k1].clone()  # the first window: kept, no rerun
        else:
            values = self._pattern(layer, head)[q0:q1, k0:k1].clone()
        return PatternWindow(values=values, q0=q0, q1=q1, k0=k0, k1=k1, layer=layer, head=head,
                             query_tokens=self.tokens[q0:q1], key_tokens=self.tokens[k0:k1])

    def _ablate(self, layer: Any, head: Any, mode: str | None, sources: Any) -> AblationResult:
        layer, head = self.lens.check_head(layer, head)
        mode = self.ablation_mode if mode is None else mode
        if mode not in MODES:
            raise InputError(f"Unknown ablation mode {mode!r}: use one of {list(MODES)}.")
        assert self._tokens is not None
        source_tokens = None
        if mode == "resample":
            prompts = self.resample_prompts if sources is None else sources
            source_tokens = resample_tokens(self.lens, prompts, self._tokens)
        result = ablate_heads(
            self.lens.model, self._tokens, [(layer, head)], mode=mode, source_tokens=source_tokens,
            logits_before=self.streamed.logits if self.streamed is not None else None,
        )
        self.last_ablation = result
        with self.hold_sync():
            self.focus = [layer, head]
            self.last_result = result.to_json(self.lens.model)
        return result

    # ------------------------------------------------------------------ linked selection
    def _follow_selection(self, selection: Selection | None) -> None:
        """Show the selected head (on the prompt it was picked on): called by the lens."""
        if selection is None or selection.head is None:
            return
        layer, head = selection.head
        prompt = selection.prompt

        def follow() -> None:
            if prompt is not None and prompt != self.prompt:
                with self.lens.computation("AttentionGrid.follow", wait=False):
                    self._run(prompt)
            with self.hold_sync():
                self.focus = [layer, head]
                self.linked = {"label": selection.label, "source": selection.source}

        self._python_call(follow)
