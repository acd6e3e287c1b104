"""Batch planning for the patching engine (``_patching_engine``): which cells share a batch.

A cell's run costs the blocks from its entry stage on (:func:`entry_stage`: a patch at layer
``L`` cannot change blocks before ``L``) and, on a by-position site run position-start, only the
positions from its first patched position on (``_patching_sites.first_position``). Batches trade
that minimal work against the per-call overhead of one more batch: one call of a block through
the bridge costs about ``BLOCK_CALL_FLOPS`` of dense compute, so a batch may take cells that
recompute a little more than they need (a full forward in the first batch; a few earlier
positions in a position-start batch) while that extra work stays below one batch's overhead.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

from ._patching_sites import Site

# Memory cap in float elements for the activations of one batch (~256 MB in float32).
MAX_ACT_ELEMENTS = 1 << 26
# How many tokens one batch aims at: enough rows for dense matmuls, few enough that progress and
# cancel are polled every second or two on SmolLM2 on 2 CPU cores.
TARGET_BATCH_TOKENS = 3072
# What one call of a block costs in Python overhead through the bridge, in FLOPs of dense
# compute on this class of CPU (~1-2 ms): weighs recomputation against one more batch.
BLOCK_CALL_FLOPS = 2e8

Cell = tuple[int, ...]


def entry_stage(site: Site, cell: Sequence[int]) -> int:
    """The first block a run patched at ``cell`` must compute (``n_layers``: only the unembed)."""
    return int(cell[0]) + 1 if site.act == "resid_post" else int(cell[0])


def groups(cells: Sequence[Cell]) -> list[tuple[int, list]]:
    """Runs of consecutive cells with the same layer (cells come sorted by layer)."""
    out: list[tuple[int, list]] = []
    for c in cells:
        if out and out[-1][0] == c[0]:
            out[-1][1].append(c)
        else:
            out.append((int(c[0]), [c]))
    return out


_BLOCK_FLOPS: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()


def block_flops(model: Any) -> float:
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


# What one element of an elementwise op (norms, rotary, softmax, masks, activations) costs on
# this class of CPU in FLOPs of dense matmul: they are memory-bound, ~50-100x slower per element.
ELEMENTWISE_FLOPS = 64


def token_cost(model: Any, p: int) -> float:
    """What one token through one block costs, in matmul FLOPs: its parameters' FLOPs, the
    attention products over ``p`` keys, and ~``24 d_model + 8 n_heads p`` elementwise elements.
    On SmolLM2 the parameters dominate; on the toy model (d_model 64) the rest is ~5x them."""
    cfg = model.cfg
    d, h = int(cfg.d_model), int(cfg.n_heads)
    return block_flops(model) + 4.0 * p * d + ELEMENTWISE_FLOPS * (24 * d + 8 * h * p)


def runs_per_batch(
    model: Any, n: int, p: int, engine: str, batch_size: int | None, length: int | None = None
) -> int:
    """Patched runs (of ``n`` prompts) per batch: ``batch_size`` when given, else as many as keep
    a batch near ``TARGET_BATCH_TOKENS`` and under the memory cap. ``length``: the positions each
    run computes (``p`` unless position-start)."""
    if batch_size is not None:
        return max(1, int(batch_size))
    cfg = model.cfg
    q = p if length is None else max(1, length)
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * cfg.d_model)
    per_row = q * (8 * int(cfg.d_model) + 3 * d_mlp + 4 * int(cfg.n_heads) * p)
    if engine == "full":
        per_row += q * int(cfg.d_vocab)
    by_memory = MAX_ACT_ELEMENTS // max(1, per_row * n)
    by_speed = max(1, TARGET_BATCH_TOKENS // (n * q))
    return max(1, min(by_memory, by_speed))


def unembed_cost(model: Any) -> float:
    """What unembedding one position costs, in matmul FLOPs: the ``d_model x d_vocab`` product and
    writing and copying its ``d_vocab`` logits (elementwise, see ``ELEMENTWISE_FLOPS``)."""
    v = int(model.cfg.d_vocab)
    return 2.0 * int(model.cfg.d_model) * v + ELEMENTWISE_FLOPS * 2 * v


def first_batch_size(
    model: Any, n: int, p: int, want: int, order: Sequence[Cell], waste: Callable[[Cell], int],
    reads: int | None = None,
) -> int:
    """How many of the cells (``order``: sorted by ``waste``) the first batch takes.

    The first batch runs full forwards, so a cell there recomputes ``waste(cell)`` block-position
    pairs per prompt that a later batch would skip, and it unembeds all ``p`` positions where a
    later batch unembeds only the ``reads`` positions the metric declares (None: every one). It
    takes cells while that waste stays below what one more batch costs in per-call overhead. The
    count is nudged so the batch's row count is not also another axis length (captured block
    inputs are told apart from other tensors by their first axis)."""
    cfg = model.cfg
    per_token_layer = token_cost(model, p)
    budget = BLOCK_CALL_FLOPS * int(cfg.n_layers)
    logit_waste = n * (p - (p if reads is None else reads)) * unembed_cost(model)
    total, k = 0.0, 0
    for cell in order[: max(1, want)]:
        total += waste(cell) * n * per_token_layer + logit_waste
        if k > 0 and total > budget:
            break
        k += 1
    taken = {p, int(cfg.d_model), int(cfg.n_heads), int(cfg.d_head), int(cfg.n_ctx)}
    while k > 1 and (k + 2) * n in taken:
        k -= 1
    return k


def next_chunk(
    model: Any,
    site: Site,
    n: int,
    p: int,
    order: Sequence[Cell],
    i: int,
    start_of: Callable[[Cell], int],
    batch_size: int | None,
    from_start: int | None = None,
) -> tuple[list[Cell], int]:
    """The cells of the next fast batch, from ``order[i]`` on (sorted by ``(start, stage)``), and
    the position the batch starts at (the first cell's ``start_of``, or ``from_start``).

    Cells starting later than the batch join it while they fit (``runs_per_batch`` at the
    batch's length) and the positions they recompute stay below one batch's overhead (with
    ``from_start`` before the first cell's start, that may leave the batch empty)."""
    s0 = start_of(order[i]) if from_start is None else from_start
    cap = runs_per_batch(model, n, p, "fast", batch_size, length=p - s0)
    n_layers = int(model.cfg.n_layers)
    budget = BLOCK_CALL_FLOPS * n_layers
    per_token_layer = token_cost(model, p)
    chunk: list[Cell] = []
    extra = 0.0
    for cell in order[i:]:
        if len(chunk) >= cap:
            break
        extra += (start_of(cell) - s0) * n * (n_layers - entry_stage(site, cell)) * per_token_layer
        if extra > budget:  # never the first cell when the batch starts at its start
            break
        chunk.append(cell)
    return chunk, s0
