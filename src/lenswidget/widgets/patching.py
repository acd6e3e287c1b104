"""`PatchingHeatmap`: activation patching, interactively.

Mirrors ``js/patching.ts``; traits and requests are in docs/protocol.md. The attribution-patching
preview is computed when the inputs are set; the exact sweep (batched, equal to
``transformer_lens.patching``) streams in per site, in a background thread when started from the
view, and can be cancelled. A click on a cell reruns the model with exactly that patch.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Callable

import torch
import traitlets

from ..analysis.attribution import attribution_patching
from ..analysis.hooks import act_name, head_label
from ..analysis.metrics import logit_diff_metric, normalized_metric
from ..analysis._patching_sites import n_heads_for
from ..analysis.patching import SITES, PatchResult, patch_one, patch_sweep, require_site_hooks
from ..analysis.text import top_tokens
from ..encode import encode_tensor
from ..errors import InputError, LensError
from ..session import Lens
from .base import LensWidget, Progress, Request, bundle

#: shown by default, where the model has them
DEFAULT_SITES = ("resid_pre", "attn_out", "mlp_out", "attn_head_out_all_pos")
METRICS = ("logit_diff", "normalized")
DIRECTIONS = ("denoise", "noise")


class PatchingHeatmap(LensWidget):
    """Activation patching of a clean/corrupted prompt pair, with a click-to-patch heatmap.

    Made by ``lens.patching(clean, corrupted, answer, wrong)``. The metric is the logit difference
    ``logit(answer) - logit(wrong)`` at the last position (``metric="normalized"`` rescales it so
    0 = corrupted run, 1 = clean run). Every click is a method here: :meth:`set_inputs`,
    :meth:`set_sites`, :meth:`sweep`, :meth:`patch` (returns the dict the view draws), :meth:`cancel`.

    Args:
        sweep: start the exact sweep in the background right away (default ``False``); the
            attribution preview shows first either way.
    """

    _BUNDLE = "patching.js"
    _esm = bundle("patching.js")

    clean_prompt = traitlets.Unicode("").tag(sync=True)
    corrupted_prompt = traitlets.Unicode("").tag(sync=True)
    answer = traitlets.Unicode("").tag(sync=True)
    wrong = traitlets.Unicode("").tag(sync=True)
    clean_tokens = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    corrupted_tokens = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    n_layers = traitlets.Int(0).tag(sync=True)
    n_heads = traitlets.Int(0).tag(sync=True)
    sites = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    available_sites = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    direction = traitlets.Enum(list(DIRECTIONS), default_value="denoise").tag(sync=True)
    metric = traitlets.Enum(list(METRICS), default_value="logit_diff").tag(sync=True)
    clean_value = traitlets.Float(0.0).tag(sync=True)
    corrupted_value = traitlets.Float(0.0).tag(sync=True)
    attribution = traitlets.Dict({}).tag(sync=True)
    exact = traitlets.Dict({}).tag(sync=True)
    sweep_state = traitlets.Enum(["idle", "running", "done", "partial"], default_value="idle").tag(sync=True)
    sweep_progress = traitlets.Dict({}).tag(sync=True)
    selected = traitlets.Dict({}).tag(sync=True)
    cell_result = traitlets.Dict({}).tag(sync=True)

    REQUESTS = {
        "set_inputs": Request("set_inputs", {"clean": str, "corrupted": str, "answer": str, "wrong": str}),
        "set_sites": Request("set_sites", {"sites": list}),
        "sweep": Request("sweep", {"sites": (list, None)}, background=True),
        "patch": Request("patch", {"site": str, "index": list}),
        "cancel_sweep": Request("cancel_sweep", {}, exclusive=False),
    }

    def __init__(
        self,
        lens: Lens,
        clean: str,
        corrupted: str,
        answer: str,
        wrong: str,
        *,
        sites: list[str] | None = None,
        sweep: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(lens, **kwargs)
        self.exact_results: dict[str, PatchResult] = {}
        self.attribution_results: dict[str, PatchResult] = {}
        self._clean: torch.Tensor | None = None
        self._corrupted: torch.Tensor | None = None
        self._answer_id = self._wrong_id = -1
        self._cancel = threading.Event()
        self._reverting = False
        self.n_layers, self.n_heads = lens.n_layers, lens.n_heads
        self.available_sites = self._available_sites()
        chosen = list(sites) if sites is not None else [s for s in DEFAULT_SITES if s in self.available_sites]
        self.sites = self._check_sites(chosen)
        self.set_inputs(clean, corrupted, answer, wrong)
        self.observe(self._on_setting, names=["direction", "metric"])
        if sweep:
            self._start_job("auto-sweep", "sweep", self._req_sweep, {"sites": None})

    # ------------------------------------------------------------------ public API
    def set_inputs(self, clean: str, corrupted: str, answer: str, wrong: str) -> tuple[float, float]:
        """Set the prompt pair and answers; compute the metric on both runs and the attribution
        preview. Returns ``(clean_value, corrupted_value)``. Raises :class:`InputError` (shown in
        the view too) for prompts of different token counts, answers that are not one token, or
        identical prompts."""
        return self._python_call(lambda: self._exclusive("set_inputs", lambda: self._set_inputs(clean, corrupted, answer, wrong)))

    def set_sites(self, sites: list[str]) -> None:
        """Choose the sites shown (suffixes of ``transformer_lens.patching.get_act_patch_*``)."""
        self._python_call(lambda: self._exclusive("set_sites", lambda: self._set_sites(sites)))

    def sweep(self, sites: list[str] | None = None, *, progress: Callable[[int, int, str], Any] | None = None) -> dict[str, PatchResult]:
        """Run the exact sweep for ``sites`` (default: the sites shown), blocking; returns
        ``{site: PatchResult}``. :meth:`cancel` from another thread stops it (partial results)."""

        def body() -> dict[str, PatchResult]:
            return self._exclusive("sweep", lambda: self._sweep(sites, progress, self._cancel.is_set, cancellable=False))

        return self._python_call(body)

    def patch(self, site: str, index: list[int] | tuple[int, ...]) -> dict:
        """Rerun the model with exactly one patch (cell ``index`` of ``site``); returns the cell
        result the view draws (metric after the patch, top predictions before/after, and for a
        head its attention pattern on both prompts)."""
        return self._python_call(lambda: self._exclusive("patch", lambda: self._patch(site, index)))

    def cancel(self) -> None:
        """Stop a running sweep after its current batch; what was done stays, marked partial."""
        self._cancel.set()
        for job in list(self._jobs.values()):
            job.cancelled.set()

    # ------------------------------------------------------------------ request handlers
    def _req_set_inputs(self, clean: str, corrupted: str, answer: str, wrong: str) -> dict:
        clean_value, corrupted_value = self._set_inputs(clean, corrupted, answer, wrong)
        return {"clean_value": clean_value, "corrupted_value": corrupted_value}

    def _req_set_sites(self, sites: list) -> dict:
        self._set_sites(sites)
        return {}

    def _req_sweep(self, sites: list | None, progress: Progress) -> dict:
        results = self._sweep(sites, progress, progress.cancel_requested)
        return {"partial": any(r.partial for r in results.values())}

    def _req_patch(self, site: str, index: list) -> dict:
        return self._patch(site, index)

    def _req_cancel_sweep(self) -> dict:
        self.cancel()
        return {"cancelled": self.sweep_state == "running"}

    # ------------------------------------------------------------------ work
    def _available_sites(self) -> list[str]:
        out = []
        for name, site in SITES.items():
            if site.is_composite:
                continue
            try:
                require_site_hooks(self.lens.model, site)
            except InputError:
                continue
            out.append(name)
        return out

    def _check_sites(self, sites: Any) -> list[str]:
        if not isinstance(sites, (list, tuple)) or not all(isinstance(s, str) for s in sites):
            raise InputError(f"Sites must be a list of site names, got {sites!r:.80}.")
        unknown = [s for s in sites if s not in self.available_sites]
        if unknown:
            raise InputError(
                f"Unknown or unsupported site(s) {unknown} for this model. Available: {self.available_sites}.",
                details={"available": self.available_sites},
            )
        if not sites:
            raise InputError("Choose at least one site to patch.")
        return list(dict.fromkeys(sites))

    def _metric(self) -> Callable[[torch.Tensor], torch.Tensor]:
        base = logit_diff_metric([self._answer_id], [self._wrong_id])
        if self.metric == "normalized":
            return normalized_metric(base, self._raw_clean, self._raw_corrupted)
        return base

    def _set_inputs(self, clean: str, corrupted: str, answer: str, wrong: str) -> tuple[float, float]:
        lens = self.lens
        clean_t = lens.tokenize(clean, what="clean prompt")
        corrupted_t = lens.tokenize(corrupted, what="corrupted prompt")
        clean_s, corrupted_s = lens.str_tokens(clean_t), lens.str_tokens(corrupted_t)
        if clean_t.shape != corrupted_t.shape:
            raise InputError(
                f"The clean prompt is {clean_t.shape[1]} tokens and the corrupted prompt {corrupted_t.shape[1]}: "
                "patching needs the same number of tokens, position by position. Clean: "
                f"{clean_s!r}; corrupted: {corrupted_s!r}.",
                details={"clean_tokens": clean_s, "corrupted_tokens": corrupted_s},
            )
        if torch.equal(clean_t, corrupted_t):
            raise InputError(
                "The clean and corrupted prompts are identical: patching one into the other changes nothing "
                "and the metric has no range. Change a word in the corrupted prompt."
            )
        answer_id = lens.token_id(answer, what="answer")
        wrong_id = lens.token_id(wrong, what="wrong answer")
        if answer_id == wrong_id:
            raise InputError("The answer and the wrong answer are the same token: their logit difference is always 0.")
        base = logit_diff_metric([answer_id], [wrong_id])
        with torch.inference_mode():
            raw_clean = float(base(lens.run(clean_t).logits))
            raw_corrupted = float(base(lens.run(corrupted_t).logits))
        metric = normalized_metric(base, raw_clean, raw_corrupted) if self.metric == "normalized" else base
        with torch.inference_mode():
            clean_value = float(metric(lens.run(clean_t).logits))
            corrupted_value = float(metric(lens.run(corrupted_t).logits))
        results, attribution = self._attribution(self.sites, clean_t, corrupted_t, metric, self.direction)
        # everything computed: commit at once (a failure above leaves the old inputs in place)
        self._clean, self._corrupted = clean_t, corrupted_t
        self._answer_id, self._wrong_id = answer_id, wrong_id
        self._raw_clean, self._raw_corrupted = raw_clean, raw_corrupted
        self.exact_results = {}
        self.attribution_results = results
        with self.hold_sync():
            self.clean_prompt, self.corrupted_prompt = clean, corrupted
            self.answer, self.wrong = answer, wrong
            self.clean_tokens, self.corrupted_tokens = clean_s, corrupted_s
            self.clean_value, self.corrupted_value = clean_value, corrupted_value
            self.attribution = attribution
            self.exact = {}
            self.sweep_state = "idle"
            self.sweep_progress = {}
            self.selected = {}
            self.cell_result = {}
        return clean_value, corrupted_value

    def _attribution(
        self, sites: list[str], clean: torch.Tensor, corrupted: torch.Tensor, metric: Any, direction: str
    ) -> tuple[dict[str, PatchResult], dict]:
        """Attribution-patching previews of ``sites``: ``({site: PatchResult}, {site: entry})``."""
        results = {
            site: attribution_patching(self.lens.model, clean, corrupted, metric, site=site, direction=direction)
            for site in sites
        }
        return results, {site: _entry(r) for site, r in results.items()}

    def _set_sites(self, sites: list) -> None:
        sites = self._check_sites(sites)
        new = [s for s in sites if s not in self.attribution_results]
        results, entries = self._attribution(new, self._clean, self._corrupted, self._metric(), self.direction)
        self.attribution_results.update(results)
        attribution = dict(self.attribution)
        attribution.update(entries)
        with self.hold_sync():
            self.attribution = attribution
            self.sites = sites

    def _on_setting(self, change: dict) -> None:
        """Direction or metric changed (from the view or Python): recompute the preview, drop the
        exact results. Refused while the model is busy (e.g. a sweep): the setting goes back."""
        if self._reverting:
            return
        try:
            with self.lens.computation("PatchingHeatmap.settings", wait=False):
                metric = self._metric()
                with torch.inference_mode():
                    clean_value = float(metric(self.lens.run(self._clean).logits))
                    corrupted_value = float(metric(self.lens.run(self._corrupted).logits))
                results, attribution = self._attribution(
                    self.sites, self._clean, self._corrupted, metric, self.direction
                )
                self.attribution_results = results
                self.exact_results = {}
                with self.hold_sync():
                    self.clean_value, self.corrupted_value = clean_value, corrupted_value
                    self.attribution = attribution
                    self.exact = {}
                    self.sweep_state = "idle"
                    self.cell_result = {}
                    self.selected = {}
                self.error = {}
        except Exception as err:  # noqa: BLE001 - a trait change from the view must never raise
            self._reverting = True
            try:
                setattr(self, change["name"], change["old"])
            finally:
                self._reverting = False
            lens_err = err if isinstance(err, LensError) else LensError(f"{type(err).__name__}: {err}")
            self.error = lens_err.to_json()

    def _sweep(
        self, sites: Any, progress: Callable[..., Any] | None, cancel: Callable[[], bool], *, cancellable: bool = True
    ) -> dict[str, PatchResult]:
        """The exact sweep. ``cancellable=False`` when the kernel runs it in the foreground (a
        blocking ``sweep()``): the view cannot reach it then, so it hides its Cancel button."""
        sites = self.sites if sites is None else self._check_sites(sites)
        self._cancel.clear()
        metric, direction = self._metric(), self.direction  # fixed for the whole sweep
        self.sweep_state = "running"
        results: dict[str, PatchResult] = {}
        exact = dict(self.exact)
        failed = True
        try:
            for i, site in enumerate(sites):
                def report(done: int, total: int, _site: str = site, _i: int = i) -> None:
                    self.sweep_progress = {"site": _site, "done": int(done), "total": int(total),
                                           "site_index": _i, "n_sites": len(sites), "cancellable": cancellable}
                    if progress is not None:
                        progress(done, total, _site)

                result = patch_sweep(
                    self.lens.model, self._clean, self._corrupted, metric, site=site,
                    direction=direction, progress=report, cancel=cancel,
                )
                results[site] = result
                self.exact_results[site] = result
                exact[site] = _entry(result)
                self.exact = dict(exact)
                if result.partial:
                    break
            failed = False
        finally:
            partial = any(r.partial for r in results.values()) or len(results) < len(sites)
            self.sweep_state = "idle" if failed and not results else ("partial" if partial else "done")
            self.sweep_progress = {}
        return results

    def _patch(self, site: Any, index: Any) -> dict:
        if site not in self.available_sites:
            raise InputError(f"Unknown site {site!r}. Available: {self.available_sites}.")
        if not isinstance(index, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in index):
            raise InputError(f"A cell index is a list of integers, got {index!r:.80}.")
        model = self.lens.model
        metric = self._metric()
        one = patch_one(model, self._clean, self._corrupted, metric, site, list(index), direction=self.direction)
        baseline = self._corrupted if self.direction == "denoise" else self._clean
        with torch.inference_mode():
            before = self.lens.run(baseline).logits
        result_for_labels = self.exact_results.get(site) or self.attribution_results.get(site)
        dims = SITES[site].dims
        cell = {
            "site": site,
            "index": [int(i) for i in one.index],
            "label": result_for_labels.cell_label(one.index) if result_for_labels else one.hook,
            "hook": one.hook,
            "value": float(one.value),
            "clean_value": float(self.clean_value),
            "corrupted_value": float(self.corrupted_value),
            "exact": _value_at(self.exact_results.get(site), one.index),
            "attribution": _value_at(self.attribution_results.get(site), one.index),
            "top_before": top_tokens(model, before[0, -1]),
            "top_after": top_tokens(model, one.logits[0, -1]),
        }
        if "head" in dims and n_heads_for(model, SITES[site].act) == self.lens.n_heads:
            layer, head = int(one.index[dims.index("layer")]), int(one.index[dims.index("head")])
            pats = []
            for tokens in (self._clean, self._corrupted):
                pattern = self.lens.run(tokens).cache[act_name("pattern", layer)][0, head]
                pats.append(encode_tensor(pattern, "f32")[0])
            cell["head"] = {
                "layer": layer, "head": head, "label": head_label(layer, head), "tokens": list(self.clean_tokens),
                "clean_pattern": pats[0], "corrupted_pattern": pats[1], "shape": [len(self.clean_tokens)] * 2,
            }
        with self.hold_sync():
            self.selected = {"site": site, "index": cell["index"]}
            self.cell_result = cell
        return cell


def _entry(result: PatchResult) -> dict:
    """One site's result map entry (docs/protocol.md): float32 values plus what labels them."""
    data, _meta = encode_tensor(result.values, "f32")
    done = int(result.done_mask.sum()) if result.done_mask is not None else result.values.numel()
    entry = {
        "data": data, "shape": list(result.values.shape), "dims": list(result.dims), "hook": result.hook,
        "partial": bool(result.partial), "done": done, "total": int(result.values.numel()), "method": result.method,
    }
    if result.head_labels and "head" in result.dims:
        # "H{h}", or "KV{g}" for the key/value groups of a grouped-query model's k/v sites
        entry["labels"] = {"head": [re.sub(r"^L\d+", "", label) for label in result.head_labels[0]]}
    return entry


def _value_at(result: PatchResult | None, index: tuple[int, ...]) -> float | None:
    if result is None:
        return None
    value = float(result.values[tuple(index)])
    return None if value != value else value
