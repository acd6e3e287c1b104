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

from typing import Any, Callable, Literal, Mapping, Sequence

import torch

from ..errors import InputError
from . import _patching_engine as _engine
from ._patching_sites import (
    SITES,
    Site,
    get_site,
    iter_cells,
    n_heads_for,
    patch_hooks,
    region,
    value_shape,
)
from ._patch_result import PatchOne, PatchResult, make_result, stack_parts  # noqa: F401
from ._patching_inputs import TokensLike, as_tokens, check_inputs, require_site_hooks, str_tokens_of  # noqa: F401
from .hooks import act_name

__all__ = ["SITES", "PatchResult", "PatchOne", "Site", "patch_sweep", "patch_one"]

Direction = Literal["denoise", "noise"]
Metric = Callable[[torch.Tensor], Any]


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
            NaN elsewhere. Without it every position is unembedded for every patched run. The
            logits tensor may be reused for the next run once the metric returns: a metric
            reads it and returns a value, it does not keep it.
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
