"""Edge attribution by gradients (EAP, EAP-IG) behind :func:`~lenswidget.analysis.edge_attribution`.

The score of edge ``u -> r`` is ``sum over prompts and positions of delta_u . dm/dx_r``, with
``delta_u`` [batch, pos, d_model] the writer's clean-minus-corrupted output and ``x_r`` the input
of reader ``r``. The forward is the model's own (hooks change no value); the readers' gradients
are taken where they are cheap:

* a head's (KV group's) query/key/value input: the value at ``attn.hook_q``/``k``/``v`` goes
  through :class:`_PerHeadInput`, whose forward returns it unchanged and whose backward turns its
  gradient [rows, pos, G, d_head] into one gradient per head of the residual that head reads
  (``W_Q[g]``, then the vector-Jacobian product of the model's own ``ln1`` at that residual,
  for all G heads at once), and returns their sum to the residual, as the model's graph would;
* an MLP's input (``ln2.hook_in``) and the final residual (``ln_final.hook_in``): a tensor hook.

Runs stop at the final residual; the metric's logits are computed only at the positions it
reads. The gradients of a layer's readers are summed over the interpolation steps in the batch
and contracted with the writers' changes in one matmul per layer,
``delta[:n_up] [n_up, batch*pos*d] @ grads [batch*pos*d, readers]``; when the steps take several
batches they are accumulated first (one contraction in all) if that buffer fits
``MAX_ACC_ELEMENTS``. Nothing [n_edges, batch, pos, d_model] is built.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ._circuit_graph import ComponentGraph
from ._edge_patching import (
    Runs, Weights, _groups, _hook_names, _reader_edge_index, capture_block_inputs, check_additive,
    final_metric, recording_hooks, run_to_final, stack_outputs,
)
from ._patching_engine import _map_batch, metric_positions

# tokens one gradient batch may hold (its activations are kept for the backward pass)
MAX_GRAD_TOKENS = 1024
# up to this many tokens, the clean run shares the first gradient batch
SHARED_CLEAN_TOKENS = 512
# float elements of the buffer that sums the readers' gradients over batches (1 GiB in float32);
# beyond it, each batch is contracted on its own
MAX_ACC_ELEMENTS = 1 << 28


class _PerHeadInput(torch.autograd.Function):
    """Identity on a ``hook_q``/``k``/``v`` value whose backward gives each head's residual its own
    gradient (see the module docstring) and hands those [G, rows, pos, d] to ``sink``."""

    @staticmethod
    def forward(ctx, res: torch.Tensor, value: torch.Tensor, spec: tuple) -> torch.Tensor:  # noqa: ANN001
        ctx.spec = spec
        ctx.save_for_backward(res)
        return value.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        (res,) = ctx.saved_tensors
        weights, layer, kind, sink = ctx.spec
        W = weights.get(f"W_{kind.upper()}", layer)  # [G, d, dh]
        norm = _norm(weights, layer, res)
        if norm is None:  # any norm: autograd through the model's own ln1, on one copy per head
            gy = torch.einsum("npge,gde->gnpd", grad.to(W.dtype), W)  # [G, rows, p, d]
            gx = _ln_vjp(weights.model.blocks[layer].ln1, res, gy)
        else:  # LayerNorm / RMSNorm, in closed form (checked against autograd by _norm)
            gx = _norm_vjp(norm, W, grad)
        sink.add(layer, kind, gx)
        return gx.sum(0).to(res.dtype), None, None


def _ln_vjp(ln: Any, res: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """[G, *res.shape]: the vector-Jacobian product of ``ln`` at ``res`` with each ``gy[g]``."""
    G = gy.shape[0]
    with torch.enable_grad():
        xe = res.detach().unsqueeze(0).expand(G, *res.shape).reshape(G * res.shape[0], *res.shape[1:])
        xe.requires_grad_(True)
        y = ln(xe)
        (gx,) = torch.autograd.grad(y, xe, gy.reshape(y.shape).to(y.dtype))
    return gx.reshape(G, *res.shape)


def _norm(weights: Weights, layer: int, res: torch.Tensor) -> dict | None:
    """The closed form of ``ln1`` at ``res``: ``ln1(x) = w * xn + b`` with ``xn`` the
    RMS-normalized (``centred``: mean-removed) ``x`` times ``s = 1 / sqrt(mean + eps)``. ``w`` is
    read off the module (``(ln1(x) - ln1(-x)) / 2 = w * xn``, least squares over positions), and
    the closed-form gradient is checked once per layer against autograd through the module;
    None (use autograd) for any other norm or a failed check."""
    cfg = weights.model.cfg
    kind = str(getattr(cfg, "normalization_type", "") or "")
    if kind not in ("LN", "LNPre", "RMS", "RMSPre") or not res.dtype.is_floating_point:
        return None
    ln = weights.model.blocks[layer].ln1
    key = ("norm", layer)
    centred = kind.startswith("LN")
    eps = float(getattr(cfg, "eps", 1e-5))
    with torch.no_grad():
        x = res.detach().float()
        xc = x - x.mean(-1, keepdim=True) if centred else x
        s = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps)
        xn = xc * s
        if key not in weights._cache:
            t = res.detach().reshape(-1, res.shape[-1])[:64]
            D = (ln(t[None]) - ln(-t[None]))[0].float() / 2
            nt = xn.reshape(-1, xn.shape[-1])[:64]
            w = (D * nt).sum(0) / nt.pow(2).sum(0).clamp_min(1e-30)
            norm = {"w": w, "centred": centred, "s": s[:1], "xn": xn[:1]}
            g = torch.randn(2, *res[:1].shape, generator=torch.Generator().manual_seed(0)).to(res.device, res.dtype)
            want = _ln_vjp(ln, res[:1], g).float()
            got = _closed_vjp(norm, g.float())
            ok = bool(((got - want).abs().max() <= 1e-4 * (1 + want.abs().max())).item())
            weights._cache[key] = w if ok else None
    w = weights._cache[key]
    return None if w is None else {"w": w, "centred": centred, "s": s, "xn": xn}


def _closed_vjp(norm: dict, gy: torch.Tensor) -> torch.Tensor:
    """``s * (a - mean(a) - xn * mean(a * xn))`` with ``a = w * gy`` [G, rows, p, d] (no mean(a)
    term for RMSNorm)."""
    a = gy * norm["w"]
    xn, s = norm["xn"], norm["s"]
    out = a - xn * (a * xn).mean(-1, keepdim=True)
    if norm["centred"]:
        out = out - a.mean(-1, keepdim=True)
    return out * s


def _norm_vjp(norm: dict, W: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """:func:`_closed_vjp` of ``grad`` [rows, p, G, dh] through ``W`` [G, d, dh], with the weight
    folded into ``W`` and the per-position scalars taken in the head dimension."""
    Wf = W.float() * norm["w"][None, :, None]  # [G, d, dh]
    g = grad.float()
    xn, s = norm["xn"], norm["s"]
    d = xn.shape[-1]
    a = torch.einsum("npge,gde->gnpd", g, Wf)  # [G, rows, p, d]
    m2 = torch.einsum("npge,npge->gnp", g, torch.einsum("npd,gde->npge", xn, Wf)) / d
    a.sub_(xn[None] * m2[..., None])
    if norm["centred"]:
        a.sub_((torch.einsum("npge,ge->gnp", g, Wf.sum(1)) / d)[..., None])
    return a.mul_(s[None])


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

    The interpolation steps (and, for a short prompt, the clean run) share forward/backward
    batches of up to ``MAX_GRAD_TOKENS`` tokens. Also returns the :class:`Runs` recorded on the
    way (for exact evaluations)."""
    from .attribution import _scalar_metric

    assert alphas and alphas[0] == 0.0
    n, p = (int(x) for x in corrupted.shape)
    weights = Weights(model, graph)
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

        def pre_hook(layer: int):
            def hook(x: torch.Tensor, hook: Any = None) -> None:
                ctx[("pre", layer)] = x
            return hook

        def qkv_hook(layer: int, kind: str):
            def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
                return _PerHeadInput.apply(ctx[("pre", layer)], x.detach(), (weights, layer, kind, sink))
            return hook

        def view_hook(layer: int, kind: str):
            def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
                y = x.view_as(x)
                y.register_hook(lambda gr: sink.add(layer, kind, gr[None]))
                return y
            return hook

        hooks = [("blocks.0.hook_resid_pre", embed_hook)]
        for l in range(graph.n_layers):
            names = _hook_names(graph, l)
            hooks.append((names["pre"], pre_hook(l)))
            hooks += [(names[k], qkv_hook(l, k)) for k in ("q", "k", "v")]
            if graph.has_mlp:
                hooks.append((names["mlp_in"], view_hook(l, "mlp")))
        hooks.append(("ln_final.hook_in", view_hook(graph.n_layers, "logits")))
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
