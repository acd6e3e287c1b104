"""`PatchingHeatmap`: activation patching, interactively.

Mirrors ``js/patching.ts``; traits and requests are in docs/protocol.md. The inputs are one
clean/corrupted prompt pair or a dataset of pairs (``widgets/_pairs.py``); the metric is the mean
over pairs of the logit difference, shown as recovery (0 = corrupted, 1 = clean) by default. The
attribution-patching preview is computed when the inputs are set; the exact sweep (batched, equal
to ``transformer_lens.patching``) streams in per site, in a background thread when started from
the view, and can be cancelled. A click on a cell (or on a row of a site's top components) reruns
the model with exactly that patch and shows each pair's value (the cell result is built in
``widgets/_patching_cell.py``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

import torch
import traitlets

from ..analysis.attribution import attribution_patching
from ..analysis.metrics import logit_diff_metric, normalized_metric
from ..analysis.patching import SITES, PatchResult, patch_one, patch_sweep, require_site_hooks
from ..errors import InputError, LensError
if TYPE_CHECKING:  # widgets check the lens through base.LensLike: no import circle with session.py
    from ..session import Lens
from ._pairs import PairTraits, PromptPairs, Texts, pair_rows, parse_pairs
from ._patching_cell import patched_cell
from ._patching_results import (
    convert,
    convert_cell,
    entry,
    metric_map,
    selection_label,
    top_rows,
)
from .base import LensWidget, Progress, Request, bundle, log

#: shown by default, where the model has them
DEFAULT_SITES = ("resid_pre", "attn_out", "mlp_out", "attn_head_out_all_pos")
METRICS = ("logit_diff", "normalized")
DIRECTIONS = ("denoise", "noise")


class PatchingHeatmap(PairTraits, LensWidget):
    """Activation patching of a clean/corrupted prompt pair, or a dataset of pairs, with a
    click-to-patch heatmap and each site's top components.

    Made by ``lens.patching(clean, corrupted, answer, wrong)``; ``clean`` and ``corrupted`` are one
    prompt each or lists of prompts (pair ``i`` = ``clean[i]``, ``corrupted[i]``), ``answer`` and
    ``wrong`` one token for all pairs or a list with one per pair. The metric is the mean over pairs
    of ``logit(answer) - logit(wrong)`` at the last position, shown as recovery
    (``metric="normalized"``, the default: 0 = corrupted run, 1 = clean run) or as the raw logit
    difference (``metric="logit_diff"``; switching converts the results, no rerun). Every click is
    a method here: :meth:`set_inputs`, :meth:`set_sites`, :meth:`sweep`, :meth:`patch` (returns
    the dict the view draws), :meth:`top` (a site's top components), :meth:`cancel`.

    Args:
        sweep: start the exact sweep in the background right away (default ``False``); the
            attribution preview shows first either way.
    """

    _BUNDLE = "patching.js"
    _esm = bundle("patching.js")

    sites = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    available_sites = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    direction = traitlets.Enum(list(DIRECTIONS), default_value="denoise").tag(sync=True)
    metric = traitlets.Enum(list(METRICS), default_value="normalized").tag(sync=True)
    clean_value = traitlets.Float(0.0).tag(sync=True)
    corrupted_value = traitlets.Float(0.0).tag(sync=True)
    clean_logit_diff = traitlets.Float(0.0).tag(sync=True)
    corrupted_logit_diff = traitlets.Float(0.0).tag(sync=True)
    pairs = traitlets.List(traitlets.Dict(), []).tag(sync=True)
    top_k = traitlets.Int(5).tag(sync=True)
    top_components = traitlets.Dict({}).tag(sync=True)
    attribution = traitlets.Dict({}).tag(sync=True)
    exact = traitlets.Dict({}).tag(sync=True)
    sweep_state = traitlets.Enum(["idle", "running", "done", "partial"], default_value="idle").tag(sync=True)
    sweep_progress = traitlets.Dict({}).tag(sync=True)
    selected = traitlets.Dict({}).tag(sync=True)
    cell_result = traitlets.Dict({}).tag(sync=True)

    REQUESTS = {
        "set_inputs": Request("set_inputs", {"clean": Texts, "corrupted": Texts, "answer": Texts, "wrong": Texts}),
        "set_sites": Request("set_sites", {"sites": list}),
        "sweep": Request("sweep", {"sites": (list, None)}, background=True),
        "patch": Request("patch", {"site": str, "index": list}),
        "cancel_sweep": Request("cancel_sweep", {}, exclusive=False),
    }

    def __init__(
        self,
        lens: Lens,
        clean: str | list[str],
        corrupted: str | list[str],
        answer: str | list[str],
        wrong: str | list[str],
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
        self._pairs: PromptPairs | None = None
        self._cancel = threading.Event()
        self._reverting = False
        self.n_layers, self.n_heads = lens.n_layers, lens.n_heads
        self.available_sites = self._available_sites()
        chosen = list(sites) if sites is not None else [s for s in DEFAULT_SITES if s in self.available_sites]
        self.sites = self._check_sites(chosen)
        self.set_inputs(clean, corrupted, answer, wrong)
        self.observe(self._on_setting, names=["direction", "metric"])
        self.observe(lambda _change: self._publish_top(), names=["top_k"])
        if sweep:
            self._start_job("auto-sweep", "sweep", self._req_sweep, {"sites": None})

    # ------------------------------------------------------------------ public API
    def set_inputs(
        self, clean: str | list[str], corrupted: str | list[str], answer: str | list[str], wrong: str | list[str]
    ) -> tuple[float, float]:
        """Set the prompt pair(s) and answers (see the class docstring); compute the metric on both
        runs and the attribution preview. Returns ``(clean_value, corrupted_value)``. Raises
        :class:`InputError` (shown in the view too) for lists of different lengths or an empty
        list, an answer list that does not match the pairs, a pair whose prompts tokenize to
        different lengths (both tokenizations shown), pairs of different lengths, answers that
        are not one token, or identical prompts."""
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
        result the view draws (metric after the patch, each pair's value in ``per_prompt``, top
        predictions before/after, and for a head its attention pattern on both prompts). A head,
        MLP or attention layer becomes the lens's selection (``lens.selection``)."""
        return self._python_call(lambda: self._exclusive("patch", lambda: self._patch(site, index)))

    def top(self, site: str, k: int = 5) -> list[dict]:
        """The ``k`` cells of ``site`` whose patch moves the metric most, largest effect first (the
        view's top-components list): ``[{"index", "label", "hook", "recovery", "logit_diff",
        "value", "source"}]``, ``label`` e.g. ``"L9H9"``, ``recovery`` 0 = corrupted, 1 = clean,
        ``source`` ``"exact"`` or ``"attribution"`` (cells the exact sweep has not reached). Click a
        row: :meth:`patch` with its ``index``."""
        return self._python_call(lambda: self._top(site, k))

    def cancel(self) -> None:
        """Stop a running sweep after its current batch; what was done stays, marked partial."""
        self._cancel.set()
        for job in list(self._jobs.values()):
            job.cancelled.set()

    # ------------------------------------------------------------------ request handlers
    def _req_set_inputs(self, clean: Any, corrupted: Any, answer: Any, wrong: Any) -> dict:
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

    def _metric(self, metric: str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The metric on the current pairs: the mean logit difference, or its recovery."""
        p = self._pairs
        assert p is not None
        base = logit_diff_metric(p.answer_ids, p.wrong_ids)
        if (metric or self.metric) == "normalized":
            return normalized_metric(base, self._raw_clean, self._raw_corrupted)
        return base

    def _set_inputs(self, clean: Any, corrupted: Any, answer: Any, wrong: Any) -> tuple[float, float]:
        lens = self.lens
        pairs = parse_pairs(lens, clean, corrupted, answer, wrong)
        clean_t, corrupted_t = pairs.clean_tokens, pairs.corrupted_tokens
        base = logit_diff_metric(pairs.answer_ids, pairs.wrong_ids)
        with torch.inference_mode():
            clean_logits, corrupted_logits = lens.run(clean_t).logits, lens.run(corrupted_t).logits
            clean_pp, corrupted_pp = base.per_prompt(clean_logits), base.per_prompt(corrupted_logits)
        raw_clean, raw_corrupted = float(clean_pp.mean()), float(corrupted_pp.mean())
        metric = normalized_metric(base, raw_clean, raw_corrupted) if self.metric == "normalized" else base
        with torch.inference_mode():
            clean_value, corrupted_value = float(metric(clean_logits)), float(metric(corrupted_logits))
        results, attribution = self._attribution(self.sites, clean_t, corrupted_t, metric, self.direction)
        # everything computed: commit at once (a failure above leaves the old inputs in place)
        self._pairs = pairs
        self._clean, self._corrupted = clean_t, corrupted_t
        self._raw_clean, self._raw_corrupted = raw_clean, raw_corrupted
        self.exact_results = {}
        self.attribution_results = results
        with self.hold_sync():
            self.clean_prompt, self.corrupted_prompt = pairs.box["clean"], pairs.box["corrupted"]
            self.answer, self.wrong = pairs.box["answer"], pairs.box["wrong"]
            self.clean_tokens, self.corrupted_tokens = pairs.clean_str[0], pairs.corrupted_str[0]
            self.pairs = pair_rows(pairs, clean_pp.tolist(), corrupted_pp.tolist())
            self.clean_value, self.corrupted_value = clean_value, corrupted_value
            self.clean_logit_diff, self.corrupted_logit_diff = raw_clean, raw_corrupted
            self.attribution = attribution
            self.exact = {}
            self.sweep_state = "idle"
            self.sweep_progress = {}
            self.selected = {}
            self.cell_result = {}
            self._publish_top()
        return clean_value, corrupted_value

    def _attribution(
        self, sites: list[str], clean: torch.Tensor, corrupted: torch.Tensor, metric: Any, direction: str
    ) -> tuple[dict[str, PatchResult], dict]:
        """Attribution-patching previews of ``sites``: ``({site: PatchResult}, {site: entry})``."""
        results = {
            site: attribution_patching(self.lens.model, clean, corrupted, metric, site=site, direction=direction)
            for site in sites
        }
        return results, {site: entry(r) for site, r in results.items()}

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
            self._publish_top()

    def _on_setting(self, change: dict) -> None:
        """Direction or metric changed (from the view or Python). A new direction recomputes the
        preview and drops the exact results; a new metric converts every result (recovery is an
        affine function of the logit difference: no rerun). Refused while the model is busy (e.g.
        a sweep): the setting goes back."""
        if self._reverting:
            return
        try:
            with self.lens.computation("PatchingHeatmap.settings", wait=False):
                if change["name"] == "metric":
                    self._convert_metric(change["new"])
                else:
                    self._new_direction()
                self.error = {}
        except Exception as err:  # noqa: BLE001 - a trait change from the view must never raise
            self._reverting = True
            try:
                setattr(self, change["name"], change["old"])
            finally:
                self._reverting = False
            lens_err = err if isinstance(err, LensError) else LensError(f"{type(err).__name__}: {err}")
            self.error = lens_err.to_json()

    def _new_direction(self) -> None:
        metric = self._metric()
        with torch.inference_mode():
            clean_value = float(metric(self.lens.run(self._clean).logits))
            corrupted_value = float(metric(self.lens.run(self._corrupted).logits))
        results, attribution = self._attribution(self.sites, self._clean, self._corrupted, metric, self.direction)
        self.attribution_results = results
        self.exact_results = {}
        with self.hold_sync():
            self.clean_value, self.corrupted_value = clean_value, corrupted_value
            self.attribution = attribution
            self.exact = {}
            self.sweep_state = "idle"
            self.cell_result = {}
            self.selected = {}
            self._publish_top()

    def _convert_metric(self, new: str) -> None:
        """Every value from the other metric into ``new`` (an affine map; no rerun)."""
        self._metric(new)  # raises "the metric has no range" before anything changes
        f = metric_map(new, self._raw_clean, self._raw_corrupted)
        self.exact_results = {s: convert(r, f) for s, r in self.exact_results.items()}
        self.attribution_results = {s: convert(r, f) for s, r in self.attribution_results.items()}
        with self.hold_sync():
            self.clean_value, self.corrupted_value = float(f(self.clean_value)), float(f(self.corrupted_value))
            self.exact = {s: entry(r) for s, r in self.exact_results.items()}
            self.attribution = {s: entry(r) for s, r in self.attribution_results.items()}
            self.cell_result = convert_cell(self.cell_result, f)
            self._publish_top()

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
                exact[site] = entry(result)
                self.exact = dict(exact)
                self._publish_top()
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
        result_for_labels = self.exact_results.get(site) or self.attribution_results.get(site)
        cell = patched_cell(self, site, one, result_for_labels)
        with self.hold_sync():
            self.selected = {"site": site, "index": cell["index"]}
            self.cell_result = cell
        self._select(site, one.index, result_for_labels)
        return cell

    def _select(self, site: str, index: tuple[int, ...], result: PatchResult | None) -> None:
        """A head, MLP or attention-layer cell becomes the lens's selection, picked on the first
        clean prompt; residual-stream cells select nothing."""
        label = selection_label(site, index, result)
        if label is None:
            return
        try:
            self.lens.select(label, self._pairs.clean[0] if self._pairs else None, source=self)
        except LensError as err:  # the view's cell result stands; say why nothing was selected
            log.warning("PatchingHeatmap: could not select %s: %s", label, err)

    def _top(self, site: Any, k: Any) -> list[dict]:
        if site not in self.available_sites:
            raise InputError(f"Unknown site {site!r}. Available: {self.available_sites}.")
        exact, attr = self.exact_results.get(site), self.attribution_results.get(site)
        if exact is None and attr is None:
            raise InputError(f"Site {site!r} is not shown, so it has no values: hm.set_sites([..., {site!r}]) first.")
        return top_rows(exact, attr, k, self._raw_clean, self._raw_corrupted)

    def _publish_top(self) -> None:
        """The ``top_components`` trait: :meth:`top` of every site shown, ``top_k`` rows each."""
        out = {}
        for site in self.sites:
            try:
                out[site] = self._top(site, int(self.top_k))
            except InputError:
                continue
        self.top_components = out

