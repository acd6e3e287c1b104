"""Activation patching: exact sweeps (:func:`patch_sweep`) and single cells (:func:`patch_one`).

Every site of ``transformer_lens.patching`` is here under the suffix of its function name
(``"resid_pre"`` for ``get_act_patch_resid_pre``, ``"attn_head_out_all_pos"``, ...; see
:data:`SITES`), with the same result shape and, on the same model, tokens and metric, the same
values. The default direction is TransformerLens's: clean activations patched into the corrupted
run ("denoising"); ``direction="noise"`` patches corrupted activations into the clean run.

What each residual-stream site patches (``L`` a layer; every site replaces the cell's slice of
one activation with the source run's, and every later computation reads the patched value):

=============  ==========================================  ====================================
site           lenswidget patches                          TransformerLens 4.x (bridge) patches
=============  ==========================================  ====================================
resid_pre      ``blocks.L.hook_resid_pre``: the block's    the same
               input, read by attention and the skip
resid_mid      the residual between attention and MLP,     ``blocks.L.hook_resid_mid``, which on
               read by the MLP **and** the skip path       the bridge is the MLP's input only:
               (``hook_attn_out`` set so ``resid_pre +     the skip path keeps the unpatched sum,
               attn_out`` is the wanted value; see         so its sweep equals ``mlp_out``'s
               ``_patching_sites.patch_hooks``)
resid_post     ``blocks.L.hook_resid_post``: the block's   the same
               output, read by block ``L+1`` (or the
               final norm)
attn_out       ``blocks.L.hook_attn_out``, added to the    the same
               residual (and read by the MLP)
mlp_out        ``blocks.L.hook_mlp_out``, added to the     the same
               residual
=============  ==========================================  ====================================

``resid_mid`` after the patch satisfies ``resid_post = resid_mid + mlp_out`` with the patched
``resid_mid``, as in ``HookedTransformer`` (``tests/test_patching_sites.py`` checks every row of
this table with hand-written hooks on GPT-2, Llama, Gemma, Pythia and the toy model). Parallel
attention + MLP blocks (Pythia, GPT-J: ``resid_post = resid_pre + attn_out + mlp_out``, both
sublayers reading ``resid_pre``) have no residual between attention and MLP: ``resid_mid`` is
refused there with an :class:`InputError`, as on attention-only models.

The sweep is batched (see ``_patching_engine``): many patched runs share one forward batch, a
run patched at layer ``L`` computes only blocks ``L`` and later, and a run patched at position
``p`` only positions ``p`` and later (with the unpatched run's keys and values before ``p``).
On SmolLM2 that is several times faster than TransformerLens's one-forward-per-cell loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import torch

from ..errors import InputError
from . import _patching_engine as _engine
from ._patching_sites import (
    SITES,
    Site,
    get_site,
    iter_cells,
    labels,
    n_heads_for,
    patch_hooks,
    region,
    value_shape,
)
from .hooks import act_name
from .text import str_tokens

__all__ = ["SITES", "PatchResult", "PatchOne", "Site", "patch_sweep", "patch_one"]

Direction = Literal["denoise", "noise"]
Metric = Callable[[torch.Tensor], Any]
TokensLike = Any  # torch.Tensor [batch, pos] or [pos], a str, or a list of str


@dataclass
class PatchResult:
    """The result of a patching sweep (exact or attribution).

    Attributes:
        values: the metric after patching each cell, float32 on the CPU, shaped like
            ``transformer_lens.patching.get_act_patch_{site}``'s result (see ``dims``).
            Cells a cancelled sweep did not reach are NaN.
        dims: the axis names of ``values``: ``("layer", "pos")``, ``("layer", "head")``,
            ``("layer", "pos", "head")``, ``("layer", "head", "dest_pos")``, ... Every axis whose
            name ends in ``pos`` is a token position (labelled by ``pos_labels``); ``"patch_type"``
            leads the ``*_every`` sites (labelled by ``patch_types``).
        site: the site name (a key of :data:`SITES`).
        hook: the TransformerLens hook name pattern, e.g. ``"blocks.{layer}.attn.hook_z"``
            (``" | "``-joined for the ``*_every`` sites).
        clean_value / corrupted_value: the metric on the unpatched clean / corrupted runs.
        direction: ``"denoise"`` (clean into corrupted, TransformerLens's) or ``"noise"``.
        method: ``"exact"`` (:func:`patch_sweep`) or ``"attribution"``.
        layer_labels: ``["L0", "L1", ...]``.
        pos_labels: the clean prompt's tokens as strings (first prompt of the batch), or None
            when the model has no tokenizer; ``corrupted_pos_labels`` likewise.
        head_labels: ``[layer][head]`` -> ``"L{l}H{h}"`` (``"L{l}KV{g}"`` for the key/value
            heads of a grouped-query model), or None when the site has no head axis.
        patch_types: for the ``*_every`` sites, the stacked sites in order (else empty).
        partial: True when the sweep was cancelled before every cell was run.
        done_mask: bool, shaped like ``values``: True where the cell was computed.
        stats: how the sweep ran (engine, batches, runs, tokens through the blocks, seconds;
            ``shared_prefix``: the leading positions every pair's prompts share, where runs
            start at the earliest; ``unchanged_cells``: cells patched only there, whose value is
            the base run's without a run; see ``_patching_engine``).
    """

    values: torch.Tensor
    dims: tuple[str, ...]
    site: str
    hook: str
    clean_value: float
    corrupted_value: float
    direction: str = "denoise"
    method: str = "exact"
    layer_labels: list[str] = field(default_factory=list)
    pos_labels: list[str] | None = None
    corrupted_pos_labels: list[str] | None = None
    head_labels: list[list[str]] | None = None
    patch_types: tuple[str, ...] = ()
    partial: bool = False
    done_mask: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def baseline_value(self) -> float:
        """The metric of the run being patched: corrupted for denoising, clean for noising."""
        return self.corrupted_value if self.direction == "denoise" else self.clean_value

    def normalized(self) -> torch.Tensor:
        """``(values - corrupted) / (clean - corrupted)``: 0 = the corrupted run's metric, 1 = the
        clean run's. Raises InputError when the two are equal (the metric has no range)."""
        span = self.clean_value - self.corrupted_value
        if span == 0 or span != span:
            raise InputError(
                "the metric has no range: the prompts give the same value "
                f"({self.clean_value:.4g} clean, {self.corrupted_value:.4g} corrupted)",
                details={"clean_value": self.clean_value, "corrupted_value": self.corrupted_value},
            )
        return (self.values - self.corrupted_value) / span

    def cell_hook(self, index: Sequence[int]) -> str:
        """The concrete hook name a cell patches, e.g. ``"blocks.3.attn.hook_z"``."""
        site = get_site(self.site)
        if site.is_composite:
            site = get_site(site.parts[int(index[0])])
            index = index[1:]
        return act_name(site.act, int(index[0]))

    def cell_label(self, index: Sequence[int]) -> str:
        """A short human label of a cell: hook, position token and head."""
        parts = [self.cell_hook(index)]
        dims = self.dims
        for d, i in zip(dims, index):
            if d.endswith("pos"):
                tok = self.pos_labels[int(i)] if self.pos_labels else None
                parts.append(f"{d} {int(i)}" + (f" {tok!r}" if tok is not None else ""))
            elif d == "head":
                parts.append(f"head {int(i)}")
        return ", ".join(parts)


@dataclass
class PatchOne:
    """One patched rerun (:func:`patch_one`).

    Attributes:
        value: the metric on the patched run (``float(result)`` gives it too).
        logits: ``[batch, pos, vocab]`` logits of the patched run.
        site / index / hook: which cell was patched, and the concrete hook name.
        direction: ``"denoise"`` or ``"noise"``.
    """

    value: float
    logits: torch.Tensor
    site: str
    index: tuple[int, ...]
    hook: str
    direction: str

    def __float__(self) -> float:
        return float(self.value)


# ------------------------------------------------------------------ input checks
def str_tokens_of(model: Any, tokens: torch.Tensor) -> list[str] | None:
    """The string form of one prompt's tokens, or None when the model has no tokenizer."""
    return None if getattr(model, "tokenizer", None) is None else str_tokens(model, tokens)


def as_tokens(model: Any, tokens: TokensLike, what: str) -> torch.Tensor:
    """``[batch, pos]`` int64 tokens on the model's device, from tokens or text."""
    if isinstance(tokens, str):
        tokens = [tokens]
    if isinstance(tokens, (list, tuple)) and tokens and all(isinstance(t, str) for t in tokens):
        rows = [model.to_tokens(t)[0] for t in tokens]
        lengths = {int(r.shape[0]) for r in rows}
        if len(lengths) != 1:
            raise InputError(
                f"the {what} prompts have different token counts ({sorted(lengths)}): every "
                "prompt of a batch needs the same length",
                details={"lengths": [int(r.shape[0]) for r in rows]},
            )
        tokens = torch.stack(rows)
    t = torch.as_tensor(tokens)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{what} tokens must be integer token ids, got dtype {t.dtype}")
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(
            f"{what} tokens must be shaped [batch, pos] (or [pos]), got {tuple(t.shape)}",
            details={"shape": list(t.shape)},
        )
    vocab = int(model.cfg.d_vocab)
    if int(t.min()) < 0 or int(t.max()) >= vocab:
        raise InputError(f"{what} tokens must lie in [0, {vocab}) (the model's vocabulary)")
    return t.long().to(model.cfg.device)


def check_inputs(
    model: Any, clean_tokens: TokensLike, corrupted_tokens: TokensLike, direction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the model and both prompt batches; returns ``(clean, corrupted)`` tensors."""
    if direction not in ("denoise", "noise"):
        raise InputError(
            f"direction must be 'denoise' (clean into corrupted) or 'noise' (corrupted into "
            f"clean), got {direction!r}"
        )
    if not hasattr(model, "run_with_cache") or not hasattr(model, "cfg"):
        raise InputError(
            f"patching needs a TransformerLens model (TransformerBridge), got {type(model).__name__}"
        )
    if any(m.training for m in model.modules()):
        raise InputError(
            "the model is in training mode (dropout would make patching random); call "
            "model.eval() first"
        )
    clean = as_tokens(model, clean_tokens, "clean")
    corrupted = as_tokens(model, corrupted_tokens, "corrupted")
    if clean.shape[1] != corrupted.shape[1]:
        ct, rt = str_tokens_of(model, clean[0]), str_tokens_of(model, corrupted[0])
        shown = ""
        if ct is not None and rt is not None:
            shown = f"; clean: {ct}; corrupted: {rt}"
        raise InputError(
            f"the clean and corrupted prompts have different token counts: clean has "
            f"{clean.shape[1]} tokens, corrupted has {corrupted.shape[1]}. Patching needs prompts "
            f"of the same length{shown}",
            details={
                "clean_length": int(clean.shape[1]),
                "corrupted_length": int(corrupted.shape[1]),
                "clean_tokens": ct,
                "corrupted_tokens": rt,
            },
        )
    if clean.shape[0] != corrupted.shape[0]:
        raise InputError(
            f"the clean and corrupted batches differ in size: {clean.shape[0]} clean prompts, "
            f"{corrupted.shape[0]} corrupted prompts; patching pairs them one to one",
            details={"clean_batch": int(clean.shape[0]), "corrupted_batch": int(corrupted.shape[0])},
        )
    return clean, corrupted


def require_site_hooks(model: Any, site: Site) -> None:
    """InputError when the model lacks the hook a site patches (e.g. ``mlp_out`` on an
    attention-only model, ``resid_mid`` on a parallel-attention model)."""
    hook_dict = model.hook_dict  # built on each access: read it once
    for layer in (0, int(model.cfg.n_layers) - 1):
        name = act_name(site.act, layer)
        if name not in hook_dict:
            why = ""
            if site.act in ("mlp_out", "resid_mid") and getattr(model.cfg, "attn_only", False):
                why = " (it is an attention-only model: it has no MLP layers)"
            elif site.act == "resid_mid" and getattr(model.cfg, "parallel_attn_mlp", False):
                why = " (its attention and MLP read the same residual in parallel)"
            elif site.act == "resid_mid":
                why = " (its blocks have no residual between attention and MLP)"
            raise InputError(
                f"site {site.name!r} patches {site.hook}, which this model does not have{why}",
                details={"site": site.name, "hook": name},
            )


def make_result(
    model: Any,
    site: Site,
    values: torch.Tensor,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    *,
    base_value: float,
    source_value: float,
    direction: str,
    method: str,
    partial: bool,
    done_mask: torch.Tensor,
    stats: dict,
) -> PatchResult:
    """A :class:`PatchResult` with its labels, from the metric on the run being patched
    (``base_value``) and on the run patched from (``source_value``)."""
    clean_value, corrupted_value = (
        (source_value, base_value) if direction == "denoise" else (base_value, source_value)
    )
    return PatchResult(
        values=values,
        dims=site.dims,
        site=site.name,
        hook=site.hook,
        clean_value=clean_value,
        corrupted_value=corrupted_value,
        direction=direction,
        method=method,
        corrupted_pos_labels=str_tokens_of(model, corrupted[0]),
        partial=partial,
        done_mask=done_mask,
        stats=stats,
        **labels(model, site, int(model.cfg.n_layers), str_tokens_of(model, clean[0])),
    )


def _base_source(direction: str, clean: torch.Tensor, corrupted: torch.Tensor):
    return (corrupted, clean) if direction == "denoise" else (clean, corrupted)


# ------------------------------------------------------------------ sweeps
def _simple_sweep(
    model: Any,
    site: Site,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    metric: Metric,
    direction: str,
    *,
    batch_size: int | None,
    progress: Callable[[int, int], Any] | None,
    cancel: Callable[[], bool] | None,
    progress_offset: int = 0,
    progress_total: int | None = None,
    engine: str = "auto",
) -> PatchResult:
    require_site_hooks(model, site)
    base, source = _base_source(direction, clean, corrupted)
    st = _engine.State(base_tokens=base, source_tokens=source)
    shape = value_shape(model, site, int(clean.shape[1]))
    values = torch.full(shape, float("nan"), dtype=torch.float32)
    done = torch.zeros(shape, dtype=torch.bool)
    cells = list(iter_cells(shape))
    stats, cancelled = _engine.sweep(
        model,
        site,
        st,
        metric,
        cells,
        values,
        done,
        batch_size=batch_size,
        progress=progress,
        cancel=cancel,
        progress_offset=progress_offset,
        progress_total=progress_total,
        engine=engine,
    )
    nan = float("nan")
    base_value = nan if st.base_logits is None else _engine.eval_metric(metric, st.base_logits)
    source_value = nan if st.source_logits is None else _engine.eval_metric(metric, st.source_logits)
    return make_result(
        model, site, values, clean, corrupted, base_value=base_value, source_value=source_value,
        direction=direction, method="exact", partial=bool(cancelled), done_mask=done, stats=stats.as_dict(),
    )


def stack_parts(model: Any, site: Site, parts: list[PatchResult], method: str) -> PatchResult:
    """Stack the parts of a ``*_every`` site as TransformerLens does: k/v head axes zero-padded
    to ``n_heads`` (grouped-query models), the by-position pattern moved to [layer, pos, head]."""
    n_heads = int(model.cfg.n_heads)
    vals, masks = [], []
    for part in parts:
        v, m = part.values, part.done_mask
        assert m is not None
        if part.dims == ("layer", "head", "dest_pos"):
            v, m = v.permute(0, 2, 1), m.permute(0, 2, 1)
        if "head" in site.dims and v.shape[-1] != n_heads:
            pad = n_heads - v.shape[-1]
            v = torch.nn.functional.pad(v, (0, pad))
            m = torch.cat([m, m[..., :1].expand(*m.shape[:-1], pad)], dim=-1)
        vals.append(v)
        masks.append(m)
    first = parts[0]
    stats = {"parts": [p.stats for p in parts]}
    for key in ("runs", "batches", "block_tokens", "unembed_tokens", "unchanged_cells", "seconds"):
        stats[key] = sum(p.stats.get(key, 0) for p in parts)
    stats["engine"] = ",".join(sorted({str(p.stats.get("engine", "")) for p in parts}))
    head_labels = None
    if "head" in site.dims:
        head_labels = labels(model, get_site("attn_head_out_all_pos"), int(model.cfg.n_layers), None)[
            "head_labels"
        ]
    return PatchResult(
        values=torch.stack(vals),
        dims=site.dims,
        site=site.name,
        hook=site.hook,
        clean_value=first.clean_value,
        corrupted_value=first.corrupted_value,
        direction=first.direction,
        method=method,
        layer_labels=first.layer_labels,
        pos_labels=first.pos_labels,
        corrupted_pos_labels=first.corrupted_pos_labels,
        head_labels=head_labels,
        patch_types=site.parts,
        partial=any(p.partial for p in parts),
        done_mask=torch.stack(masks),
        stats=stats,
    )


def patch_sweep(
    model: Any,
    clean_tokens: TokensLike,
    corrupted_tokens: TokensLike,
    metric: Metric,
    site: str = "resid_pre",
    *,
    direction: Direction = "denoise",
    batch_size: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    engine: str = "auto",
) -> PatchResult:
    """Patch every cell of ``site`` and return the metric of each patched run.

    Same values (to float precision) and shape as ``transformer_lens.patching.get_act_patch_{site}
    (model, corrupted_tokens, clean_cache, metric)`` for the default direction.

    Args:
        model: a ``TransformerBridge`` in eval mode.
        clean_tokens, corrupted_tokens: ``[batch, pos]`` token ids (or ``[pos]``, or text), the
            same shape: prompt ``i`` of one batch pairs with prompt ``i`` of the other.
        metric: maps the logits of one run of the whole prompt batch ``[batch, pos, vocab]`` to a
            scalar (see :mod:`lenswidget.analysis.metrics`); any callable works. A metric that
            reads only some positions may say so with a ``positions`` attribute (a tuple of ints,
            negative from the end, e.g. ``metric.positions = (-1,)``; the built-in metrics have
            it): the final norm and unembedding then run only there, and the logits it gets are
            NaN elsewhere. Without it every position is unembedded for every patched run.
        site: a key of :data:`SITES` (the suffix of a TransformerLens ``get_act_patch_*``).
        direction: ``"denoise"`` (default, TransformerLens's): clean activations into the
            corrupted run. ``"noise"``: corrupted activations into the clean run.
        batch_size: patched runs per forward batch; default: sized to the model and prompt so a
            batch holds ~3k tokens and fits the memory cap.
        progress: called as ``progress(done_cells, total_cells)`` after each batch.
        cancel: polled before each batch; when it returns True the sweep stops and **returns**
            (does not raise) the partial result: ``partial=True``, cells not run are NaN and
            ``done_mask`` is False there.
        engine: ``"auto"`` (block-by-block with a self-check, falling back to the model's
            forward), or ``"full"`` to force batched full forwards.

    Returns:
        :class:`PatchResult` (``.values`` shaped as TransformerLens's result, ``.dims``, labels,
        ``clean_value`` / ``corrupted_value`` of the metric).

    Raises:
        InputError: unknown site, a site the model has no hook for, prompts of different token
            counts or batch sizes, a model in training mode, a metric that does not return a
            scalar.
    """
    site_obj = get_site(site)
    clean, corrupted = check_inputs(model, clean_tokens, corrupted_tokens, direction)
    common = dict(batch_size=batch_size, cancel=cancel, engine=engine)
    if not site_obj.is_composite:
        return _simple_sweep(
            model, site_obj, clean, corrupted, metric, direction, progress=progress, **common
        )
    part_sites = [get_site(p) for p in site_obj.parts]
    for ps in part_sites:
        require_site_hooks(model, ps)
    n_pos = int(clean.shape[1])
    sizes = [int(torch.tensor(value_shape(model, ps, n_pos)).prod()) for ps in part_sites]
    total, offset = sum(sizes), 0
    parts: list[PatchResult] = []
    for ps, size in zip(part_sites, sizes):
        cancelled_before = bool(parts) and parts[-1].partial
        part = _simple_sweep(
            model,
            ps,
            clean,
            corrupted,
            metric,
            direction,
            progress=progress,
            progress_offset=offset,
            progress_total=total,
            **(common | {"cancel": (lambda: True) if cancelled_before else cancel}),
        )
        parts.append(part)
        offset += size
    return stack_parts(model, site_obj, parts, "exact")


# ------------------------------------------------------------------ one cell
def _check_index(model: Any, site: Site, index: Sequence[int], n_pos: int) -> tuple[int, ...]:
    shape = value_shape(model, site, n_pos)
    try:
        idx = tuple(int(i) for i in index)
    except (TypeError, ValueError):
        raise InputError(f"a cell index is a tuple of ints, got {index!r}") from None
    if len(idx) != len(shape) or any(not 0 <= i < n for i, n in zip(idx, shape)):
        raise InputError(
            f"cell {idx} is outside site {site.name!r}, whose values are shaped {shape} "
            f"({', '.join(site.dims)})",
            details={"index": list(idx), "shape": list(shape), "dims": list(site.dims)},
        )
    return idx


def patch_one(
    model: Any,
    clean_tokens: TokensLike,
    corrupted_tokens: TokensLike,
    metric: Metric,
    site: str,
    index: Sequence[int],
    *,
    direction: Direction = "denoise",
    source_cache: Mapping[str, torch.Tensor] | None = None,
) -> PatchOne:
    """Exactly one patched rerun: the cell ``index`` of ``site`` (its tuple in
    ``patch_sweep(...).values``), through the model's own forward with one hook, as
    TransformerLens runs it.

    ``source_cache`` (optional): activations of the run patched *from* (clean for denoising),
    keyed by hook name, e.g. an ``ActivationCache``; without it that run is made here.

    Returns:
        :class:`PatchOne` with ``value`` (the metric) and the patched ``logits``.
    """
    site_obj = get_site(site)
    clean, corrupted = check_inputs(model, clean_tokens, corrupted_tokens, direction)
    n_pos = int(clean.shape[1])
    idx = _check_index(model, site_obj, index, n_pos)
    cell_site, cell = site_obj, idx
    if site_obj.is_composite:
        cell_site = get_site(site_obj.parts[idx[0]])
        cell = idx[1:]
        if cell_site.dims == ("layer", "head", "dest_pos"):
            cell = (cell[0], cell[2], cell[1])
        if "head" in cell_site.dims:
            h = cell[cell_site.dims.index("head")]
            if h >= n_heads_for(model, cell_site.act):
                raise InputError(
                    f"cell {idx} is padding: this model has only "
                    f"{n_heads_for(model, cell_site.act)} key/value heads per layer"
                )
    require_site_hooks(model, cell_site)
    name = act_name(cell_site.act, cell[0])
    base, source = _base_source(direction, clean, corrupted)
    with torch.no_grad():
        src = None
        if source_cache is not None:
            try:
                src = source_cache[name]
            except (KeyError, TypeError):
                src = None
        if src is None:
            _, cache = model.run_with_cache(source, names_filter=[name])
            src = cache[name]
        where = (slice(None), *region(cell_site, cell))

        def patch(act: torch.Tensor) -> torch.Tensor:
            act = act.clone()
            act[where] = src[where].to(act.dtype)
            return act

        logits = model.run_with_hooks(base, fwd_hooks=patch_hooks(cell_site, cell[0], patch))
        value = _engine.eval_metric(metric, logits)
    return PatchOne(
        value=value,
        logits=logits.detach(),
        site=site_obj.name,
        index=idx,
        hook=name,
        direction=direction,
    )
