"""`WeightsView`: the circuits in the weights. Composition scores between heads (Q / K / V tabs,
the random baseline on the scale), copying scores of every head; click a pair for both heads'
attention on a prompt, click a head for its OV table, QK scores and promoted tokens.

Mirrors ``js/weights.ts``; traits and requests are in docs/protocol.md (WeightsView).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch
import traitlets

from ..analysis.heads import attention_patterns
from ..analysis.hooks import act_name, head_label
from ..analysis.weights import KINDS, Composition, all_composition_scores, copying_scores, ov_circuit, qk_circuit
from ..encode import encode_tensor
from ..errors import InputError, LensError
if TYPE_CHECKING:  # widgets check the lens through base.LensLike: no import circle with session.py
    from ..session import Lens
from .base import LensWidget, Request, bundle

_LABEL = re.compile(r"^L(\d+)H(\d+)$")


class WeightsView(LensWidget):
    """Composition and copying scores read from the weights, and per-head OV / QK circuits.

    Made by ``lens.weights(prompt)``. Every click is a method: :meth:`pair` (a cell of the
    composition heatmap), :meth:`head` (a head of the copying strip), :meth:`run` (new prompt);
    ``view.kind = "k"`` switches the tab. ``view.composition[kind]`` holds the
    :class:`~lenswidget.analysis.weights.Composition` of each kind, ``view.copying`` the
    [n_layers, n_heads] copying scores.

    Args:
        prompt: the prompt the pair and head panels show patterns, OV rows and QK scores for.
        kind: the composition tab shown first.
        k: tokens promoted / suppressed per OV row (1..50).
    """

    _BUNDLE = "weights.js"
    _esm = bundle("weights.js")

    prompt = traitlets.Unicode("").tag(sync=True)
    tokens = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    n_layers = traitlets.Int(0).tag(sync=True)
    n_heads = traitlets.Int(0).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    kind = traitlets.Enum(list(KINDS), default_value="k").tag(sync=True)
    #: float32 [N, N] (N = n_layers * n_heads; source head row, destination head column) of ``kind``
    comp = traitlets.Bytes(b"").tag(sync=True)
    comp_meta = traitlets.Dict({}).tag(sync=True)
    #: {"mean", "std"} of the random-matrix baseline and the score range of each kind
    baseline = traitlets.Dict({}).tag(sync=True)
    copying = traitlets.Bytes(b"").tag(sync=True)
    copying_meta = traitlets.Dict({}).tag(sync=True)
    k = traitlets.Int(8).tag(sync=True)
    selected_pair = traitlets.List(traitlets.Int(), []).tag(sync=True)
    pair_result = traitlets.Dict({}).tag(sync=True)
    selected_head = traitlets.List(traitlets.Int(), []).tag(sync=True)
    head_result = traitlets.Dict({}).tag(sync=True)

    REQUESTS = {
        "run": Request("run", {"prompt": str}),
        "pair": Request("pair", {"src_layer": int, "src_head": int, "dst_layer": int, "dst_head": int}),
        "head": Request("head", {"layer": int, "head": int}),
        "clear": Request("clear", {}),
    }

    @traitlets.validate("k")
    def _check_k(self, proposal: Any) -> int:
        if not 1 <= int(proposal["value"]) <= 50:
            raise traitlets.TraitError(f"k must be between 1 and 50, got {proposal['value']}.")
        return int(proposal["value"])

    def __init__(self, lens: Lens, prompt: str, **kwargs: Any) -> None:
        try:
            super().__init__(lens, **kwargs)
        except traitlets.TraitError as err:
            raise InputError(str(err)) from None
        self._tokens: torch.Tensor | None = None
        model = lens.model
        with lens.computation("WeightsView.weights"):
            self.composition: dict[str, Composition] = all_composition_scores(model)
            self.copying_scores: torch.Tensor = copying_scores(model)
        first = self.composition["q"]
        with self.hold_sync():
            self.n_layers, self.n_heads = lens.n_layers, lens.n_heads
            self.labels = list(first.labels)
            self.baseline = {
                "mean": first.baseline_mean,
                "std": first.baseline_std,
                "max": {k: float(c.scores.max()) for k, c in self.composition.items()},
            }
            self.copying, self.copying_meta = encode_tensor(self.copying_scores, "f32")
            self._show_kind()
        self.observe(lambda _change: self._show_kind(), names="kind")
        self.run(prompt)

    # ------------------------------------------------------------------ public API (each click)
    def run(self, prompt: str) -> list[str]:
        """Use ``prompt`` for the pair and head panels (they are redrawn for it). Returns its tokens."""
        return self._python_call(lambda: self._exclusive("run", lambda: self._run(prompt)))

    def pair(self, src: Any, dst: Any, kind: str | None = None) -> dict:
        """Click a cell: the composition of head ``src`` into head ``dst`` (labels ``"L0H3"`` or
        ``(layer, head)`` pairs; ``src`` in an earlier layer). Sets the tab to ``kind`` if given.
        Returns what the pair panel draws: the scores of all three kinds, the baseline, z-scores
        and both heads' attention patterns on the prompt."""

        def go() -> dict:
            if kind is not None:
                self.kind = _kind(kind)
            return self._exclusive("pair", lambda: self._pair(*self._head(src), *self._head(dst)))

        return self._python_call(go)

    def head(self, layer: Any, head: Any = None) -> dict:
        """Click a head (``head(1, 2)`` or ``head("L1H2")``): its copying score, its OV table for
        the prompt's tokens, its QK scores on the prompt and the tokens its output at the last
        position promotes (the dict the head panel draws)."""
        args = self._head(layer) if head is None else (layer, head)
        return self._python_call(lambda: self._exclusive("head", lambda: self._head_panel(*args)))

    def clear(self) -> None:
        """Close the pair and head panels."""
        with self.hold_sync():
            self.selected_pair, self.pair_result = [], {}
            self.selected_head, self.head_result = [], {}

    # ------------------------------------------------------------------ request handlers
    def _req_run(self, prompt: str) -> dict:
        return {"n_tokens": len(self._run(prompt))}

    def _req_pair(self, src_layer: int, src_head: int, dst_layer: int, dst_head: int) -> dict:
        return self._pair(src_layer, src_head, dst_layer, dst_head)

    def _req_head(self, layer: int, head: int) -> dict:
        return self._head_panel(layer, head)

    def _req_clear(self) -> dict:
        self.clear()
        return {}

    # ------------------------------------------------------------------ work
    def _head(self, x: Any) -> tuple[int, int]:
        if isinstance(x, str):
            m = _LABEL.match(x)
            if m is None:
                raise InputError(f"A head is 'L{{layer}}H{{head}}' or (layer, head), got {x!r}.")
            return self.lens.check_head(int(m.group(1)), int(m.group(2)))
        if isinstance(x, (tuple, list)) and len(x) == 2:
            return self.lens.check_head(*x)
        raise InputError(f"A head is 'L{{layer}}H{{head}}' or (layer, head), got {x!r}.")

    def _show_kind(self) -> None:
        comp = self.composition[self.kind]
        n = len(comp.labels)
        self.comp, self.comp_meta = encode_tensor(comp.scores.reshape(n, n), "f32")

    def _run(self, prompt: str) -> list[str]:
        tokens = self.lens.tokenize(prompt)
        self._tokens = tokens
        self._patterns = attention_patterns(self.lens.model, tokens, self.lens.run(tokens).cache)
        with self.hold_sync():
            self.prompt = prompt
            self.tokens = self.lens.str_tokens(tokens)
            for sel, redo in ((self.selected_pair, self._pair), (self.selected_head, self._head_panel)):
                if sel:
                    try:
                        redo(*sel)
                    except LensError:  # pragma: no cover - a selection valid before stays valid
                        pass
        return list(self.tokens)

    def _pair(self, sl: Any, sh: Any, dl: Any, dh: Any) -> dict:
        sl, sh = self.lens.check_head(sl, sh)
        dl, dh = self.lens.check_head(dl, dh)
        if sl >= dl:
            raise InputError(
                f"Composition goes from an earlier layer to a later one: {head_label(sl, sh)} is in layer "
                f"{sl}, {head_label(dl, dh)} in layer {dl}. Pick a source head in an earlier layer."
            )
        comp = self.composition[self.kind]
        scores = {k: float(c.scores[sl, sh, dl, dh]) for k, c in self.composition.items()}
        std = max(comp.baseline_std, 1e-12)
        result = {
            "kind": self.kind,
            "src": head_label(sl, sh),
            "dst": head_label(dl, dh),
            "index": [sl, sh, dl, dh],
            "score": scores[self.kind],
            "scores": scores,
            "baseline_mean": comp.baseline_mean,
            "baseline_std": comp.baseline_std,
            "z": {k: (v - comp.baseline_mean) / std for k, v in scores.items()},
            "tokens": list(self.tokens),
            "hooks": [act_name("pattern", sl), act_name("pattern", dl)],
            "src_pattern": encode_tensor(self._patterns[sl, sh], "f32")[0],
            "dst_pattern": encode_tensor(self._patterns[dl, dh], "f32")[0],
            "shape": list(self._patterns.shape[-2:]),
        }
        with self.hold_sync():
            self.selected_pair = [sl, sh, dl, dh]
            self.pair_result = result
        return result

    def _head_panel(self, layer: Any, head: Any) -> dict:
        layer, head = self.lens.check_head(layer, head)
        model, tokens = self.lens.model, self._tokens
        assert tokens is not None
        distinct = list(dict.fromkeys(int(t) for t in tokens[0].tolist()))
        ov = ov_circuit(model, layer, head, distinct, k=self.k)
        qk = qk_circuit(model, layer, head, tokens[0])
        label = head_label(layer, head)
        result = {
            "layer": layer,
            "head": head,
            "label": label,
            "copying": float(self.copying_scores[layer, head]),
            "ov": ov.to_json(model),
            "qk": encode_tensor(qk, "f32")[0],
            "qk_shape": list(qk.shape),
            "tokens": list(self.tokens),
            "promoted": _promoted(model, tokens, label, self.k),
        }
        with self.hold_sync():
            self.selected_head = [layer, head]
            self.head_result = result
        self.lens.select(label, self.prompt, source=self)
        return result


def _kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind.lower() not in KINDS:
        raise InputError(f"Unknown composition kind {kind!r}: use 'q', 'k' or 'v'.")
    return kind.lower()


def _promoted(model: Any, tokens: torch.Tensor, label: str, k: int) -> dict:
    """The head's output at the last position read through the unembedding
    (:func:`lenswidget.analysis.promoted_tokens`): ``{pos, promoted, suppressed}``."""
    from ..analysis.promoted import promoted_tokens

    p = promoted_tokens(model, tokens, label, pos=-1, k=k)
    row = lambda items: [{"token": t, "id": i, "value": v} for t, i, v in items]
    return {"pos": int(p.pos), "promoted": row(p.promoted), "suppressed": row(p.suppressed)}
