"""Edge attribution by gradients (EAP, EAP-IG) behind :func:`~lenswidget.analysis.edge_attribution`.

The score of edge ``u -> r`` is ``sum over prompts and positions of delta_u . dm/dx_r``, with
``delta_u`` [batch, pos, d_model] the writer's clean-minus-corrupted output and ``x_r`` the input
of reader ``r``. The forward is the model's own (hooks change no value); the readers' gradients
are taken where they are cheap:

* a head's (KV group's) query/key/value input: the value at ``attn.hook_q``/``k``/``v`` goes
  through :class:`~._edge_head_grads._PerHeadInput`, whose forward returns it unchanged and
  whose backward turns its gradient [rows, pos, G, d_head] into one gradient per head of the
  residual that head reads (``W_Q[g]``, then the vector-Jacobian product of the model's own
  ``ln1`` at that residual, for all G heads at once), and returns their sum to the residual, as
  the model's graph would;
* an MLP's input (``ln2.hook_in``) and the final residual (``ln_final.hook_in``): a tensor hook.

Runs stop at the final residual; the metric's logits are computed only at the positions it
reads. The gradients of a layer's readers are summed over the interpolation steps in the batch
and contracted with the writers' changes in one matmul per layer,
``delta[:n_up] [n_up, batch*pos*d] @ grads [batch*pos*d, readers]``; when the steps take several
batches they are accumulated first (one contraction in all) if that buffer fits
``MAX_ACC_ELEMENTS``. Nothing [n_edges, batch, pos, d_model] is built.

When the clean and corrupted prompts share their first ``k`` positions (and the batch is not
short), the clean run and every forward/backward compute only positions ``k..``, attending to the
corrupted run's keys and values before ``k``: exact, because ``delta_u`` is zero there and the
interpolated embeddings equal the corrupted ones (:mod:`._edge_prefix`, :func:`_prefix_scores`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import InputError
from . import _edge_prefix as prefix
from ._circuit_graph import ComponentGraph
from ._edge_head_grads import _PerHeadInput
from ._edge_runs import (
    Runs, Weights, _groups, _hook_names, _reader_edge_index, _Stop, capture_block_inputs, check_additive,
    corrupted_forward, final_metric, recording_hooks, run_to_final, stack_outputs,
)
from ._patching_engine import _ERRORS, _map_batch, _unembed, eval_metric, metric_positions

# tokens one gradient batch may hold (its activations are kept for the backward pass)
MAX_GRAD_TOKENS = 1024
# up to this many tokens, the clean run shares the first gradient batch
SHARED_CLEAN_TOKENS = 512
# float elements of the buffer that sums the readers' gradients over batches (1 GiB in float32);
# beyond it, each batch is contracted on its own
MAX_ACC_ELEMENTS = 1 << 28


class _Sink:
    """Collects each reader group's gradient [count, rows, p, d] and adds ``delta . grad`` into
    ``scores``: per layer, as soon as its groups are in (``accumulate=False``), or summed over
    batches first and contracted by :meth:`finish`."""

    def __init__(self, graph: ComponentGraph, n: int, scores: torch.Tensor, scale: float, accumulate: bool):
        self.graph, self.n, self.scores, self.scale, self.accumulate = graph, n, scores, scale, accumulate
        self.groups = _groups(graph)
        self.kinds = {l: {k for (ll, k) in self.groups if ll == l} for l in range(graph.n_layers + 1)}
        self.pending: dict[int, dict[str, torch.Tensor]] = {}
        self.delta: torch.Tensor | None = None  # [n_writers, n*p*d] float32, set before the first backward
        self.steps: torch.Tensor | None = None  # the row groups of the batch that are steps (None: all)

    def add(self, layer: int, kind: str, grad: torch.Tensor) -> None:
        count = grad.shape[0]
        g = grad.reshape(count, -1, self.n, *grad.shape[2:])
        g = (g if self.steps is None else g.index_select(1, self.steps)).sum(1)  # [count, n, p, d]
        parts = self.pending.setdefault(layer, {})
        parts[kind] = parts[kind] + g if kind in parts else g
        if not self.accumulate and len(parts) == len(self.kinds[layer]):
            self.flush(layer)

    def flush(self, layer: int) -> None:
        parts = self.pending.pop(layer, {})
        if not parts:
            return
        kinds = sorted(parts)
        E = self.delta
        G = torch.cat([parts[k].reshape(parts[k].shape[0], -1) for k in kinds]).to(E.dtype)  # [C, npd]
        n_up = max(self.groups[(layer, k)][2] for k in kinds)
        S = E[:n_up] @ G.T  # [n_up, C]
        off = 0
        for k in kinds:
            first, count, nu = self.groups[(layer, k)]
            idx = _reader_edge_index(self.graph, first, count, nu, S.device).reshape(-1)
            self.scores.index_add_(0, idx, S[:nu, off : off + count].T.reshape(-1).to(self.scores.dtype), alpha=self.scale)
            off += count

    def finish(self) -> None:
        for layer in sorted(self.pending):
            self.flush(layer)


def gradient_scores(model: Any, graph: ComponentGraph, clean: torch.Tensor, corrupted: torch.Tensor,
                    metric: Callable, alphas: list[float]) -> tuple[torch.Tensor, Runs]:
    """EAP scores [n_edges] (float32, on the model's device): for every edge ``u -> r``,
    ``sum over prompts and positions of (out_u(clean) - out_u(corrupted)) . dm/dx_r``, the
    gradient averaged over runs whose embedding is ``corrupted + a (clean - corrupted)`` for
    each ``a`` in ``alphas`` (``alphas[0]`` must be 0: that run is the corrupted run).

    When the prompts share a long prefix and the batch is not short (``SHARED_CLEAN_TOKENS``),
    the runs compute only the positions after it (:func:`_prefix_scores`), else every position.
    Also returns the :class:`Runs` recorded on the way (for exact evaluations);
    ``runs.memo["grad_prefix"]`` is the position the gradient runs started at."""
    assert alphas and alphas[0] == 0.0
    n, p = (int(x) for x in corrupted.shape)
    weights = Weights(model, graph)
    k, reason = prefix.planned_start(model, clean, corrupted)
    small = 2 * n * p <= SHARED_CLEAN_TOKENS
    if k and not small:
        got = _prefix_scores(model, graph, weights, clean, corrupted, metric, alphas, k, reason)
        if not isinstance(got, str):
            return got
        k, reason = 0, got
    scores, runs = _full_scores(model, graph, weights, clean, corrupted, metric, alphas)
    # a short batch: the patched runs may still start at k (recorded and checked when first used)
    prefix.attach(runs.memo, k, None, reason)
    short = f"a short batch ({2 * n * p} tokens): one pass over every position costs less" if k else ""
    runs.memo["grad_prefix"], runs.memo["grad_fallback"] = 0, reason or short
    return scores, runs


def _prefix_scores(model: Any, graph: ComponentGraph, weights: Weights, clean: torch.Tensor, corrupted: torch.Tensor,
                   metric: Callable, alphas: list[float], k: int, reason: str) -> tuple[torch.Tensor, Runs] | str:
    """:func:`gradient_scores` computing positions ``k..`` only (``k`` the prompts' shared prefix,
    ``0 < k``; see :mod:`._edge_prefix`): one corrupted forward without gradients records every
    writer's output and reader input, the blocks' inputs and the keys/values; the clean run and
    the forward/backward batches of the interpolation steps then run block by block from the
    embeddings at ``k..`` (equal for every step before ``k``), attending to those keys/values, and
    ``delta[..., k:, :]`` is contracted with their gradients (``delta`` is zero before ``k``).
    The step-0 rows (the corrupted prompts from ``k``) must reproduce the corrupted forward before
    the first backward. Returns why not (a str) when a run fails or that check does."""
    from .attribution import _scalar_metric

    n, p = (int(x) for x in corrupted.shape)
    P, L, d = p - k, graph.n_layers, int(model.cfg.d_model)
    grad_metric = _scalar_metric(metric)
    positions = metric_positions(metric, p)
    memo: dict = {}
    rec: dict = {}
    blocks: list = [None] * L
    with torch.no_grad():
        final_corr, kv, reason = corrupted_forward(model, graph, weights, corrupted, rec, blocks, k, reason)
        m_corr = final_metric(model, metric, final_corr, positions)
    if kv is None or not kv.complete(L):
        return reason or "the attention did not pass its keys/values to past_key_values"
    prefix.attach(memo, k, kv, reason)
    out_corr = stack_outputs(graph, rec)
    out_clean = out_corr.clone()  # positions < k: the corrupted outputs (the same tokens)
    after = prefix.after_positions(p, k, positions)

    def value(final: torch.Tensor, m: Callable, grad: bool = False):
        part = _unembed(model, final if after is None else final[:, after])
        if grad:  # the [n, p, vocab] logits are freed at once, not kept for the backward
            return _PartMetric.apply(part, lambda x: m(prefix.merged_logits(model, x, final_corr, k, positions, memo)))
        return eval_metric(m, prefix.merged_logits(model, part, final_corr, k, positions, memo))

    scores = torch.zeros(graph.n_edges, dtype=torch.float32, device=corrupted.device)
    base = {key: v for key, v in rec.items() if key != "out"}
    if k == p:  # identical prompts: every delta is zero, so is every score
        runs = Runs(graph, weights, clean, corrupted, out_clean, out_corr, base, blocks, m_corr, m_corr, metric, memo)
        memo["grad_prefix"], memo["grad_fallback"] = prefix.decide(memo, p), ""
        return scores, runs
    try:
        with torch.no_grad():
            c0, e1 = rec[("pre", 0)][:, k:], embedding(model, clean)[:, k:]
            with model.hooks(fwd_hooks=recording_hooks(graph, weights, {}, out=out_clean[:, :, k:])):
                final_clean = prefix.run_blocks(model, memo, blocks, n, p, e1, 0, k)
            m_clean = value(final_clean, metric)
        delta = out_clean - out_corr
        check_additive(graph, delta[:, :, k:], out_clean[:, :, k:], final_clean, final_corr[:, k:])
        per = max(1, MAX_GRAD_TOKENS // (n * P))
        batches = [alphas[i : i + per] for i in range(0, len(alphas), per)]
        if after == []:  # the metric reads only positions < k: nothing can move it
            batches = []
        accumulate = len(batches) > 1 and len(graph.readers) * n * P * d <= MAX_ACC_ELEMENTS
        sink = _Sink(graph, n, scores, 1.0 / len(alphas), accumulate)
        sink.delta = delta[:, :, k:].reshape(delta.shape[0], -1).float()
        for batch in batches:
            ctx: dict = {}
            x0 = torch.cat([c0 + a * (e1 - c0) for a in batch]).requires_grad_(True)
            with torch.enable_grad():
                with model.hooks(fwd_hooks=_reader_hooks(graph, weights, sink, ctx)):
                    final = prefix.run_blocks(model, memo, blocks, n, p, x0, 0, k)
                if batch[0] == 0.0:
                    err = prefix.mismatch(final[:n], final_corr[:, k:])
                    if err:
                        return err
                final = _tapped(final, sink, L, "logits")
                total = sum(value(final[i * n : (i + 1) * n], grad_metric, grad=True) for i in range(len(batch)))
                torch.autograd.grad(total, [x0], allow_unused=True)
        sink.finish()
    except InputError:
        raise
    except _ERRORS as err:
        return f"a run from position {k} failed ({type(err).__name__}: {err})"
    runs = Runs(graph, weights, clean, corrupted, out_clean, out_corr, base, blocks, m_clean, m_corr, metric, memo)
    memo["delta"], memo["grad_prefix"], memo["grad_fallback"] = delta, k, ""
    if batches:  # the step-0 rows were the check
        prefix.decide(memo, k)
    return scores, runs


class _PartMetric(torch.autograd.Function):
    """``fn(part)`` (a 0-d tensor) whose gradient with respect to ``part`` is taken in the forward
    (a small autograd pass through ``fn`` alone) and kept: the logits ``fn`` builds from ``part``
    ([n, p, vocab], NaN where the metric does not read) are freed at once instead of being saved
    for the backward by the metric's indexing, once per interpolation step in the batch."""

    @staticmethod
    def forward(ctx, part: torch.Tensor, fn: Callable) -> torch.Tensor:  # noqa: ANN001
        with torch.enable_grad():
            leaf = part.detach().requires_grad_(True)
            value = fn(leaf)
            (grad,) = torch.autograd.grad(value, leaf, allow_unused=True)
        ctx.save_for_backward(torch.zeros_like(part) if grad is None else grad)
        return value.detach()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: ANN001, ANN205
        (grad,) = ctx.saved_tensors
        return grad_out * grad, None


def embedding(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """The residual entering block 0 (``blocks.0.hook_resid_pre``) [n, p, d]; nothing else runs."""
    box: dict = {}

    def stop(x: torch.Tensor, hook: Any = None) -> None:
        box["x"] = x.detach()
        raise _Stop

    try:
        with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", stop)]):
            model(tokens)
    except _Stop:
        pass
    return box["x"]


def _tapped(x: torch.Tensor, sink: _Sink, layer: int, kind: str) -> torch.Tensor:
    """``x`` as a view whose gradient [rows, p, d] goes to ``sink`` as reader group (layer, kind)."""
    y = x.view_as(x)
    y.register_hook(lambda gr: sink.add(layer, kind, gr[None]))
    return y


def _reader_hooks(graph: ComponentGraph, weights: Weights, sink: _Sink, ctx: dict) -> list:
    """The hooks that hand every reader's gradient to ``sink``: each layer's residual kept in
    ``ctx``, :class:`_PerHeadInput` on ``hook_q``/``k``/``v``, a tap on each MLP's input (the
    final residual is tapped by the caller)."""
    def pre_hook(layer: int):
        def hook(x: torch.Tensor, hook: Any = None) -> None:
            ctx[("pre", layer)] = x
        return hook

    def qkv_hook(layer: int, kind: str):
        def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            return _PerHeadInput.apply(ctx[("pre", layer)], x.detach(), (weights, layer, kind, sink))
        return hook

    hooks = []
    for l in range(graph.n_layers):
        names = _hook_names(graph, l)
        hooks.append((names["pre"], pre_hook(l)))
        hooks += [(names[k], qkv_hook(l, k)) for k in ("q", "k", "v")]
        if graph.has_mlp:
            hooks.append((names["mlp_in"], lambda x, hook=None, l=l: _tapped(x, sink, l, "mlp")))
    return hooks


def _full_scores(model: Any, graph: ComponentGraph, weights: Weights, clean: torch.Tensor, corrupted: torch.Tensor,
                 metric: Callable, alphas: list[float]) -> tuple[torch.Tensor, Runs]:
    """:func:`gradient_scores` over every position. The interpolation steps (and, for a short
    prompt, the clean run) share forward/backward batches of up to ``MAX_GRAD_TOKENS`` tokens."""
    from .attribution import _scalar_metric

    n, p = (int(x) for x in corrupted.shape)
    grad_metric = _scalar_metric(metric)
    positions = metric_positions(metric, p)
    dev = corrupted.device
    per = max(1, MAX_GRAD_TOKENS // (n * p))
    # row groups of n prompts: "clean", then one per alpha; the opening batch holds alpha 0 (and,
    # for a short prompt, where a batch costs what reading the weights costs, the clean run too:
    # a longer clean run goes alone, without gradients, as its rows would double the backward)
    small = 2 * n * p <= SHARED_CLEAN_TOKENS
    items: list = (["clean"] if small else []) + list(alphas)
    first = max(2 if small else 1, per)
    batches = [items[:first]] + [items[k : k + per] for k in range(first, len(items), per)]
    d = int(model.cfg.d_model)
    scores = torch.zeros(graph.n_edges, dtype=torch.float32, device=dev)
    accumulate = len(batches) > 1 and len(graph.readers) * n * p * d <= MAX_ACC_ELEMENTS
    sink = _Sink(graph, n, scores, 1.0 / len(alphas), accumulate)
    rec: dict = {"clean": {}, "corr": {}}
    blocks: list = [None] * graph.n_layers
    if not small:
        with torch.no_grad():
            final = run_to_final(model, clean, recording_hooks(graph, weights, rec["clean"]))
            rec["m_clean"] = final_metric(model, metric, final, positions)
    co = n if small else 0  # where the corrupted rows sit in the opening batch

    def run(batch: list) -> None:
        N = len(batch) * n
        opening = "embeds" not in rec
        step_rows = [i for i, a in enumerate(batch) if a != "clean"]
        sink.steps = None if len(step_rows) == len(batch) else torch.tensor(step_rows, device=dev)
        tokens = torch.cat([clean if a == "clean" else corrupted for a in batch])
        ctx: dict = {}

        def embed_hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            x = x.detach()
            if opening:  # corrupted rows at co, clean rows at 0 or recorded by the clean run
                c0 = x[co : co + n].clone()
                e1 = x[:n] if small else rec["clean"][("pre", 0)]
                rec["embeds"] = (c0, e1 - c0)
            if any(a not in ("clean", 0.0) for a in batch):
                c0, d0 = rec["embeds"]
                x = torch.cat([x[i * n : (i + 1) * n] if a in ("clean", 0.0) else c0 + a * d0 for i, a in enumerate(batch)])
            ctx["x0"] = x.requires_grad_(True)
            return ctx["x0"]

        hooks = [("blocks.0.hook_resid_pre", embed_hook)] + _reader_hooks(graph, weights, sink, ctx)
        hooks.append(("ln_final.hook_in", lambda x, hook=None: _tapped(x, sink, graph.n_layers, "logits")))
        captured: list = [None] * graph.n_layers
        handles = []
        if opening:
            rows_c = slice(co, co + n)
            hooks = recording_hooks(graph, weights, rec["corr"], rows_c) + hooks
            if small:
                hooks = recording_hooks(graph, weights, rec["clean"], slice(0, n)) + hooks
            handles = capture_block_inputs(model, captured)
        try:
            with torch.enable_grad():
                final = run_to_final(model, tokens, hooks)
        finally:
            for h in handles:
                h.remove()
        if opening:
            for i, (args, kwargs) in enumerate(captured):
                blocks[i] = (_map_batch(args, lambda t: t[co : co + n], N),
                             {k: _map_batch(v, lambda t: t[co : co + n], N) for k, v in kwargs.items()})
            out_clean, out_corr = stack_outputs(graph, rec["clean"]), stack_outputs(graph, rec["corr"])
            delta = out_clean - out_corr
            check_additive(graph, delta, out_clean, rec["clean"][("final", 0)], rec["corr"][("final", 0)])
            rec["delta"] = delta
            sink.delta = delta.reshape(delta.shape[0], -1).float()
        with torch.enable_grad():
            values = {}
            for i, a in enumerate(batch):
                part = final[i * n : (i + 1) * n]
                if a == "clean":
                    rec["m_clean"] = final_metric(model, metric, part.detach(), positions)
                else:
                    values[a] = final_metric(model, grad_metric, part, positions, grad=True)
            if opening:
                rec["m_corr"] = float(values[0.0].detach())
            torch.autograd.grad(sum(values.values()), [ctx["x0"]], allow_unused=True)

    for b in batches:
        run(b)
    sink.finish()
    base = {k: v for k, v in rec["corr"].items() if k != "out"}
    runs = Runs(graph, weights, clean, corrupted, stack_outputs(graph, rec["clean"]), stack_outputs(graph, rec["corr"]),
                base, blocks, rec["m_clean"], rec["m_corr"], metric)
    runs.memo["delta"] = rec["delta"]
    return scores, runs
