"""`AttentionGrid`: every layer x head at a glance, one head in full, click a head to ablate it.

Mirrors ``js/attention.ts``. Traits and requests are listed in docs/protocol.md.
"""

from __future__ import annotations

from typing import Any

import torch
import traitlets

from ..analysis.ablation import MODES, AblationResult, ablate_heads
from ..analysis.heads import SCORE_NAMES, HeadScores, head_scores
from ..encode import encode_tensor
from ..errors import InputError
from ..selection import Selection
from ..session import Lens
from ._resample import resample_tokens
from .base import LensWidget, Request, bundle

#: above this many attention weights, patterns travel as 1 byte each instead of float16
U8_THRESHOLD = 8_000_000


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

    REQUESTS = {
        "run": Request("run", {"prompt": str}),
        "ablate": Request("ablate", {"layer": int, "head": int, "mode": (str, None)}),
        "clear": Request("clear", {}),
    }

    def __init__(self, lens: Lens, prompt: str, **kwargs: Any) -> None:
        super().__init__(lens, **kwargs)
        self.head_scores: HeadScores | None = None
        self._tokens: torch.Tensor | None = None
        self.last_ablation: AblationResult | None = None
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

    # ------------------------------------------------------------------ work
    def _run(self, prompt: str) -> HeadScores:
        tokens = self.lens.tokenize(prompt)
        if tokens.shape[-1] < 2:
            raise InputError("The prompt needs at least one token after BOS to show attention.")
        run = self.lens.run(tokens)
        scores = head_scores(self.lens.model, tokens, cache=run.cache)
        n_weights = scores.patterns.numel()
        pat_bytes, pat_meta = encode_tensor(
            scores.patterns, "f16" if n_weights <= U8_THRESHOLD else "u8", lo=0.0, hi=1.0
        )
        score_bytes, score_meta = encode_tensor(scores.values, "f32")
        self.head_scores = scores
        self._tokens = tokens
        self.last_ablation = None
        with self.hold_sync():
            self.prompt = prompt
            self.tokens = self.lens.str_tokens(tokens)
            self.n_layers = self.lens.n_layers
            self.n_heads = self.lens.n_heads
            self.patterns = pat_bytes
            self.patterns_meta = pat_meta
            self.scores = score_bytes
            self.scores_meta = score_meta
            self.last_result = {}
        return scores

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
        run = self.lens.run(self._tokens)
        result = ablate_heads(
            self.lens.model, self._tokens, [(layer, head)], mode=mode, source_tokens=source_tokens,
            logits_before=run.logits,
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
