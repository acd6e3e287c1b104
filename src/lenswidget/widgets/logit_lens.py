"""`LogitLensTable`: what each layer predicts at each position, which components wrote it, and
what changes when one of them is ablated.

Mirrors ``js/logit_lens.ts``; traits and requests are in docs/protocol.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import traitlets

from ..analysis.ablation import MODES as ABLATION_MODES
from ..analysis.ablation import component_ablation_hooks
from ..analysis.dla import DLAResult, direct_logit_attribution
from ..analysis.readout import LogitLensResult, logit_lens
from ..analysis.text import str_tokens
from ..encode import encode_tensor
from ..errors import InputError
from ..selection import Selection
if TYPE_CHECKING:  # widgets check the lens through base.LensLike: no import circle with session.py
    from ..session import Lens
from ._resample import resample_tokens
from .base import LensWidget, Request, bundle

MODES = ("top", "target_prob", "target_rank")


class LogitLensTable(LensWidget):
    """The logit lens of a prompt as a layers x positions table, live.

    Made by ``lens.logit_lens(prompt)``. Rows are the residual stream entering each layer
    (``blocks.{l}.hook_resid_pre``, labelled ``L{l}``) and the final one (``final``), read through the
    final norm and the unembedding. Every click is a method here: :meth:`run`, :meth:`set_target`,
    :meth:`select` (top-k + direct logit attribution of one cell; returns the dict the view draws),
    :meth:`ablate` (rerun without a head or MLP; the table shows which cells changed), :meth:`undo`.

    Args:
        k: how many top tokens each cell sends to the view (hover); the detail panel shows
            ``detail_k``.
        target: the target token (text, one token); default: the model's final prediction at the
            last position.
    """

    _BUNDLE = "logit_lens.js"
    _esm = bundle("logit_lens.js")

    prompt = traitlets.Unicode("").tag(sync=True)
    tokens = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    row_labels = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    row_hooks = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    k = traitlets.Int(5).tag(sync=True)
    top_ids = traitlets.Bytes(b"").tag(sync=True)
    top_probs = traitlets.Bytes(b"").tag(sync=True)
    top_meta = traitlets.Dict({}).tag(sync=True)
    vocab = traitlets.Dict({}).tag(sync=True)
    target = traitlets.Int(-1).tag(sync=True)
    target_text = traitlets.Unicode("").tag(sync=True)
    target_stats = traitlets.Dict({}).tag(sync=True)
    mode = traitlets.Enum(list(MODES), default_value="top").tag(sync=True)
    selected = traitlets.List(traitlets.Int(), []).tag(sync=True)
    cell_detail = traitlets.Dict({}).tag(sync=True)
    ablated = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    #: how :meth:`ablate` removes components: "zero", "mean" (over the prompt's positions) or
    #: "resample" (their value on ``resample_prompts[0]``, a prompt of the same token length)
    ablation_mode = traitlets.Enum(list(ABLATION_MODES), default_value="zero").tag(sync=True)
    resample_prompts = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    #: the mode the components in ``ablated`` were ablated with ("" when none are)
    ablated_mode = traitlets.Unicode("").tag(sync=True)
    changed = traitlets.Bytes(b"").tag(sync=True)

    REQUESTS = {
        "run": Request("run", {"prompt": str}),
        "set_target": Request("set_target", {"target": (str, ""), "target_id": (int, None)}),
        "select": Request("select", {"row": int, "pos": int}),
        "ablate": Request("ablate", {"component": str, "mode": (str, None)}),
        "pick": Request("pick", {"component": str}, exclusive=False),
        "undo": Request("undo", {}),
    }

    @traitlets.validate("k")
    def _check_k(self, proposal: Any) -> int:
        if not 1 <= int(proposal["value"]) <= 50:
            raise traitlets.TraitError(f"k must be between 1 and 50, got {proposal['value']}.")
        return int(proposal["value"])

    def __init__(self, lens: Lens, prompt: str, *, target: str | None = None, detail_k: int = 10, **kwargs: Any) -> None:
        try:
            super().__init__(lens, **kwargs)
        except traitlets.TraitError as err:
            raise InputError(str(err)) from None
        self.detail_k = max(int(detail_k), self.k)
        self.result: LogitLensResult | None = None  # the table shown
        self.original: LogitLensResult | None = None  # before any ablation
        self._tokens: torch.Tensor | None = None
        self._cache: Any = None
        self._original_cache: Any = None
        self.run(prompt)
        if target is not None:
            self.set_target(target)

    # ------------------------------------------------------------------ public API
    def run(self, prompt: str) -> LogitLensResult:
        """Compute the logit lens of ``prompt`` (the target is kept if set, else the final
        prediction at the last position). Returns the :class:`LogitLensResult`."""
        return self._python_call(lambda: self._exclusive("run", lambda: self._run(prompt)))

    def set_target(self, target: str | int) -> int:
        """Set the target token (a string that is exactly one token, or an id); returns its id."""
        return self._python_call(lambda: self._exclusive("set_target", lambda: self._set_target(target)))

    def select(self, row: int, pos: int) -> dict:
        """The detail of cell (``row``, ``pos``): top-k, and the direct logit attribution of the
        target there, up to that row's layer, largest contributors first (the dict the view draws)."""
        return self._python_call(lambda: self._exclusive("select", lambda: self._select(row, pos)))

    def ablate(self, component: str, mode: str | None = None, sources: list[str] | None = None) -> LogitLensResult:
        """Rerun with ``component`` (``"L{l}H{h}"`` or ``"mlp{l}"``) ablated, together with those
        already ablated, all with ``mode`` (default ``ablation_mode``): ``"zero"``, ``"mean"``
        (the mean over this prompt's positions) or ``"resample"`` (the value on one source prompt
        of the same token length: ``sources[0]``, default ``resample_prompts``). The table shows
        the new predictions and ``changed`` marks cells whose top token changed."""
        return self._python_call(
            lambda: self._exclusive("ablate", lambda: self._ablate(component, mode, sources))
        )

    def pick(self, component: str) -> Selection | None:
        """Select ``component`` (a DLA contributor such as ``"L1H3"`` or ``"mlp2"``) for every
        widget of this lens, on this table's prompt: the attention grid then shows that head.
        Returns the lens's :class:`~lenswidget.selection.Selection`."""
        return self._python_call(lambda: self.lens.select(component, self.prompt, source=self))

    def undo(self) -> None:
        """Back to the original (unablated) table."""
        self._python_call(lambda: self._exclusive("undo", self._undo))

    def dla(self, row: int, pos: int) -> DLAResult:
        """The :class:`DLAResult` behind :meth:`select` for cell (``row``, ``pos``): the target's
        logit minus the mean logit at that cell (centred over the vocabulary, as TransformerLens's
        compatibility mode computes it, so components that raise every logit alike do not crowd
        the list), split into embeddings, heads and MLPs written before that row's layer."""
        row, pos = self._check_cell(row, pos)
        return direct_logit_attribution(
            self.lens.model, self._tokens, self.target, pos=pos, layer=row, cache=self._cache, center=True
        )

    # ------------------------------------------------------------------ request handlers
    def _req_run(self, prompt: str) -> dict:
        self._run(prompt)
        return {"n_tokens": len(self.tokens)}

    def _req_set_target(self, target: str, target_id: int | None) -> dict:
        tid = self._set_target(target if target_id is None else target_id)
        return {"target": tid, "target_text": self.target_text}

    def _req_select(self, row: int, pos: int) -> dict:
        return self._select(row, pos)

    def _req_ablate(self, component: str, mode: str | None) -> dict:
        self._ablate(component, mode, None)
        return {"changed_cells": int(np.frombuffer(self.changed, dtype=np.uint8).sum()) if self.changed else 0}

    def _req_pick(self, component: str) -> dict:
        sel = self.pick(component)
        return {"label": sel.label if sel else "", "prompt": self.prompt}

    def _req_undo(self) -> dict:
        self._undo()
        return {}

    # ------------------------------------------------------------------ work
    def _lens_of(self, cache: Any, target: int | None) -> LogitLensResult:
        return logit_lens(self.lens.model, self._tokens, k=self.detail_k, target=target, cache=cache)

    def _run(self, prompt: str) -> LogitLensResult:
        tokens = self.lens.tokenize(prompt)
        run = self.lens.run(tokens)
        self._tokens = tokens
        # the target: the one set, else the model's own prediction at the last position
        target = self.target if self.target >= 0 else int(run.logits[0, -1].argmax())
        result = logit_lens(self.lens.model, tokens, k=self.detail_k, target=target, cache=run.cache)
        self._cache = self._original_cache = run.cache
        self.result = self.original = result
        n = self.lens.n_layers
        with self.hold_sync():
            self.prompt = prompt
            self.tokens = self.lens.str_tokens(tokens)
            self.row_labels = [f"L{l}" for l in range(n)] + ["final"]
            self.row_hooks = list(result.hooks)
            self.target = target
            self.target_text = str_tokens(self.lens.model, [target])[0]
            self.ablated = []
            self.ablated_mode = ""
            self.changed = b""
            self.selected = []
            self.cell_detail = {}
            self._show(result)
        return result

    def _show(self, result: LogitLensResult) -> None:
        k = self.k
        ids = result.top_ids[..., :k].to(torch.int32).contiguous()
        probs = result.top_probs[..., :k]
        self.top_ids = ids.numpy().astype("<i4").tobytes()
        self.top_probs = encode_tensor(probs, "f16")[0]
        self.top_meta = {"shape": list(ids.shape)}
        unique = sorted(set(torch.unique(ids).tolist()) | {int(result.target)})
        self.vocab = dict(zip((str(i) for i in unique), str_tokens(self.lens.model, unique)))
        self.target_stats = {
            "prob": encode_tensor(result.target_prob, "f32")[0],
            "rank": encode_tensor(result.target_rank.float(), "f32")[0],
            "logit": encode_tensor(result.target_logit, "f32")[0],
            "shape": list(result.target_prob.shape),
        }

    def _set_target(self, target: str | int) -> int:
        tid = self.lens.token_id(target, what="target")
        assert self.result is not None and self.original is not None
        same = self.original is self.result
        self.original = self.original.with_target(tid)
        self.result = self.original if same else self.result.with_target(tid)
        with self.hold_sync():
            self.target = tid
            self.target_text = str_tokens(self.lens.model, [tid])[0]
            self._show(self.result)
            if self.selected:
                self._select(*self.selected)
        return tid

    def _check_cell(self, row: Any, pos: Any) -> tuple[int, int]:
        n_rows, n_pos = len(self.row_labels), len(self.tokens)
        for name, value, size in (("row", row, n_rows), ("position", pos, n_pos)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"The {name} must be an integer, got {value!r}.")
            if not 0 <= value < size:
                raise InputError(f"The {name} {value} is out of range: 0..{size - 1}.")
        return row, pos

    def _select(self, row: Any, pos: Any) -> dict:
        row, pos = self._check_cell(row, pos)
        result = self.result
        assert result is not None
        dla = self.dla(row, pos)
        order = dla.order()
        model = self.lens.model
        top_ids = result.top_ids[row, pos].tolist()
        top_text = str_tokens(model, top_ids)
        detail = {
            "row": row,
            "pos": pos,
            "row_label": self.row_labels[row],
            "hook": self.row_hooks[row],
            "token": self.tokens[pos],
            "top": [
                {"token": t, "id": int(i), "prob": float(p)}
                for t, i, p in zip(top_text, top_ids, result.top_probs[row, pos].tolist())
            ],
            "target": int(self.target),
            "target_text": self.target_text,
            "target_prob": float(result.target_prob[row, pos]),
            "target_rank": int(result.target_rank[row, pos]),
            "target_logit": float(result.target_logit[row, pos]),
            "dla": {
                "labels": [dla.labels[i] for i in order],
                "hooks": [dla.hooks[i] for i in order],
                "kinds": [dla.kinds[i] for i in order],
                "values": [float(dla.values[i]) for i in order],
                "logit": float(dla.logit),
                "quantity": "logit − mean logit" if dla.center else "logit",
                "remainder": float(dla.remainder),
                "unexplained": float(dla.unexplained),
            },
            "ablated": list(self.ablated),
        }
        with self.hold_sync():
            self.selected = [row, pos]
            self.cell_detail = detail
        return detail

    def _ablate(self, component: Any, mode: str | None, sources: Any) -> LogitLensResult:
        if not isinstance(component, str):
            raise InputError(f"Name the component to ablate as a string, got {component!r}.")
        mode = self.ablation_mode if mode is None else mode
        if mode not in ABLATION_MODES:
            raise InputError(f"Unknown ablation mode {mode!r}: use one of {list(ABLATION_MODES)}.")
        source_tokens = None
        if mode == "resample":
            prompts = self.resample_prompts if sources is None else sources
            source_tokens = resample_tokens(self.lens, prompts, self._tokens)
            if source_tokens.shape[0] != 1:
                raise InputError(
                    f"The logit-lens table shows one run: give one resample prompt, not {source_tokens.shape[0]} "
                    "(lenswidget.analysis.ablate_heads averages a head's resample ablation over several)."
                )
        components = list(self.ablated) + [component] if component not in self.ablated else list(self.ablated)
        hooks = component_ablation_hooks(
            self.lens.model, components, mode=mode, tokens=self._tokens, source_tokens=source_tokens
        )
        with torch.inference_mode(), self.lens.model.hooks(fwd_hooks=hooks):
            _, cache = self.lens.model.run_with_cache(self._tokens)
        result = self._lens_of(cache, self.target)
        assert self.original is not None
        changed = (result.top_ids[..., 0] != self.original.top_ids[..., 0]).to(torch.uint8)
        self._cache = cache
        self.result = result
        with self.hold_sync():
            self.ablated = components
            self.ablated_mode = mode
            self.changed = changed.numpy().tobytes()
            self._show(result)
            if self.selected:
                self._select(*self.selected)
        return result

    def _undo(self) -> None:
        assert self.original is not None
        self.result = self.original
        self._cache = self._original_cache
        with self.hold_sync():
            self.ablated = []
            self.ablated_mode = ""
            self.changed = b""
            self._show(self.original)
            if self.selected:
                self._select(*self.selected)
