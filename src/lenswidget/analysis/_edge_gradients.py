"""Edge attribution by gradients (EAP, EAP-IG) behind :func:`~lenswidget.analysis.edge_attribution`.

A reader's input is made its own autograd node (an expanded view of the residual per head / KV
group, recomputed into ``hook_q``/``k``/``v`` through the model's own ``ln1`` and weights; a view
at the MLP's and the final norm's input), and a tensor hook contracts its gradient with every
upstream writer's clean-minus-corrupted output as soon as backward reaches it, so no reader
gradient is kept and nothing [n_edges, batch, pos, d_model] is built.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from ._circuit_graph import ComponentGraph
from ._edge_patching import (
    Runs, Weights, _groups, _hook_names, _reader_edge_index, capture_block_inputs, check_additive,
    recording_hooks, stack_outputs,
)
from ._patching_engine import _map_batch, eval_metric

# tokens one gradient batch may hold (its activations are kept for the backward pass)
MAX_GRAD_TOKENS = 2048
# up to this many tokens, the clean run shares the first gradient batch
SHARED_CLEAN_TOKENS = 512


def _rows(store: dict, start: int, stop: int) -> dict:
    """What :func:`recording_hooks` recorded, for batch rows ``start:stop`` only."""
    return {k: (v[:, start:stop] if k[0] == "heads" else v[start:stop]) for k, v in store.items()}


def gradient_scores(model: Any, graph: ComponentGraph, clean: torch.Tensor, corrupted: torch.Tensor,
                    metric: Callable, alphas: list[float]) -> tuple[torch.Tensor, Runs]:
    """EAP scores [n_edges] (float32, on the model's device): for every edge ``u -> r``,
    ``sum over prompts and positions of (out_u(clean) - out_u(corrupted)) . dm/dx_r``, the
    gradient averaged over runs whose embedding is ``corrupted + a (clean - corrupted)`` for
    each ``a`` in ``alphas`` (``alphas[0]`` must be 0: that run is the corrupted run).

    The clean run and the interpolation steps share forward/backward batches (one batch for a
    short prompt: the weights are read once for all of them), up to ``MAX_GRAD_TOKENS`` tokens.
    Also returns the :class:`Runs` recorded on the way (for exact evaluations)."""
    from .attribution import _scalar_metric

    assert alphas and alphas[0] == 0.0
    n, p = (int(x) for x in corrupted.shape)
    weights = Weights(model, graph)
    groups = _groups(graph)
    grad_metric = _scalar_metric(metric)
    dev = corrupted.device
    scores = torch.zeros(graph.n_edges, dtype=torch.float32, device=dev)
    per = max(1, MAX_GRAD_TOKENS // (n * p))
    # row groups of n prompts: "clean", then one per alpha; the opening batch holds alpha 0 (and,
    # for a short prompt, where a batch costs what reading the weights costs, the clean run too:
    # a longer clean run goes alone, without gradients, as its rows would double the backward)
    small = 2 * n * p <= SHARED_CLEAN_TOKENS
    items: list = (["clean"] if small else []) + list(alphas)
    first = max(2 if small else 1, per)
    batches = [items[:first]] + [items[k : k + per] for k in range(first, len(items), per)]
    ctx: dict = {}
    rec: dict = {}
    blocks: list = [None] * graph.n_layers
    if not small:
        store_c: dict = {}
        with torch.no_grad(), model.hooks(fwd_hooks=recording_hooks(graph, weights, store_c)):
            rec["m_clean"] = eval_metric(metric, model(clean))
        rec["clean"] = store_c
    co = n if small else 0  # where the corrupted rows sit in the opening batch

    def contract(layer: int, kind: str, steps: torch.Tensor):
        first_r, count, n_up = groups[(layer, kind)]
        idx = _reader_edge_index(graph, first_r, count, n_up, dev).reshape(-1)

        def fn(grad: torch.Tensor) -> None:  # grad [count, rows, p, d]
            g = grad.reshape(count, -1, n, p, grad.shape[-1])[:, steps].sum(1)
            E = ctx["delta"][:n_up].reshape(n_up, -1).float()
            s = E @ g.reshape(count, -1).float().T  # [n_up, count]
            scores.index_add_(0, idx, s.T.reshape(-1), alpha=1.0 / len(alphas))
        return fn

    def run(batch: list) -> None:
        N = len(batch) * n
        steps = torch.tensor([i for i, a in enumerate(batch) if a != "clean"], device=dev)
        tokens = torch.cat([clean if a == "clean" else corrupted for a in batch])
        box: dict = {}

        def embed_hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            x = x.detach()
            if "embeds" not in rec:  # the opening batch: corrupted rows at co, clean rows at 0 or cached
                c0 = x[co : co + n].clone()
                e1 = x[:n] if small else rec["clean"][("pre", 0)]
                rec["embeds"] = (c0, e1 - c0)
            if any(a not in ("clean", 0.0) for a in batch):
                c0, d0 = rec["embeds"]
                x = torch.cat([x[i * n : (i + 1) * n] if a in ("clean", 0.0) else c0 + a * d0 for i, a in enumerate(batch)])
            box["x0"] = x.requires_grad_(True)
            return box["x0"]

        def pre_hook(layer: int):
            def hook(x: torch.Tensor, hook: Any = None) -> None:
                ctx[("pre", layer)] = x
            return hook

        def qkv_hook(layer: int, kind: str):
            def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
                res = ctx[("pre", layer)]
                count = groups[(layer, kind)][1]
                xe = res.unsqueeze(0).expand(count, *res.shape)
                xe.register_hook(contract(layer, kind, steps))
                return weights.project(layer, kind, xe[None]).to(x.dtype)
            return hook

        def view_hook(layer: int, kind: str):
            def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
                y = x.view_as(x)
                fn = contract(layer, kind, steps)
                y.register_hook(lambda gr: fn(gr[None]))
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
        store: dict = {}
        opening = "corr" not in rec
        if opening:
            hooks = recording_hooks(graph, weights, store) + hooks
        captured: list = [None] * graph.n_layers
        handles = capture_block_inputs(model, captured) if opening else []
        try:
            with torch.enable_grad(), model.hooks(fwd_hooks=hooks), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                logits = model(tokens)
                values = {}
                for i, a in enumerate(batch):
                    part = logits[i * n : (i + 1) * n]
                    values[a] = eval_metric(metric, part.detach()) if a == "clean" else grad_metric(part)
                if opening:
                    rec["corr"] = _rows(store, co, co + n)
                    if small:
                        rec["clean"], rec["m_clean"] = _rows(store, 0, n), values["clean"]
                    rec["m_corr"] = float(values[0.0].detach())
                    for i, (args, kwargs) in enumerate(captured):
                        blocks[i] = (_map_batch(args, lambda t: t[co : co + n], N),
                                     {k: _map_batch(v, lambda t: t[co : co + n], N) for k, v in kwargs.items()})
                    out_clean, out_corr = stack_outputs(graph, rec["clean"]), stack_outputs(graph, rec["corr"])
                    check_additive(graph, out_clean, out_corr, rec["clean"][("final", 0)], rec["corr"][("final", 0)])
                    ctx["delta"] = out_clean - out_corr
                    rec["out"] = (out_clean, out_corr)
                total = sum(v for a, v in values.items() if a != "clean")
                torch.autograd.grad(total, [box["x0"]], allow_unused=True)
        finally:
            for h in handles:
                h.remove()
            for k in [k for k in ctx if k != "delta"]:
                del ctx[k]

    for b in batches:
        run(b)
    out_clean, out_corr = rec["out"]
    base = {k: v for k, v in rec["corr"].items() if k[0] in ("pre", "mlp", "final")}
    runs = Runs(graph, weights, clean, corrupted, out_clean, out_corr, base, blocks,
                rec["m_clean"], rec["m_corr"], metric)
    runs.memo["delta"] = ctx["delta"]
    return scores, runs
