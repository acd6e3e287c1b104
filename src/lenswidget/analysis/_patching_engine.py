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
  so the bridge's hooks and the model's own modules do the work.
* **... and at the patched position.** A run patched at position ``p`` (the ``pos`` / ``dest_pos``
  sites) cannot differ from the base run before ``p`` either: it computes only positions ``p..``,
  attending to the base run's keys and values for earlier positions (``_position_start``). Cells
  are grouped by (start position, layer) so the rows of one batch share their length
  (``_patching_plan``); logits before ``p`` are the base run's.
* **... and at the prompts' shared prefix.** Where every pair's two prompts agree on their first
  ``k`` tokens (IOI-style pairs that differ at one name, a shared few-shot lead-in), the two runs
  agree at positions ``< k`` (causal attention): a by-position cell there copies a value onto
  itself, so its value is the base run's metric without a run (``stats["unchanged_cells"]``), and
  every other run starts at position ``k`` at the earliest, all-position cells included
  (``stats["shared_prefix"]``). The first batch checks that the unpatched logits of the two runs
  agree there (``_shared_prefix_reason``); if not, every cell runs as above.
* **... and only what the metric reads.** A metric that declares its positions cannot see a
  patch after its last read position (causal attention), nor one on the last block's
  per-position activations elsewhere (``_patching_reach``): those cells are the base
  run's value without a run (``stats["unread_cells"]``). On ``NativeAttention`` (the toy model)
  the last block of a batch with no patch hook in it computes queries, attention and output
  only at the read positions (keys and values everywhere; ``stats["query_skipped_tokens"]``).
  The built-in metrics score every run of a batch at once (``metrics.batched_form``).
* **Self-checks and fallbacks.** The first block-by-block batch starts at position 0 and carries
  the unpatched prompt batch as ``n`` extra rows from block 0 (recording every layer's keys and
  values for position start); their logits must equal the model's forward. If they do not (an
  architecture whose forward does more than ``blocks`` -> ``ln_final`` -> ``unembed``), or a
  block call fails, the batch is run again without read-only last blocks, then without the
  recording, then the sweep goes on with batched full forwards ("full"). The first position-start
  batch, and the first read-only one, carry ``n`` unpatched rows started at its position, whose
  logits must equal the base run's at the positions the metric reads; if not, by-position cells
  start at position 0 (``stats["position_fallback_reason"]``) or every position is computed
  (``stats["query_fallback_reason"]``).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any, Callable, Sequence

import torch

from . import _position_start as ps
from ._patching_plan import (  # noqa: F401  (the tuning constants, re-exported)
    BLOCK_CALL_FLOPS,
    Cell,
    MAX_ACT_ELEMENTS,
    TARGET_BATCH_TOKENS,
    entry_stage,
    first_batch_size,
    groups,
    next_chunk,
    runs_per_batch,
)
from ._patching_runs import (  # noqa: F401  (_map_batch, _unembed_at: used by the edge engines)
    _ERRORS,
    Metric,
    State,
    Stats,
    _check_rows,
    _FastPathUnsupported,
    _map_batch,
    _patch_hook,
    _run_full,
    _unembed,
    _unembed_at,
    _block_inputs,
    eval_metric,
    metric_positions,
)
from ._patching_reach import _read_queries, _shared_prefix_reason, _unchanged, _unread  # noqa: F401
from ._patching_sites import Site, cell_mask, first_position, patch_hooks, shift_cell, slice_act
from .hooks import act_name
from .metrics import batched_form

# The logits of one slice handed to the metric, in float elements (~128 MB in float32).
MAX_LOGIT_ELEMENTS = 1 << 25


