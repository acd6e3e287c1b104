"""The machinery behind edge attribution and exact edge patching (:mod:`.circuits`).

Every node's output is additive in the residual stream: the input of a reader ``r`` (a head's
query/key/value input before ``ln1``, an MLP's input before ``ln2``, the final residual before
``ln_final``) is ``bias + sum_u out_u`` over the writers ``u`` before it. An edge ``u -> r`` is
that one term. Two exact evaluations change terms:

* **circuit** (``mode="circuit"``, the standard EAP-IG / MIB evaluation): every edge in the set
  carries its upstream node's output *in this run*, every other edge the node's output on the
  corrupted prompt: ``x_r = x_r(corrupted) + sum_{u->r in C} (out_u(run) - out_u(corrupted))``,
  with ``out_embed(run)`` the clean embedding. All edges give the clean run, none the corrupted.
* **patch** (``mode="patch"``, an edge patched into the running corrupted model, what EAP
  estimates): ``x_r = x_r(run) + sum_{u->r in C} (out_u(clean) - out_u(run))``, everything else
  computed as the model computes it.

Each reader's changed input goes through the model's own norm (``ln1``/``ln2``/``ln_final``) and
weights for that reader only: a head's query is ``ln1(x_q) @ W_Q[h] + b_Q[h]`` written into
``attn.hook_q`` (before rotary, which the model then applies), and likewise for keys and values
(per KV group on grouped-query models). Patched runs call the blocks one by one from the first
layer a patch can change, with the inputs (attention masks, rotary tables) the model's own
forward gave them, many circuits ("rows") in one batch; logits are computed only at the
positions the metric reads. The gradient methods (EAP, EAP-IG) live in :mod:`._edge_gradients`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import InputError
from ._circuit_graph import ComponentGraph, prune_to_paths
from ._patching_engine import _map_batch, _unembed_at, eval_metric, metric_positions

# float elements one batch of patched rows may hold in its buffers (~256 MB in float32)
MAX_ROW_ELEMENTS = 1 << 26


# ------------------------------------------------------------------ weights and readers
class Weights:
    """Per-layer attention weights, read once: W_Q [H, d, dh], W_K/W_V [G, d, dh], W_O [H, dh, d]."""

    def __init__(self, model: Any, graph: ComponentGraph):
        self.model = model
        self.graph = graph
        self._cache: dict = {}
        self.scale = [float(getattr(model.blocks[l].attn, "_result_contribution_scale", 1.0)) for l in range(graph.n_layers)]

    def get(self, name: str, layer: int) -> torch.Tensor | None:
        """``blocks[layer].attn.{name}`` (``W_Q``, ``b_K``, ...), detached, read once per layer."""
        key = (name, layer)
        if key not in self._cache:
            with torch.no_grad():
                t = getattr(self.model.blocks[layer].attn, name, None)
            self._cache[key] = None if t is None else t.detach()
        return self._cache[key]

    def project(self, layer: int, kind: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` [R, G, n, p, d] (one residual per head / KV group) -> the hook_q/k/v value
        [R*n, p, G, dh]: the model's own ``ln1`` then that head's projection."""
        R, G, n, p, d = x.shape
        ln = self.model.blocks[layer].ln1(x.reshape(R * G * n, p, d)).reshape(R, G, n, p, d)
        W = self.get(f"W_{kind.upper()}", layer).to(ln.dtype)
        out = torch.einsum("rgnpd,gde->rnpge", ln, W)
        b = self.get(f"b_{kind.upper()}", layer)
        if b is not None:
            out = out + b.to(out.dtype)
        return out.reshape(R * n, p, G, -1)

    def head_out(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """Each head's write ``z @ W_O`` from ``z`` [N, p, H, dh] -> [H, N, p, d]."""
        out = torch.einsum("nphe,hed->hnpd", z, self.get("W_O", layer).to(z.dtype))
        return out if self.scale[layer] == 1.0 else out * self.scale[layer]


def _groups(graph: ComponentGraph) -> dict[tuple[int, str], tuple[int, int, int]]:
    """(layer, kind) -> (first reader index, number of readers, n_up) for q/k/v/mlp groups."""
    out: dict[tuple[int, str], tuple[int, int, int]] = {}
    for i, r in enumerate(graph.readers):
        key = (r.layer, r.kind)
        if key in out:
            first, count, n_up = out[key]
            out[key] = (first, count + 1, n_up)
        else:
            out[key] = (i, 1, r.n_up)
    return out


def _writer_slots(graph: ComponentGraph, layer: int) -> tuple[int, int]:
    """(first head writer index, mlp writer index or -1) of ``layer``."""
    per = graph.n_heads + (1 if graph.has_mlp else 0)
    first = 1 + layer * per
    return first, (first + graph.n_heads if graph.has_mlp else -1)


def _reader_edge_index(graph: ComponentGraph, first: int, count: int, n_up: int, device: Any) -> torch.Tensor:
    starts = torch.tensor([graph.readers[first + i].start for i in range(count)], device=device)
    return starts[:, None] + torch.arange(n_up, device=device)[None]


# ------------------------------------------------------------------ the two unpatched runs
@dataclass
class Runs:
    """The clean and corrupted runs an evaluation needs.

    ``out_clean``/``out_corr``: [n_writers, n, p, d] every writer's output; ``base``: each reader
    site's input on the corrupted run (``("pre", l)``, ``("mlp", l)``, ``("final", 0)``:
    [n, p, d]); ``block_inputs``: each block's extra inputs on the corrupted run.
    """

    graph: ComponentGraph
    weights: Weights
    clean: torch.Tensor
    corrupted: torch.Tensor
    out_clean: torch.Tensor
    out_corr: torch.Tensor
    base: dict
    block_inputs: list
    m_clean: float
    m_corr: float
    metric: Any = None
    memo: dict = field(default_factory=dict)

    @property
    def delta(self) -> torch.Tensor:
        """[n_writers, n, p, d]: clean minus corrupted output of every writer."""
        if "delta" not in self.memo:
            self.memo["delta"] = self.out_clean - self.out_corr
        return self.memo["delta"]


def _hook_names(graph: ComponentGraph, l: int) -> dict[str, str]:
    return {
        "pre": f"blocks.{l}.hook_resid_pre", "z": f"blocks.{l}.attn.hook_z",
        "q": f"blocks.{l}.attn.hook_q", "k": f"blocks.{l}.attn.hook_k", "v": f"blocks.{l}.attn.hook_v",
        "mlp_in": f"blocks.{l}.ln2.hook_in", "mlp_out": f"blocks.{l}.hook_mlp_out",
    }


def recording_hooks(graph: ComponentGraph, weights: Weights, store: dict) -> list:
    """Hooks that record (detached) every writer's output and every reader site's input."""
    hooks: list = []

    def rec(key: Any, fn: Callable | None = None):
        def hook(x: torch.Tensor, hook: Any = None) -> None:
            with torch.no_grad():
                store[key] = (fn(x) if fn else x).detach()
        return hook

    hooks.append(("blocks.0.hook_resid_pre", rec(("pre", 0))))
    for l in range(graph.n_layers):
        names = _hook_names(graph, l)
        if l:
            hooks.append((names["pre"], rec(("pre", l))))
        hooks.append((names["z"], rec(("heads", l), lambda z, l=l: weights.head_out(l, z))))
        if graph.has_mlp:
            hooks.append((names["mlp_in"], rec(("mlp", l))))
            hooks.append((names["mlp_out"], rec(("mlp_out", l))))
    hooks.append(("ln_final.hook_in", rec(("final", 0))))
    return hooks


def stack_outputs(graph: ComponentGraph, store: dict) -> torch.Tensor:
    """[n_writers, n, p, d] from what :func:`recording_hooks` recorded."""
    parts = [store[("pre", 0)][None]]
    for l in range(graph.n_layers):
        parts.append(store[("heads", l)])
        if graph.has_mlp:
            parts.append(store[("mlp_out", l)][None])
    return torch.cat(parts)


def capture_block_inputs(model: Any, store: list):
    """Forward pre-hooks keeping each block's extra positional/keyword inputs; returns handles."""
    handles = []
    for i, block in enumerate(model.blocks):
        def pre(mod, args, kwargs, i=i):  # noqa: ANN001
            store[i] = (tuple(args[1:]), dict(kwargs))
        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
    return handles


def check_additive(graph: ComponentGraph, out_clean: torch.Tensor, out_corr: torch.Tensor,
                   final_clean: torch.Tensor, final_corr: torch.Tensor) -> None:
    """InputError unless the final residual's clean-minus-corrupted change is the sum of the
    writers' changes (false with post-attention norms or scaled residual branches)."""
    want = (final_clean - final_corr).float()
    got = (out_clean - out_corr).float().sum(0)
    err = float((want - got).norm())
    if not err <= 2e-3 * (float(want.norm()) + float(out_clean.float().norm()) * 1e-3) + 1e-5:
        raise InputError(
            "this model's residual stream is not the sum of its heads' and MLPs' outputs (e.g. a "
            f"post-attention norm); edge attribution needs additive writes (mismatch {err:.3g})"
        )


def prepare(model: Any, graph: ComponentGraph, clean: torch.Tensor, corrupted: torch.Tensor, metric: Any) -> Runs:
    """Run both prompts once (no gradients), recording what every evaluation needs."""
    weights = Weights(model, graph)
    stores: list[dict] = [{}, {}]
    blocks: list = [None] * graph.n_layers
    with torch.no_grad():
        with model.hooks(fwd_hooks=recording_hooks(graph, weights, stores[0])):
            m_clean = eval_metric(metric, model(clean))
        handles = capture_block_inputs(model, blocks)
        try:
            with model.hooks(fwd_hooks=recording_hooks(graph, weights, stores[1])):
                m_corr = eval_metric(metric, model(corrupted))
        finally:
            for h in handles:
                h.remove()
    out_clean, out_corr = stack_outputs(graph, stores[0]), stack_outputs(graph, stores[1])
    check_additive(graph, out_clean, out_corr, stores[0][("final", 0)], stores[1][("final", 0)])
    base = {k: v for k, v in stores[1].items() if k[0] in ("pre", "mlp", "final")}
    return Runs(graph, weights, clean, corrupted, out_clean, out_corr, base, blocks, m_clean, m_corr, metric)


# ------------------------------------------------------------------ patched runs
def _tiled_block_inputs(runs: Runs, layer: int, rows: int) -> tuple[tuple, dict]:
    key = ("block", layer, rows)
    if key not in runs.memo:
        args, kwargs = runs.block_inputs[layer]
        n = int(runs.corrupted.shape[0])
        reps = rows // n

        def tile(t: torch.Tensor) -> torch.Tensor:
            return t.repeat(reps, *([1] * (t.ndim - 1))) if reps > 1 else t

        nb = n if n > 1 else -1
        kwargs = {k: _map_batch(v, tile, nb) for k, v in kwargs.items()}
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        runs.memo[key] = (_map_batch(args, tile, nb), kwargs)
    return runs.memo[key]


def _first_layer(graph: ComponentGraph, masks: torch.Tensor) -> int:
    layers = torch.tensor([r.layer for r in graph.readers], device=masks.device)[graph.downstream.to(masks.device)]
    hit = masks.any(0)
    return int(layers[hit].min()) if bool(hit.any()) else graph.n_layers + 1


def evaluate(runs: Runs, masks: torch.Tensor, mode: str, metric: Any) -> torch.Tensor:
    """The metric of each row's patched run: ``masks`` BoolTensor [R, n_edges] (edges in the
    row's set), ``mode`` ``"circuit"`` or ``"patch"`` (module docstring). Returns float64 [R]."""
    g = runs.graph
    n, p, d = (int(s) for s in runs.out_corr.shape[1:])
    n_w = len(g.writers)
    per_row = (n_w + 3 * g.n_heads + 1) * n * p * d
    chunk = max(1, MAX_ROW_ELEMENTS // max(1, per_row))
    out = torch.full((masks.shape[0],), runs.m_corr, dtype=torch.float64)
    if mode == "circuit":
        masks = prune_to_paths(g, masks)
    # rows with nothing left are the corrupted run; the others go by first patched layer
    layers = torch.tensor([r.layer for r in g.readers])[g.downstream]
    first = torch.where(masks.cpu(), layers[None], g.n_layers + 1).min(1).values
    rows = [int(i) for i in torch.argsort(first, stable=True) if int(first[i]) <= g.n_layers]
    for s in range(0, len(rows), chunk):
        idx = rows[s : s + chunk]
        out[idx] = _evaluate_rows(runs, masks[idx], mode, metric)
    return out


def _evaluate_rows(runs: Runs, masks: torch.Tensor, mode: str, metric: Any) -> torch.Tensor:
    g, model, W = runs.graph, runs.weights.model, runs.weights
    dev = runs.out_corr.device
    masks = masks.to(dev)
    R = int(masks.shape[0])
    n, p, d = (int(s) for s in runs.out_corr.shape[1:])
    l0 = _first_layer(g, masks)
    if l0 > g.n_layers:  # nothing patched anywhere
        return torch.full((R,), runs.m_corr, dtype=torch.float64)
    circuit = mode == "circuit"
    fmask = masks.to(runs.out_corr.dtype)
    groups = _groups(g)
    # V[:, u]: circuit: out_u(run) - out_u(corr); patch: out_u(clean) - out_u(run)
    V = runs.out_corr.new_zeros((R, len(g.writers), n, p, d))
    first_w = 1 + min(l0, g.n_layers) * (g.n_heads + (1 if g.has_mlp else 0))
    V[:, :first_w] = runs.delta[:first_w] if not circuit else 0
    if circuit:
        V[:, 0] = runs.delta[0]
    state: dict = {}

    def reader_input(layer: int, kind: str, base: torch.Tensor) -> torch.Tensor:
        first, count, n_up = groups[(layer, kind)]
        idx = _reader_edge_index(g, first, count, n_up, dev)
        M = fmask[:, idx]  # [R, count, n_up]
        add = torch.bmm(M, V[:, :n_up].reshape(R, n_up, -1)).reshape(R, count, n, p, d)
        return base + add

    def qkv_hook(layer: int, kind: str):
        def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            base = runs.base[("pre", layer)][None, None] if circuit else state["pre"].reshape(R, 1, n, p, d)
            return W.project(layer, kind, reader_input(layer, kind, base)).to(x.dtype)
        return hook

    def z_hook(layer: int):
        def hook(z: torch.Tensor, hook: Any = None) -> None:
            out = W.head_out(layer, z).reshape(g.n_heads, R, n, p, d).transpose(0, 1)
            first, _ = _writer_slots(g, layer)
            ref = runs.out_corr if circuit else runs.out_clean
            sl = slice(first, first + g.n_heads)
            V[:, sl] = (out - ref[sl][None]) if circuit else (ref[sl][None] - out)
        return hook

    def mlp_in_hook(layer: int):
        def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            base = runs.base[("mlp", layer)][None, None] if circuit else x.reshape(R, 1, n, p, d)
            return reader_input(layer, "mlp", base).reshape(R * n, p, d).to(x.dtype)
        return hook

    def mlp_out_hook(layer: int):
        def hook(x: torch.Tensor, hook: Any = None) -> None:
            _, slot = _writer_slots(g, layer)
            out = x.reshape(R, n, p, d)
            V[:, slot] = (out - runs.out_corr[slot][None]) if circuit else (runs.out_clean[slot][None] - out)
        return hook

    hooks = []
    for l in range(l0, g.n_layers):
        names = _hook_names(g, l)
        hooks += [(names[k], qkv_hook(l, k)) for k in ("q", "k", "v")] + [(names["z"], z_hook(l))]
        if g.has_mlp:
            hooks += [(names["mlp_in"], mlp_in_hook(l)), (names["mlp_out"], mlp_out_hook(l))]
    start = min(l0, g.n_layers)
    hidden = runs.base[("pre", start)] if start < g.n_layers else runs.base[("final", 0)]
    hidden = hidden.repeat(R, 1, 1)
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        for l in range(start, g.n_layers):
            state["pre"] = hidden
            args, kwargs = _tiled_block_inputs(runs, l, R * n)
            out = model.blocks[l](hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, (tuple, list)) else out
        base = runs.base[("final", 0)][None, None] if circuit else hidden.reshape(R, 1, n, p, d)
        final = reader_input(g.n_layers, "logits", base).reshape(R * n, p, d)
        logits = _unembed_at(model, final, metric_positions(metric, p))
    return torch.tensor([eval_metric(metric, logits[i * n : (i + 1) * n]) for i in range(R)], dtype=torch.float64)
