"""The batched activation-patching engine behind :func:`lenswidget.analysis.patch_sweep`.

TransformerLens's sweeps run one forward pass of the whole model per patched cell (plus one to
cache the clean run). Here many patched runs share one forward batch, and nothing a patch cannot
change is recomputed:

* **Rows.** A batch is the prompt batch ("base": the run patched *into*, corrupted when
  denoising) repeated once per cell; each group of ``n_prompts`` rows carries one cell's patch. A
  hook at the site's hook point replaces, per row group, the cell's slice of the activation with
  the "source" run's (clean when denoising), exactly as TransformerLens's patch setter does.
* **First batch: full forwards.** The first batch also carries the unpatched base and source
  prompts as its first ``2 * n_prompts`` rows, so one forward gives the two unpatched runs (their
  logits give ``clean_value`` / ``corrupted_value``), the source activations the patches copy
  (read from the same activation tensor in the hook), and the cached base residuals the later
  batches start from. A small sweep (the toy model's) is one forward in all.
* **Later batches: start at the patched layer.** A run patched at layer ``L`` cannot differ from
  the base run before block ``L``: it enters the batch at block ``L`` as the cached base residual
  ``blocks.L.hook_resid_pre`` (for the residual sites, the patched residual itself). Cells are
  sorted by layer and the batch grows as it goes down the blocks, so each run costs only the
  blocks it can change. The blocks are called one by one with the positional/keyword inputs the
  model's own forward gave them (captured in the first batch: attention masks, rotary tables),
  so the bridge's hooks and the model's own modules do the work. This "fast" engine checks itself
  once: ``n_prompts`` unpatched rows enter at block 0 and their logits must equal the base run's.
  If they do not (an architecture whose forward does more than ``blocks`` -> ``ln_final`` ->
  ``unembed``), or a block call fails, the sweep goes on with batched full forwards ("full").
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..errors import InputError
from ._patching_sites import Site, cell_mask, patch_hooks
from .hooks import act_name

Metric = Callable[[torch.Tensor], Any]

# Memory caps in float elements: the activations of one batch (~256 MB in float32), and the
# logits of one slice handed to the metric (~128 MB).
MAX_ACT_ELEMENTS = 1 << 26
MAX_LOGIT_ELEMENTS = 1 << 25
# How many tokens one batch aims at: enough rows for dense matmuls, few enough that progress and
# cancel are polled every second or two on SmolLM2 on 2 CPU cores.
TARGET_BATCH_TOKENS = 3072
# What one call of a block costs in Python overhead through the bridge, in FLOPs of dense
# compute on this class of CPU (~1-2 ms): weighs recomputation against one more batch.
BLOCK_CALL_FLOPS = 2e8


@dataclass
class Stats:
    engine: str = "fast"
    fallback_reason: str = ""
    runs: int = 0
    batches: int = 0
    block_tokens: int = 0  # sum over block calls of (rows x positions)
    unembed_tokens: int = 0  # rows x positions through ln_final + unembed
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "engine": self.engine,
            "fallback_reason": self.fallback_reason,
            "runs": self.runs,
            "batches": self.batches,
            "block_tokens": self.block_tokens,
            "unembed_tokens": self.unembed_tokens,
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
    checked: bool = False
    memo: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.base_tokens.shape[0])

    @property
    def p(self) -> int:
        return int(self.base_tokens.shape[1])


class _FastPathUnsupported(Exception):
    pass


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


def entry_stage(site: Site, cell: Sequence[int]) -> int:
    """The first block a run patched at ``cell`` must compute (``n_layers``: only the unembed)."""
    return int(cell[0]) + 1 if site.act == "resid_post" else int(cell[0])


def _groups(cells: Sequence[tuple[int, ...]]) -> list[tuple[int, list]]:
    """Runs of consecutive cells with the same layer (cells come sorted by layer)."""
    out: list[tuple[int, list]] = []
    for c in cells:
        if out and out[-1][0] == c[0]:
            out[-1][1].append(c)
        else:
            out.append((int(c[0]), [c]))
    return out


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


def _block_inputs(st: State, layer: int, rows: int) -> tuple[tuple, dict]:
    """Block ``layer``'s captured inputs for a batch of ``rows`` = reps x n rows."""
    key = (layer, rows)
    if key not in st.memo:
        assert st.block_inputs is not None
        args, kwargs = st.block_inputs[layer]
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
    ``act -> patched act``; ``patch_hooks`` turns it into the site's hooks): row group ``k`` takes the source's values on cell ``group[k]``'s slice. ``source`` is a
    ``[n, ...]`` tensor, or a ``(start, stop)`` row range of the same activation."""
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
    for layer, group in _groups(cells):
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


# ------------------------------------------------------------------ the fast engine
def _run_fast(model: Any, site: Site, st: State, cells: list, stats: Stats, check: bool):
    """Final hidden states of every run of ``cells``, each starting at its patched layer (plus,
    with ``check``, ``n`` unpatched rows from block 0 first)."""
    n, p = st.n, st.p
    n_layers = len(model.blocks)
    entries: dict[int, list[torch.Tensor]] = {}
    hooks = []
    offset = 0
    if check:
        entries.setdefault(0, []).append(st.base_acts[act_name("resid_pre", 0)])
        offset = n
    for layer, group in _groups(cells):
        name = act_name(site.act, layer)
        if site.act in ("resid_pre", "resid_post"):
            base, src = st.base_acts[name], st.source_acts[name]
            mask = cell_mask(site, group, src.shape[1:]).to(src.device)
            rows = torch.where(mask[:, None], src[None], base[None]).reshape(-1, *base.shape[1:])
        else:
            base = st.base_acts[act_name("resid_pre", layer)]
            rows = base.repeat(len(group), *([1] * (base.ndim - 1)))
            src = st.source_acts[name]
            hooks.extend(patch_hooks(site, layer, _patch_hook(offset, site, group, n, src)))
        entries.setdefault(entry_stage(site, group[0]), []).append(rows)
        offset += len(group) * n

    hidden: torch.Tensor | None = None
    with model.hooks(fwd_hooks=hooks):
        for stage in range(min(entries), n_layers + 1):
            if stage in entries:
                hidden = torch.cat(([hidden] if hidden is not None else []) + entries[stage])
            if stage == n_layers:
                break
            assert hidden is not None
            args, kwargs = _block_inputs(st, stage, hidden.shape[0])
            out = model.blocks[stage](hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, (tuple, list)) else out
            stats.block_tokens += hidden.shape[0] * p
    assert hidden is not None
    return hidden


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


def _runs_per_batch(model: Any, st: State, engine: str, batch_size: int | None) -> int:
    if batch_size is not None:
        return max(1, int(batch_size))
    cfg = model.cfg
    n, p = st.n, st.p
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * cfg.d_model)
    per_row = p * (8 * int(cfg.d_model) + 3 * d_mlp + 4 * int(cfg.n_heads) * p)
    if engine == "full":
        per_row += p * int(cfg.d_vocab)
    by_memory = MAX_ACT_ELEMENTS // max(1, per_row * n)
    by_speed = max(1, TARGET_BATCH_TOKENS // (n * p))
    return max(1, min(by_memory, by_speed))


_BLOCK_FLOPS: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()


def _block_flops(model: Any) -> float:
    """FLOPs per token of one block (2 x its parameters), cached per model."""
    try:
        return _BLOCK_FLOPS[model]
    except (KeyError, TypeError):
        pass
    blocks = getattr(model, "blocks", None)
    flops = 2.0 * sum(p.numel() for p in blocks[0].parameters()) if blocks else 0.0
    try:
        _BLOCK_FLOPS[model] = flops
    except TypeError:  # pragma: no cover - not weak-referenceable
        pass
    return flops


def _first_batch_size(model: Any, site: Site, st: State, want: int, order: list) -> int:
    """How many of the (stage-sorted) cells the first batch takes.

    The first batch runs full forwards, so a cell patched at layer ``L`` there recomputes ``L``
    blocks a later batch would skip. It takes cells while that waste stays below what one more
    batch costs in per-call overhead (one bridge block call ~ ``BLOCK_CALL_FLOPS``): on the toy
    model that is every cell (one forward in all), on SmolLM2 the first few layers. The count is
    nudged so the batch's row count is not also another axis length (captured block inputs are
    told apart from other tensors by their first axis)."""
    cfg = model.cfg
    per_token_layer = _block_flops(model)
    budget = BLOCK_CALL_FLOPS * int(cfg.n_layers)
    waste, k = 0.0, 0
    for cell in order[: max(1, want)]:
        waste += entry_stage(site, cell) * st.n * st.p * per_token_layer
        if k > 0 and waste > budget:
            break
        k += 1
    taken = {st.p, int(cfg.d_model), int(cfg.n_heads), int(cfg.d_head), int(cfg.n_ctx)}
    while k > 1 and (k + 2) * st.n in taken:
        k -= 1
    return k


# ------------------------------------------------------------------ the sweep
def sweep(
    model: Any,
    site: Site,
    st: State,
    metric: Metric,
    cells: Sequence[tuple[int, ...]],
    values: torch.Tensor,
    done: torch.Tensor,
    *,
    batch_size: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    progress_offset: int = 0,
    progress_total: int | None = None,
    engine: str = "auto",
) -> tuple[Stats, bool]:
    """Fill ``values[cell]`` / ``done[cell]`` for every cell, and ``st``'s unpatched logits.

    Returns ``(stats, cancelled)``. ``cancel`` is polled before each batch.
    """
    t0 = time.perf_counter()
    stats = Stats(engine="full" if engine == "full" else "fast")
    n, p = st.n, st.p
    total = progress_total if progress_total is not None else len(cells)
    if stats.engine == "fast" and not all(
        hasattr(model, a) for a in ("blocks", "ln_final", "unembed")
    ):
        stats.engine = "full"
        stats.fallback_reason = "the model has no blocks / ln_final / unembed"
    order = sorted(cells, key=lambda c: entry_stage(site, c))
    positions = metric_positions(metric, p)
    first = True
    cancelled = False
    i = count = 0
    if progress is not None:
        progress(progress_offset, total)
    while first or i < len(order):
        if cancel is not None and cancel():
            cancelled = True
            break
        with torch.no_grad():
            if first:
                want = _runs_per_batch(model, st, "full", batch_size)
                if stats.engine == "fast":
                    chunk = order[: _first_batch_size(model, site, st, want, order)]
                else:
                    chunk = order[:want]
                last = len(chunk) == len(order)
                logits = _run_full(model, site, st, chunk, stats, first=True, last=last)
                first = False
                if not last and st.block_inputs is None and stats.engine == "fast":
                    stats.engine = "full"
                    stats.fallback_reason = "the blocks' inputs could not be captured"
                for j, cell in enumerate(chunk):
                    values[cell] = eval_metric(metric, logits[j * n : (j + 1) * n])
                    done[cell] = True
                del logits
            else:
                chunk = order[i : i + _runs_per_batch(model, st, stats.engine, batch_size)]
                if stats.engine == "fast":
                    try:
                        hidden = _run_fast(model, site, st, chunk, stats, not st.checked)
                        if not st.checked:
                            assert st.base_logits is not None
                            reason = _check_rows(_unembed(model, hidden[:n]), st.base_logits)
                            if reason:
                                raise _FastPathUnsupported(reason)
                            hidden = hidden[n:]
                            st.checked = True
                    except (_FastPathUnsupported, RuntimeError, TypeError, ValueError) as err:
                        if st.checked:
                            raise
                        stats.engine = "full"
                        stats.fallback_reason = f"{type(err).__name__}: {err}"
                        continue  # redo this chunk with full forwards
                    per_slice = max(1, MAX_LOGIT_ELEMENTS // max(1, n * p * int(model.cfg.d_vocab)))
                    for s in range(0, len(chunk), per_slice):
                        logits = _unembed_at(model, hidden[s * n : (s + per_slice) * n], positions)
                        stats.unembed_tokens += logits.shape[0] * (len(positions) if positions else p)
                        for j in range(logits.shape[0] // n):
                            cell = chunk[s + j]
                            values[cell] = eval_metric(metric, logits[j * n : (j + 1) * n])
                            done[cell] = True
                else:
                    logits = _run_full(model, site, st, chunk, stats, first=False)
                    for j, cell in enumerate(chunk):
                        values[cell] = eval_metric(metric, logits[j * n : (j + 1) * n])
                        done[cell] = True
                    del logits
        stats.batches += 1
        stats.runs += len(chunk)
        count += len(chunk)
        i += len(chunk)
        if progress is not None:
            progress(progress_offset + count, total)
    if stats.engine == "fast" and not st.checked:
        stats.engine = "full"  # every run was in the first batch: full forwards only
    stats.seconds = time.perf_counter() - t0
    return stats, cancelled