# ------------------------------------------------------------------ the fast engine
def _run_blocks(model: Any, st: State, entries: dict, stats: Stats, start: int, kv: Any,
                queries: list[int] | None = None) -> torch.Tensor:
    """Call the blocks from the first stage in ``entries`` on, adding each stage's entering rows
    (``[rows, p - start, d_model]``) to the batch; with ``kv``, attention gets its prefix, and
    with ``queries`` (positions from ``start``) the last block computes only those positions'
    outputs (``_position_start._native_forward``; the others are left 0)."""
    hidden: torch.Tensor | None = None
    n_layers = len(model.blocks)
    with ps.injected(model, kv) if kv is not None else nullcontext():
        for stage in range(min(entries), n_layers + 1):
            if stage in entries:
                hidden = torch.cat(([hidden] if hidden is not None else []) + entries[stage])
            if stage == n_layers:
                break
            assert hidden is not None
            args, kwargs = _block_inputs(st, stage, hidden.shape[0], start)
            if kv is not None:
                kv.layer = stage
                kv.queries = queries if stage == n_layers - 1 else None
            out = model.blocks[stage](hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, (tuple, list)) else out
            stats.block_tokens += hidden.shape[0] * (st.p - start)
            if kv is not None and kv.queries is not None:
                stats.query_skipped_tokens += hidden.shape[0] * (st.p - start - len(kv.queries))
        if kv is not None:
            kv.queries = None
    assert hidden is not None
    return hidden


def _run_fast(
    model: Any, site: Site, st: State, cells: list, stats: Stats, start: int, check: bool,
    queries: list[int] | None = None, record: ps.PrefixKV | None = None,
) -> torch.Tensor:
    """Final hidden states ``[rows, p - start, d_model]`` of every run of ``cells`` (sorted by
    stage), each starting at its patched layer and at position ``start`` (plus, with ``check``,
    ``n`` unpatched rows from block 0 first). With ``queries`` (positions from ``start``; see
    :func:`_run_blocks`) only those positions are valid. ``record`` (start 0, with ``check``):
    a recording :class:`~._position_start.PrefixKV` that keeps the unpatched rows' keys and
    values of every layer."""
    n = st.n
    entries: dict[int, list[torch.Tensor]] = {}
    hooks = []
    offset = 0
    if check:
        entries.setdefault(0, []).append(st.base_acts[act_name("resid_pre", 0)][:, start:])
        offset = n
    for layer, group in groups(cells):
        name = act_name(site.act, layer)
        shifted = [shift_cell(site, c, start) for c in group]
        if site.act in ("resid_pre", "resid_post"):
            base, src = st.base_acts[name][:, start:], st.source_acts[name][:, start:]
            mask = cell_mask(site, shifted, src.shape[1:]).to(src.device)
            rows = torch.where(mask[:, None], src[None], base[None]).reshape(-1, *base.shape[1:])
        else:
            base = st.base_acts[act_name("resid_pre", layer)][:, start:]
            rows = base.repeat(len(group), *([1] * (base.ndim - 1)))
            src = slice_act(site, st.source_acts[name], start)
            hooks.extend(patch_hooks(site, layer, _patch_hook(offset, site, shifted, n, src)))
        entries.setdefault(entry_stage(site, group[0]), []).append(rows)
        offset += len(group) * n
    kv = None
    if record is not None:
        kv = record
    elif start > 0:
        assert st.prefix is not None
        kv, kv.start, kv.record = st.prefix, start, False
    elif queries is not None:  # no prefix: a cache that hands the keys/values back unchanged
        kv = ps.PrefixKV(n)
        kv.record = False
    # the bridge's hook context costs ~0.1 ms to enter (alias maps): only when there are hooks
    with model.hooks(fwd_hooks=hooks) if hooks else nullcontext():
        return _run_blocks(model, st, entries, stats, start, kv, queries)



