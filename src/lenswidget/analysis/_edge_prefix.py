"""Shared-prefix runs of the edge engines: patched runs and gradient runs compute only the
positions from the first one where the clean and corrupted prompts differ.

Let ``k`` be the number of leading positions every clean prompt shares with its corrupted prompt
(:func:`~._position_start.shared_prefix`). Attention is causal, so at positions ``< k`` every
node's clean output equals its corrupted output: every writer's change ``delta_u`` is zero there,
an edge carries the same value whatever the circuit, and every patched run (``circuit`` or
``patch`` mode, :mod:`._edge_patching`) *is* the corrupted run at those positions; likewise an
interpolated embedding of EAP-IG equals the corrupted one there, and a gradient at those positions
multiplies a zero ``delta`` (:mod:`._edge_gradients`). So those runs feed the blocks only the
positions ``k..`` (``[rows, p - k, d_model]``), each attention layer attending to the corrupted
run's keys and values for positions ``< k`` (a :class:`~._position_start.PrefixKV` recorded during
the corrupted forward) followed by its own; the blocks' captured inputs (masks, rotary tables) are
cut to the query rows ``k..`` (:func:`~._position_start.cut_inputs`), and the metric's logits at
positions ``< k`` are the corrupted run's (:func:`merged_logits`). This is the patching engine's
position-start mechanism (:mod:`._position_start`) with one start per prompt batch.

It is checked once per :class:`~._edge_patching.Runs` (:func:`start`): the corrupted prompts run
from ``k`` with nothing patched must reproduce the recorded corrupted final residual at ``k..``
(the gradient engine checks its step-0 rows, which are that run, before the backward). When the
check fails, a block call raises, the model is unsupported (ALiBi, no ``attn``), or the prefix is
too short to pay for the check (:data:`MIN_SHARED_FRACTION`), the engines run every position
(``k = 0``, the path before this module) and ``memo["prefix_fallback"]`` says why;
``memo["prefix"]`` is the start that ran.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import torch

from . import _position_start as ps
from ._patching_engine import _ERRORS, _map_batch, _unembed

# the prefix path is taken when the prompts share at least this fraction of their positions
# (its check costs one run of the corrupted prompts from k; EAP saves 3 x k / p of its four
# forward-equivalents, so below ~1/4 it does not pay)
MIN_SHARED_FRACTION = 0.25


def planned_start(model: Any, clean: torch.Tensor, corrupted: torch.Tensor) -> tuple[int, str]:
    """``(k, why_not)``: the shared prefix ``k`` of the prompt batches ``[n, p]`` when the prefix
    path is to be tried (``k == p`` for identical prompts), else ``(0, reason)``."""
    p = int(clean.shape[1])
    k = ps.shared_prefix(clean, corrupted)
    if k == 0:
        return 0, "the prompts differ at position 0"
    if k < p and k < MIN_SHARED_FRACTION * p:
        return 0, f"the shared prefix ({k} of {p} positions) is under {MIN_SHARED_FRACTION:g} of the prompt"
    why = ps.supported(model) or _causal(model)
    return (0, why) if why else (k, "")


def _causal(model: Any) -> str:
    """Why the attention may not be causal ("" when every layer's is): the prefix argument needs
    causal attention (the prefix positions must not see the later ones)."""
    for block in model.blocks:
        inner = getattr(block.attn, "original_component", None)
        if getattr(inner, "causal", True) is False or getattr(inner, "is_causal", True) is False:
            return "non-causal attention"
    return ""


class _PrefixKV(ps.PrefixKV):
    """:class:`~._position_start.PrefixKV` that tiles the prefix afresh for each call instead of
    keeping every tiling: the edge engines' batches vary in size, and a Runs (with its keys and
    values) lives on in the :class:`EdgeScores` that recorded it."""

    def _prefix(self, layer: int, start: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        reps = rows // self.n
        k, v = self.keys[layer][:, :, :start], self.values[layer][:, :, :start]
        return (k.repeat(reps, 1, 1, 1), v.repeat(reps, 1, 1, 1)) if reps > 1 else (k, v)


@contextmanager
def recording(model: Any, n: int, k: int) -> Iterator[ps.PrefixKV | None]:
    """While active (``0 < k``), a forward of ``n`` prompts hands every layer's keys and values
    to the yielded :class:`PrefixKV` (record mode; the values are unchanged). Yields None for
    ``k == 0``."""
    if k == 0:
        yield None
        return
    kv = _PrefixKV(n)
    handles = []
    for i, block in enumerate(model.blocks):
        def pre(mod: Any, args: tuple, i: int = i) -> None:
            kv.layer = i
        handles.append(block.register_forward_pre_hook(pre))
    try:
        with ps.injected(model, kv):
            yield kv
    finally:
        for h in handles:
            h.remove()


def attach(memo: dict, k: int, kv: ps.PrefixKV | None, reason: str) -> None:
    """Keep the planned start ``k`` (:func:`planned_start`) and the keys/values recorded for it in
    a Runs' ``memo``; :func:`start` checks them before the first patched run."""
    memo["prefix_planned"], memo["prefix_kv"], memo["prefix_fallback"] = k, kv, reason


