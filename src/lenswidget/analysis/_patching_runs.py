"""The pieces of one patching sweep shared by the engine's two ways of running it
(``_patching_engine``): what a sweep knows (:class:`State`) and reports (:class:`Stats`), the
patch hooks, the batched full forward (:func:`_run_full`, which also captures what the
block-by-block runs start from), block inputs for a batch, and the metric's positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import InputError
from . import _position_start as ps
from ._patching_plan import groups
from ._patching_sites import Site, cell_mask, patch_hooks
from .hooks import act_name

Metric = Callable[[torch.Tensor], Any]


@dataclass
class Stats:
    engine: str = "fast"
    fallback_reason: str = ""
    runs: int = 0
    batches: int = 0
    block_tokens: int = 0  # sum over block calls of (rows x positions)
    unembed_tokens: int = 0  # rows x positions through ln_final + unembed
    position_batches: int = 0  # batches whose runs started after position 0 (self-checked)
    position_fallback_reason: str = ""  # why a by-position sweep did not start runs at p
    shared_prefix: int = 0  # leading positions the two prompt batches share (runs start there)
    unchanged_cells: int = 0  # cells whose value is the base run's, no run (the two below)
    unread_cells: int = 0  # ... of them: patched where no position the metric reads can see it
    query_skipped_tokens: int = 0  # last-block rows x positions given keys/values only
    query_fallback_reason: str = ""  # why read-positions-only last blocks were turned off
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "engine": self.engine,
            "fallback_reason": self.fallback_reason,
            "runs": self.runs,
            "batches": self.batches,
            "block_tokens": self.block_tokens,
            "unembed_tokens": self.unembed_tokens,
            "position_batches": self.position_batches,
            "position_fallback_reason": self.position_fallback_reason,
            "shared_prefix": self.shared_prefix,
            "unchanged_cells": self.unchanged_cells,
            "unread_cells": self.unread_cells,
            "query_skipped_tokens": self.query_skipped_tokens,
            "query_fallback_reason": self.query_fallback_reason,
            "seconds": self.seconds,
        }


@dataclass
class State:
    """What one sweep learns from its first batch and reuses."""

    base_tokens: torch.Tensor  # [n, p]
    source_tokens: torch.Tensor
    base_logits: torch.Tensor | None = None  # [n, p, vocab]
    source_logits: torch.Tensor | None = None
    base_acts: dict[str, torch.Tensor] = field(default_factory=dict)
    source_acts: dict[str, torch.Tensor] = field(default_factory=dict)
    block_inputs: list | None = None  # per block: (args after hidden_states, kwargs), batch n
    checked: bool = False  # the block-by-block run of the base prompts reproduced its logits
    prefix: ps.PrefixKV | None = None  # the base run's keys/values per layer (position start)
    short_checked: bool = False  # a position-start run of the base prompts reproduced its logits
    query_checked: bool = False  # a read-positions-only run of the base prompts reproduced them
    memo: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.base_tokens.shape[0])

    @property
    def p(self) -> int:
        return int(self.base_tokens.shape[1])


class _FastPathUnsupported(Exception):
    pass


_ERRORS = (_FastPathUnsupported, RuntimeError, TypeError, ValueError, KeyError, IndexError)


# ------------------------------------------------------------------ helpers
def eval_metric(metric: Metric, logits: torch.Tensor) -> float:
    """``metric(logits)`` as a float; an InputError unless it is a scalar."""
    t = torch.as_tensor(metric(logits))
    if t.ndim != 0:
        raise InputError(
            "the metric must return a scalar for the logits of one run of the prompt batch "
            f"[batch, pos, vocab]; it returned shape {tuple(t.shape)}",
            details={"shape": list(t.shape)},
        )
    return float(t.detach().float().item())


def _is_kv_cache(x: Any) -> bool:
    return type(x).__name__.endswith("Cache") and not isinstance(x, torch.Tensor)


def _map_batch(x: Any, fn: Callable[[torch.Tensor], torch.Tensor], batch: int) -> Any:
    """Apply ``fn`` to every tensor in ``x`` whose first axis is the batch (``batch`` rows, at
    least 2-d); drop KV caches (each batch is a fresh forward)."""
    if _is_kv_cache(x):
        return None
    if isinstance(x, torch.Tensor):
        return fn(x) if x.ndim >= 2 and x.shape[0] == batch else x
    if isinstance(x, tuple):
        return tuple(_map_batch(y, fn, batch) for y in x)
    if isinstance(x, list):
        return [_map_batch(y, fn, batch) for y in x]
    return x


def _block_inputs(st: State, layer: int, rows: int, start: int = 0) -> tuple[tuple, dict]:
    """Block ``layer``'s captured inputs for a batch of ``rows`` = reps x n rows computing the
    positions ``start..``."""
    key = (layer, rows, start)
    if key not in st.memo:
        assert st.block_inputs is not None
        args, kwargs = ps.cut_inputs(*st.block_inputs[layer], st.p, start)
        reps = rows // st.n

        def tile(t: torch.Tensor) -> torch.Tensor:
            return t.repeat(reps, *([1] * (t.ndim - 1))) if reps > 1 else t

        n = st.n if st.n > 1 else -1  # batch-1 tensors broadcast; leave them alone
        kwargs = {k: _map_batch(v, tile, n) for k, v in kwargs.items()}
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        st.memo[key] = (_map_batch(args, tile, n), kwargs)
    return st.memo[key]


def _patch_hook(offset: int, site: Site, group: list, n: int, source: Any):
    """A patch of rows ``offset .. offset + len(group)*n`` of a batched activation (a function
    ``act -> patched act``; ``patch_hooks`` turns it into the site's hooks): row group ``k`` takes
    the source's values on cell ``group[k]``'s slice. ``source`` is a ``[n, ...]`` tensor, or a
    ``(start, stop)`` row range of the same activation."""
    k = len(group)
    end = offset + k * n
    masks: dict = {}

    def patch(act: torch.Tensor) -> torch.Tensor:
        src = act[source[0] : source[1]] if isinstance(source, tuple) else source
        shape = act.shape[1:]
        mask = masks.get(shape)
        if mask is None:
            mask = masks[shape] = cell_mask(site, group, shape).to(act.device)
        seg = act[offset:end].reshape(k, n, *shape)
        new = torch.where(mask[:, None], src[None].to(seg.dtype), seg).reshape(k * n, *shape)
        if offset == 0 and end == act.shape[0]:
            return new
        return torch.cat([act[:offset], new, act[end:]], dim=0)

    return patch


def _record_hook(store: dict, key: str, start: int, stop: int):
    def hook(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        store[key] = act[start:stop].detach().clone()
        return act

    return hook


# ------------------------------------------------------------------ the full engine
def _run_full(
    model: Any, site: Site, st: State, cells: list, stats: Stats, first: bool, last: bool = False
):
    """Logits of every run of ``cells`` through the model's own forward, batched and hooked.

    With ``first``, the batch starts with the unpatched base and source prompts and their
    logits are kept in ``st``; unless it is also the ``last`` batch, the activations later
    batches need are kept too, and the blocks' inputs captured.
    """
    n, n_layers = st.n, int(model.cfg.n_layers)
    lead = 2 * n if first else 0
    keep = first and not last
    hooks: list = []
    if keep:
        for layer in range(n_layers):
            name = act_name("resid_pre", layer)
            hooks.append((name, _record_hook(st.base_acts, name, 0, n)))
            name = act_name(site.act, layer)
            hooks.append((name, _record_hook(st.source_acts, name, n, 2 * n)))
            if site.act == "resid_post":
                hooks.append((name, _record_hook(st.base_acts, name, 0, n)))
    offset = lead
    for layer, group in groups(cells):
        name = act_name(site.act, layer)
        source = (n, 2 * n) if first else st.source_acts[name]
        hooks.extend(patch_hooks(site, layer, _patch_hook(offset, site, group, n, source)))
        offset += len(group) * n
    parts = ([st.base_tokens, st.source_tokens] if first else []) + [
        st.base_tokens.repeat(len(cells), 1)
    ]
    tokens = torch.cat(parts, dim=0)
    store: list = []
    handles: list = []
    blocks = getattr(model, "blocks", None)
    if keep and blocks is not None:
        store = [None] * len(blocks)
        for i, block in enumerate(blocks):

            def pre(mod, args, kwargs, i=i):  # noqa: ANN001
                store[i] = (tuple(args[1:]), dict(kwargs)) if args else None

            handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    finally:
        for h in handles:
            h.remove()
    stats.block_tokens += tokens.numel() * n_layers
    stats.unembed_tokens += tokens.numel()
    if first:
        st.base_logits = logits[:n].detach().clone()
        st.source_logits = logits[n : 2 * n].detach().clone()
        rows = tokens.shape[0]
        if store and all(s is not None for s in store):
            # keep the first n rows of every batch-shaped input: the prompt batch
            st.block_inputs = [
                (
                    _map_batch(a, lambda t: t[:n].clone(), rows),
                    {k: _map_batch(v, lambda t: t[:n].clone(), rows) for k, v in kw.items()},
                )
                for a, kw in store
            ]
        return logits[lead:]
    return logits


def _unembed(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    return model.unembed(model.ln_final(hidden))


def metric_positions(metric: Metric, p: int) -> list[int] | None:
    """The positions a metric declares it reads (``metric.positions``, see ``metrics``), as
    indices in ``range(p)``; None for every position (undeclared, all of them, or out of range)."""
    declared = getattr(metric, "positions", None)
    if declared is None:
        return None
    try:
        wanted = {int(q) for q in declared}
    except (TypeError, ValueError):
        return None
    if not wanted or any(not -p <= q < p for q in wanted):
        return None
    out = sorted({q % p for q in wanted})
    return None if len(out) == p else out


def _unembed_at(model: Any, hidden: torch.Tensor, positions: list[int] | None) -> torch.Tensor:
    """Logits ``[rows, p, vocab]`` computed only at ``positions`` (NaN elsewhere), or everywhere."""
    if positions is None:
        return _unembed(model, hidden)
    part = _unembed(model, hidden[:, positions])
    out = part.new_full((hidden.shape[0], hidden.shape[1], part.shape[-1]), float("nan"))
    out[:, positions] = part
    return out


def _check_rows(logits: torch.Tensor, expected: torch.Tensor) -> str:
    err = (logits - expected).abs().max().item()
    scale = 1.0 + expected.abs().max().item()
    if not err <= 1e-3 * scale:
        return f"block-by-block logits differ from the model's forward by {err:.3g}"
    return ""