def _score(model: Any, st: State, metric: Metric, hidden: torch.Tensor, start: int,
           positions: list[int] | None, stats: Stats) -> list[float]:
    """The metric of each run in ``hidden`` (``[runs x n, p - start, d_model]``), unembedded in
    slices at the metric's positions ``>= start`` (the base run's logits before ``start``)."""
    n, p = st.n, st.p
    assert st.base_logits is not None
    after = None if positions is None else [q - start for q in positions if q >= start]
    # one slice's computed logits stay under the cap (the unembedding's weights are read once
    # per slice: on SmolLM2 that read, 113 MB, outweighs a few runs' products)
    width = p - start if after is None else max(1, len(after))
    per_slice = max(1, MAX_LOGIT_ELEMENTS // max(1, n * width * int(model.cfg.d_vocab)))
    frame = st.memo.get("logit_frame")
    batched = None if positions is None else batched_form(metric)
    if frame is None and (start > 0 or positions is not None) and batched is None:
        # (else each run is a slice of part, or the metric reads them all at once)
        # NaN-filled once per sweep: a fresh fill page-faults its whole size
        frame = st.memo["logit_frame"] = st.base_logits.new_full(st.base_logits.shape, float("nan"))
    out: list[float] = []
    for s in range(0, hidden.shape[0] // n, per_slice):
        h = hidden[s * n : (s + per_slice) * n]
        part = _unembed(model, h if after is None else h[:, after])
        stats.unembed_tokens += part.shape[0] * part.shape[1]
        if batched is not None:  # the metrics here: every run's value at once
            assert positions is not None
            out.extend(batched(ps.read_logits(part, st.base_logits, start, positions, n),
                               positions, p).tolist())
            continue
        runs = ps.run_logits(part, st.base_logits, start, positions, n, frame)
        out.extend(eval_metric(metric, run) for run in runs)
    return out


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
    n_layers = int(model.cfg.n_layers)
    total = progress_total if progress_total is not None else len(cells)
    if stats.engine == "fast" and not all(
        hasattr(model, a) for a in ("blocks", "ln_final", "unembed")
    ):
        stats.engine = "full"
        stats.fallback_reason = "the model has no blocks / ln_final / unembed"
    # the positions both prompt batches share: a cell patched only there is the base run, and
    # every other run can start there (checked against the unpatched logits after batch 1)
    shared = ps.shared_prefix(st.base_tokens, st.source_tokens)
    unchanged = _unchanged(site, cells, shared, p)
    positions = metric_positions(metric, p)
    # cells whose patch cannot reach what the metric reads: the base run's value, no run
    skip = set(unchanged)
    unread = [c for c in _unread(model, site, cells, positions) if c not in skip]
    if skip or unread:
        skip |= set(unread)
        cells = [c for c in cells if c not in skip]
    # by-position cells start at their position once the first position-start batch checks out
    by_pos = stats.engine == "fast" and (shared > 0 or any(first_position(site, c) for c in cells))

    def start_of(c: tuple[int, ...]) -> int:
        return max(first_position(site, c), shared) if by_pos else 0

    # the last block computes only the read positions (checked once, like position start)
    read_only_last = query_ok = positions is not None and ps.native_attention(model)

    def waste(c: tuple[int, ...]) -> int:  # block-positions a full forward adds per prompt
        stage, start = entry_stage(site, c), start_of(c)
        unread = 0  # last-block positions a later batch skips (see _read_queries)
        if read_only_last and stage < n_layers and (
            site.act in ("resid_pre", "resid_post") or int(c[0]) < n_layers - 1
        ):
            assert positions is not None
            unread = (p - start) - sum(q >= start for q in positions)
        return stage * p + start * (n_layers - stage) + unread

    order = sorted(cells, key=waste)
    cancelled = False
    count = 0
    rest: list = []
    if progress is not None:
        progress(progress_offset, total)

    def finish(chunk: list, scores: Sequence[float], runs: bool = True) -> None:
        nonlocal count
        if chunk:
            index = tuple(torch.tensor(axis) for axis in zip(*chunk))
            values[index] = torch.tensor(list(scores), dtype=values.dtype)
            done[index] = True
        stats.batches += runs
        stats.runs += len(chunk) if runs else 0
        count += len(chunk)
        if progress is not None:
            progress(progress_offset + count, total)

    batched = None if positions is None else batched_form(metric)

    def score_full(logits: torch.Tensor, k: int) -> list[float]:
        if batched is not None and k > 0:
            read = logits[: k * n, positions].reshape(k, n, len(positions), -1)
            return batched(read, positions, p).tolist()
        return [eval_metric(metric, logits[j * n : (j + 1) * n]) for j in range(k)]

    if cancel is not None and cancel():
        cancelled = True
    else:
        with torch.no_grad():
            want = runs_per_batch(model, n, p, "full", batch_size)
            reads = None if positions is None else len(positions)
            k = first_batch_size(model, n, p, want, order, waste, reads) if stats.engine == "fast" else want
            chunk, rest = order[:k], order[k:]
            last = not rest and not unchanged and not unread
            logits = _run_full(model, site, st, chunk, stats, first=True, last=last)
            finish(chunk, score_full(logits, len(chunk)))
            del logits
            assert st.base_logits is not None
            reason = _shared_prefix_reason(st, shared)
            if reason:  # not a causal prefix here (nor, then, a causal model): every cell runs
                stats.position_fallback_reason = reason
                rest += unchanged + unread
                unchanged, unread, shared = [], [], 0
                by_pos = by_pos and any(first_position(site, c) for c in rest)
            base_value = eval_metric(metric, st.base_logits)
            for skipped in (unchanged, unread):
                if skipped:
                    finish(skipped, [base_value] * len(skipped), runs=False)
            stats.shared_prefix, stats.unread_cells = shared, len(unread)
            stats.unchanged_cells = len(unchanged) + len(unread)
            if rest and stats.engine == "fast":
                if st.block_inputs is None:
                    stats.engine = "full"
                    stats.fallback_reason = "_FastPathUnsupported: the blocks' inputs could not be captured"
                elif by_pos and ps.supported(model):
                    by_pos = False
                    stats.position_fallback_reason = ps.supported(model)
            rest.sort(key=lambda c: (start_of(c), entry_stage(site, c)))
    i = 0
    while not cancelled and i < len(rest):
        if cancel is not None and cancel():
            cancelled = True
            break
        with torch.no_grad():
            if stats.engine == "full":
                chunk = rest[i : i + runs_per_batch(model, n, p, "full", batch_size)]
                logits = _run_full(model, site, st, chunk, stats, first=False)
                finish(chunk, score_full(logits, len(chunk)))
                del logits
                i += len(chunk)
                continue
            # the first block-by-block batch starts at position 0 and carries the self-check
            prep = not st.checked
            chunk, start = next_chunk(model, site, n, p, rest, i, start_of, batch_size, 0 if prep else None)
            chunk = sorted(chunk, key=lambda c: entry_stage(site, c))
            queries = _read_queries(model, site, chunk, start, positions) if query_ok else None
            check_query = queries is not None and not st.query_checked
            check = prep or (start > 0 and not st.short_checked) or check_query
            record = ps.PrefixKV(n) if prep and by_pos else None
            try:
                hidden = _run_fast(model, site, st, chunk, stats, start, check, queries, record)
                if check:
                    assert st.base_logits is not None
                    want = st.base_logits[:, start:]
                    got = hidden[:n]
                    if queries is not None:  # only the read positions are computed
                        want, got = want[:, queries], got[:, queries]
                    reason = _check_rows(_unembed(model, got), want)
                    if reason:
                        raise _FastPathUnsupported(reason)
                    hidden = hidden[n:]
                    st.short_checked = st.short_checked or start > 0
                    st.query_checked = st.query_checked or queries is not None
                    st.checked = True
                if record is not None and record.complete(n_layers):
                    st.prefix = record
                elif record is not None:
                    by_pos = False
                    stats.position_fallback_reason = "the attention did not pass its keys/values to past_key_values"
                    rest[i + len(chunk) :] = sorted(rest[i + len(chunk) :], key=lambda c: entry_stage(site, c))
            except _ERRORS as err:
                if not check:
                    raise
                why = f"{type(err).__name__}: {err}"
                if check_query:  # try the batch again with every position computed
                    query_ok = False
                    stats.query_fallback_reason = why
                    continue
                if prep and record is None:  # block-by-block runs do not reproduce the model
                    stats.engine = "full"
                    stats.fallback_reason = why
                    continue
                if prep:
                    why = f"block-by-block with the recorded keys/values failed ({why})"
                # position start does not reproduce the model here: every cell from position 0
                by_pos = False
                stats.position_fallback_reason = why
                rest[i:] = sorted(rest[i:], key=lambda c: entry_stage(site, c))
                continue
            scores = _score(model, st, metric, hidden, start, positions, stats)
            del hidden
            stats.position_batches += start > 0
            finish(chunk, scores)
            i += len(chunk)
    if stats.engine == "fast" and not st.checked:
        stats.engine = "full"  # every run was in the first batch: full forwards only
    stats.seconds = time.perf_counter() - t0
    return stats, cancelled