def decide(memo: dict, k: int, reason: str = "") -> int:
    """Record the start the runs use from now on (``memo["prefix"]``) and why it is 0."""
    memo["prefix"], memo["prefix_fallback"] = k, reason
    if not k:
        memo["prefix_kv"] = None
    return k


def block_inputs(memo: dict, captured: list, layer: int, n: int, p: int, rows: int, k: int) -> tuple[tuple, dict]:
    """Block ``layer``'s captured inputs (``captured[layer]``, from the corrupted forward) for
    ``rows`` = reps x ``n`` rows computing the positions ``k..``; memoized."""
    key = ("block", layer, rows, k)
    if key not in memo:
        args, kwargs = ps.cut_inputs(*captured[layer], p, k)
        reps = rows // n

        def tile(t: torch.Tensor) -> torch.Tensor:
            return t.repeat(reps, *([1] * (t.ndim - 1))) if reps > 1 else t

        nb = n if n > 1 else -1  # batch-1 tensors broadcast; leave them alone
        kwargs = {name: _map_batch(v, tile, nb) for name, v in kwargs.items()}
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        memo[key] = (_map_batch(args, tile, nb), kwargs)
    return memo[key]


def run_blocks(model: Any, memo: dict, captured: list, n: int, p: int, hidden: torch.Tensor,
               first: int, k: int, each: Callable[[int, torch.Tensor], Any] | None = None) -> torch.Tensor:
    """Call the blocks ``first..`` on ``hidden`` ``[rows, p - k, d_model]`` (rows a multiple of
    ``n``; ``each(layer, hidden)`` is called before each block); with ``k > 0`` each attention
    gets the prefix keys/values in ``memo``. Returns the final residual ``[rows, p - k, d_model]``
    (before ``ln_final``)."""
    kv = memo.get("prefix_kv") if k else None
    if k and kv is None:
        raise RuntimeError("prefix run without recorded keys/values")
    if kv is not None:
        kv.start, kv.record = k, False
    with ps.injected(model, kv) if kv is not None else nullcontext():
        for layer in range(first, len(model.blocks)):
            args, kwargs = block_inputs(memo, captured, layer, n, p, int(hidden.shape[0]), k)
            if kv is not None:
                kv.layer = layer
            if each is not None:
                each(layer, hidden)
            out = model.blocks[layer](hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, (tuple, list)) else out
    return hidden


def mismatch(final: torch.Tensor, expected: torch.Tensor) -> str:
    """Why ``final`` does not reproduce ``expected`` (both ``[n, p - k, d_model]``); "" when it does
    (the tolerance of ``_patching_runs._check_rows``, on the residual)."""
    err = float((final.detach().float() - expected.float()).abs().max())
    scale = 1.0 + float(expected.float().abs().max())
    if not err <= 1e-3 * scale:
        return f"the corrupted prompts run from position k differ from their forward by {err:.3g}"
    return ""


