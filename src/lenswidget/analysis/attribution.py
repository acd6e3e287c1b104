"""Attribution patching: a first-order estimate of every cell of a patching sweep at once.

For a cell whose patch replaces the slice ``S`` of an activation ``a`` (``a_base`` on the run
being patched, ``a_source`` on the run patched from), the patched metric is estimated as

    metric(base) + sum over S and over the prompt batch of (a_source - a_base) * d metric / d a

with the gradient taken on the base run. Denoising (the default, as ``patch_sweep``): base =
corrupted, source = clean. It takes one forward pass of the source run and one forward and one
backward pass of the base run, whatever the site, so it previews a sweep instantly. It is exact
where the metric is linear in the activation (e.g. a last-layer write read by the unembedding
with no final LayerNorm) and an approximation elsewhere.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from ..errors import InputError
from ._patching_sites import _ACT_AXES, Site, get_site, grad_hook, labels, value_shape
from .hooks import act_name
from .patching import (
    Direction,
    Metric,
    PatchResult,
    TokensLike,
    _base_source,
    check_inputs,
    make_result,
    require_site_hooks,
    stack_parts,
    str_tokens_of,
)

__all__ = ["attribution_patching"]


def _scalar_metric(metric: Metric) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(logits: torch.Tensor) -> torch.Tensor:
        out = metric(logits)
        if not isinstance(out, torch.Tensor) or out.ndim != 0:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(
                "attribution patching needs a metric that returns a 0-d tensor computed from the "
                f"logits (differentiable); it returned {shape}"
            )
        if not out.requires_grad:
            raise InputError(
                "attribution patching needs a differentiable metric: its result does not depend on "
                "the logits through autograd (was it computed with .item(), numpy or no_grad?)"
            )
        return out

    return fn


def _reduce(site: Site, contrib: torch.Tensor) -> torch.Tensor:
    """Sum ``contrib`` [batch, *act] over the batch and every activation axis a cell of the site
    takes whole; the kept axes come out in the order of ``site.dims[1:]``."""
    axes = _ACT_AXES[site.act]
    keep = [a for a in axes if a is not None and a in site.dims]
    assert tuple(keep) == tuple(site.dims[1:]), (site.name, keep)
    drop = [0] + [i + 1 for i, a in enumerate(axes) if a is None or a not in site.dims]
    return contrib.sum(dim=drop)


def _simple(
    model: Any, site: Site, clean: torch.Tensor, corrupted: torch.Tensor, metric: Metric, direction: str
) -> PatchResult:
    from transformer_lens.tools.analysis.attribution_patching import cache_activation_and_gradient

    require_site_hooks(model, site)
    n_layers = int(model.cfg.n_layers)
    names = [act_name(site.act, l) for l in range(n_layers)]
    base, source = _base_source(direction, clean, corrupted)
    with torch.no_grad():
        source_logits, source_cache = model.run_with_cache(source, names_filter=names)
    source_value = float(torch.as_tensor(metric(source_logits)).detach().float())

    hooks = []
    if not any(p.requires_grad for p in model.parameters()):
        # frozen weights: make the residual entering block 0 a leaf that needs a gradient
        def leaf(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            return x.detach().requires_grad_(True)

        hooks.append((act_name("resid_pre", 0), leaf))
    # The hook point at the very start is asked for too: a backward that only has to reach the
    # reshaped views the bridge hands to hooks at hook_z / hook_q / ... stops before running
    # their backward hooks, and their gradients would come back empty.
    # resid_mid: the gradient at hook_attn_out is the residual stream's (MLP and skip path; the
    # bridge's hook_resid_mid only feeds the MLP), see _patching_sites.grad_hook
    grad_names = [grad_hook(site, l) for l in range(n_layers)]
    wanted = list(dict.fromkeys([act_name("resid_pre", 0), *names, *grad_names]))
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks), warnings.catch_warnings():
        # frozen weights: torch notes that module backward hooks fire on outputs only; expected
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        grads = cache_activation_and_gradient(model, base, _scalar_metric(metric), names_filter=wanted)
    base_value = float(grads.metric.float())

    shape = value_shape(model, site, int(clean.shape[1]))
    values = torch.empty(shape, dtype=torch.float32)
    for layer, name in enumerate(names):
        grad = grads.gradients.get(grad_names[layer])
        act = grads.activations[name]
        if grad is None:  # the metric does not depend on this activation
            grad = torch.zeros_like(act)
        delta = source_cache[name].to(act.dtype) - act
        values[layer] = base_value + _reduce(site, (delta * grad).float()).cpu()
    return make_result(
        model, site, values, clean, corrupted, base_value=base_value, source_value=source_value,
        direction=direction, method="attribution", partial=False, done_mask=torch.ones(shape, dtype=torch.bool),
        stats={"engine": "attribution", "runs": 0, "forward_passes": 2, "backward_passes": 1},
    )


def attribution_patching(
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
) -> PatchResult:
    """Estimate :func:`~lenswidget.analysis.patch_sweep`'s result by activation x gradient.

    Same arguments and result shape (``.values``, ``.dims``, labels, ``clean_value``,
    ``corrupted_value``) as ``patch_sweep``; ``result.method == "attribution"``. Each value is
    the estimated metric after patching that cell: ``baseline_value + sum((a_source - a_base) *
    grad)`` over the cell's slice and the prompt batch, the gradient of ``metric`` taken on the
    run being patched (the corrupted run when denoising).

    ``metric`` must be differentiable (return a 0-d tensor with a gradient). ``batch_size`` is
    accepted for symmetry and unused; ``progress`` is called as ``progress(0, 1)`` and
    ``progress(1, 1)``; ``cancel`` is polled once before the work (a cancelled call returns an
    all-NaN result with ``partial=True``). Costs two forward passes and one backward pass per
    site (per part for the ``*_every`` sites).

    Raises:
        InputError: as ``patch_sweep``, or for a metric without a gradient.
    """
    del batch_size
    site_obj = get_site(site)
    clean, corrupted = check_inputs(model, clean_tokens, corrupted_tokens, direction)
    parts = [get_site(p) for p in site_obj.parts] if site_obj.is_composite else [site_obj]
    for p in parts:
        require_site_hooks(model, p)
    if progress is not None:
        progress(0, 1)
    if cancel is not None and cancel():
        shape = value_shape(model, site_obj, int(clean.shape[1]))
        nan = float("nan")
        return PatchResult(
            values=torch.full(shape, nan),
            dims=site_obj.dims,
            site=site_obj.name,
            hook=site_obj.hook,
            clean_value=nan,
            corrupted_value=nan,
            direction=direction,
            method="attribution",
            partial=True,
            done_mask=torch.zeros(shape, dtype=torch.bool),
            patch_types=site_obj.parts,
            **labels(model, parts[0], int(model.cfg.n_layers), str_tokens_of(model, clean[0])),
        )
    results = [_simple(model, p, clean, corrupted, metric, direction) for p in parts]
    if progress is not None:
        progress(1, 1)
    if not site_obj.is_composite:
        return results[0]
    return stack_parts(model, site_obj, results, "attribution")