def start(runs: Any) -> int:
    """The start position the patched runs of ``runs`` use: the planned prefix once the corrupted
    prompts run from there reproduce its final residual (checked once; keys/values recorded
    first, by a block-by-block corrupted run, when the forward did not record them), else 0."""
    memo = runs.memo
    if "prefix" in memo:
        return int(memo["prefix"])
    model = runs.weights.model
    n, p = (int(s) for s in runs.corrupted.shape)
    if "prefix_planned" not in memo:
        planned, why = planned_start(model, runs.clean, runs.corrupted)
        attach(memo, planned, None, why)
    k = int(memo["prefix_planned"])
    if k in (0, p):
        return decide(memo, k, memo["prefix_fallback"])
    err = ""
    try:
        with torch.no_grad():
            kv = memo.get("prefix_kv")
            if kv is None or not kv.complete(len(model.blocks)):
                with recording(model, n, k) as kv:
                    run_blocks(model, memo, runs.block_inputs, n, p, runs.base[("pre", 0)], 0, 0)
                if not kv.complete(len(model.blocks)):
                    raise RuntimeError("the attention did not pass its keys/values to past_key_values")
                memo["prefix_kv"] = kv
            final = run_blocks(model, memo, runs.block_inputs, n, p, runs.base[("pre", 0)][:, k:], 0, k)
        err = mismatch(final, runs.base[("final", 0)][:, k:])
    except _ERRORS as e:
        err = f"{type(e).__name__}: {e}"
    return decide(memo, 0, err) if err else decide(memo, k)


def fallback(memo: dict, reason: str) -> None:
    """Run every position from now on, and say why."""
    decide(memo, 0, reason)


def merged_logits(model: Any, part: torch.Tensor, corr_final: torch.Tensor, k: int,
                  positions: list[int] | None, memo: dict) -> torch.Tensor:
    """Logits ``[n, p, vocab]`` of one run of the ``n`` prompts that computed positions ``k..``.

    ``part``: its logits at the metric's positions ``>= k`` (``[n, p - k, vocab]`` when
    ``positions`` is None, else ``[n, len(positions >= k), vocab]``). Positions ``< k`` are the
    corrupted run's (unembedded once from ``corr_final`` ``[n, p, d_model]``, memoized): nothing
    there differs from it. Positions the metric does not read are NaN."""
    p = int(corr_final.shape[1])
    if k == 0 and positions is None:
        return part
    want = list(range(p)) if positions is None else positions
    before = [q for q in want if q < k]
    after = [q for q in want if q >= k]
    out = part.new_full((part.shape[0], p, part.shape[-1]), float("nan"))
    if before:
        key = ("prefix_logits", tuple(before))
        if key not in memo:
            with torch.no_grad():
                memo[key] = _unembed(model, corr_final[:, before])
        out[:, before] = memo[key].to(out.dtype)
    if after:
        out[:, after] = part
    return out


def after_positions(p: int, k: int, positions: list[int] | None) -> list[int] | None:
    """The metric's positions ``>= k`` as indices into a run of positions ``k..`` (None: all)."""
    return None if positions is None else [q - k for q in positions if q >= k]


def stats(runs: Any, key: str = "prefix") -> dict:
    """Which path ran: ``shared_prefix`` (leading positions the clean and corrupted prompts
    share), ``start`` (the position the runs started at, ``memo[key]``: ``"prefix"`` for the
    patched runs, ``"grad_prefix"`` for the gradient runs) and ``fallback`` (why they started at 0
    although the prompts share a prefix; "" otherwise)."""
    memo = runs.memo
    reason_key = "grad_fallback" if key == "grad_prefix" else "prefix_fallback"
    return {"shared_prefix": ps.shared_prefix(runs.clean, runs.corrupted), "start": int(memo.get(key, 0) or 0),
            "fallback": str(memo.get(reason_key, "") or "")}

