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
positions the metric reads. A row keeps only what its edges need: the changes of the writers
with an edge in its set ([R, k, batch, pos, d_model], k of them, not every writer), one matmul
per layer for all q/k/v inputs (and one per MLP), and a head's input recomputed only in the rows
where an edge feeds it (the others read the corrupted, or their own run's, value). The
gradient methods (EAP, EAP-IG) live in :mod:`._edge_gradients`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError
from ._circuit_graph import ComponentGraph, prune_to_paths
from ._patching_engine import _map_batch, _unembed_at, eval_metric, metric_positions

# float elements one batch of patched rows may hold in its buffers (~256 MB in float32), and
# what a row needs besides its changed writers, in [batch, pos, d_model] units (its activations)
MAX_ROW_ELEMENTS = 1 << 26
ROW_OVERHEAD = 24


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


def recording_hooks(graph: ComponentGraph, weights: Weights, store: dict, rows: slice = slice(None)) -> list:
    """Hooks that record (detached, batch rows ``rows`` only) every writer's output into one
    buffer ``store["out"]`` [n_writers, n, p, d] (allocated at the embedding) and every reader
    site's input (``("pre", l)``, ``("mlp", l)``, ``("final", 0)``: [n, p, d], copies)."""
    hooks: list = []
    n_w = len(graph.writers)

    def site(key: Any):
        def hook(x: torch.Tensor, hook: Any = None) -> None:
            store[key] = x[rows].detach().clone()
        return hook

    def embed(x: torch.Tensor, hook: Any = None) -> None:
        e = x[rows].detach().clone()
        store[("pre", 0)] = e
        store["out"] = e.new_empty((n_w, *e.shape))
        store["out"][0] = e

    def heads(l: int):
        first, _ = _writer_slots(graph, l)

        def hook(z: torch.Tensor, hook: Any = None) -> None:
            with torch.no_grad():
                store["out"][first : first + graph.n_heads] = weights.head_out(l, z[rows].detach())
        return hook

    def mlp_out(l: int):
        _, slot = _writer_slots(graph, l)

        def hook(x: torch.Tensor, hook: Any = None) -> None:
            store["out"][slot] = x[rows].detach()
        return hook

    hooks.append(("blocks.0.hook_resid_pre", embed))
    for l in range(graph.n_layers):
        names = _hook_names(graph, l)
        if l:
            hooks.append((names["pre"], site(("pre", l))))
        hooks.append((names["z"], heads(l)))
        if graph.has_mlp:
            hooks.append((names["mlp_in"], site(("mlp", l))))
            hooks.append((names["mlp_out"], mlp_out(l)))
    hooks.append(("ln_final.hook_in", site(("final", 0))))
    return hooks


def stack_outputs(graph: ComponentGraph, store: dict) -> torch.Tensor:
    """[n_writers, n, p, d]: every writer's output, as :func:`recording_hooks` recorded it."""
    return store["out"]


class _Stop(Exception):
    """Raised at ``ln_final.hook_in`` to end a forward at the final residual."""


def run_to_final(model: Any, tokens: torch.Tensor, hooks: list) -> torch.Tensor:
    """The final residual [batch, p, d] (the value at ``ln_final.hook_in`` after ``hooks``) of a
    forward with ``hooks``; the forward stops there (no full logits are computed)."""
    box: dict = {}

    def stop(x: torch.Tensor, hook: Any = None) -> None:
        box["final"] = x
        raise _Stop

    try:
        with model.hooks(fwd_hooks=list(hooks) + [("ln_final.hook_in", stop)]):
            model(tokens)
    except _Stop:
        pass
    return box["final"]


def final_metric(model: Any, metric: Any, final: torch.Tensor, positions: list[int] | None, grad: bool = False):
    """The metric of a run from its final residual, unembedded only at ``positions``: a float,
    or (``grad``) the metric's tensor."""
    logits = _unembed_at(model, final, positions)
    return metric(logits) if grad else eval_metric(metric, logits)


def capture_block_inputs(model: Any, store: list):
    """Forward pre-hooks keeping each block's extra positional/keyword inputs; returns handles."""
    handles = []
    for i, block in enumerate(model.blocks):
        def pre(mod, args, kwargs, i=i):  # noqa: ANN001
            store[i] = (tuple(args[1:]), dict(kwargs))
        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
    return handles


def check_additive(graph: ComponentGraph, delta: torch.Tensor, out_clean: torch.Tensor,
                   final_clean: torch.Tensor, final_corr: torch.Tensor) -> None:
    """InputError unless the final residual's clean-minus-corrupted change is the sum of the
    writers' changes ``delta`` [n_writers, n, p, d] (false with post-attention norms or scaled
    residual branches)."""
    want = (final_clean - final_corr).float()
    err = float((want - delta.sum(0).float()).norm())
    if not err <= 2e-3 * (float(want.norm()) + float(out_clean.float().norm()) * 1e-3) + 1e-5:
        raise InputError(
            "this model's residual stream is not the sum of its heads' and MLPs' outputs (e.g. a "
            f"post-attention norm); edge attribution needs additive writes (mismatch {err:.3g})"
        )


def prepare(model: Any, graph: ComponentGraph, clean: torch.Tensor, corrupted: torch.Tensor, metric: Any) -> Runs:
    """Run both prompts once (no gradients, stopped at the final residual), recording what every
    evaluation needs."""
    weights = Weights(model, graph)
    stores: list[dict] = [{}, {}]
    blocks: list = [None] * graph.n_layers
    positions = metric_positions(metric, int(clean.shape[1]))
    with torch.no_grad():
        m_clean = final_metric(model, metric, run_to_final(model, clean, recording_hooks(graph, weights, stores[0])), positions)
        handles = capture_block_inputs(model, blocks)
        try:
            final = run_to_final(model, corrupted, recording_hooks(graph, weights, stores[1]))
        finally:
            for h in handles:
                h.remove()
        m_corr = final_metric(model, metric, final, positions)
    out_clean, out_corr = stack_outputs(graph, stores[0]), stack_outputs(graph, stores[1])
    runs = Runs(graph, weights, clean, corrupted, out_clean, out_corr,
                {k: v for k, v in stores[1].items() if k != "out"}, blocks, m_clean, m_corr, metric)
    check_additive(graph, runs.delta, out_clean, stores[0][("final", 0)], stores[1][("final", 0)])
    return runs


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


def _row_slots(g: ComponentGraph, masks: torch.Tensor) -> torch.Tensor:
    """LongTensor [R, k]: per row, ascending, the writers with an edge in its set (padded with
    ``n_writers``); ``k`` the most any row has."""
    n_w = len(g.writers)
    used = torch.zeros(masks.shape[0], n_w, device=masks.device).index_add_(1, g.upstream.to(masks.device), masks.float()) > 0
    k = max(1, int(used.sum(1).max()))
    w = torch.where(used, torch.arange(n_w, device=masks.device)[None], n_w)
    return torch.sort(w, dim=1).values[:, :k]


def evaluate(runs: Runs, masks: torch.Tensor, mode: str, metric: Any) -> torch.Tensor:
    """The metric of each row's patched run: ``masks`` BoolTensor [R, n_edges] (edges in the
    row's set), ``mode`` ``"circuit"`` or ``"patch"`` (module docstring). Returns float64 [R].

    Rows go by first patched layer, in batches whose buffers (each row's changed writers, its
    activations) stay under ``MAX_ROW_ELEMENTS``."""
    g = runs.graph
    n, p, d = (int(s) for s in runs.out_corr.shape[1:])
    out = torch.full((masks.shape[0],), runs.m_corr, dtype=torch.float64)
    masks = masks.cpu()
    if mode == "circuit":
        masks = prune_to_paths(g, masks)
    # rows with nothing left are the corrupted run; the others go by first patched layer
    layers = torch.tensor([r.layer for r in g.readers])[g.downstream]
    first = torch.where(masks, layers[None], g.n_layers + 1).min(1).values
    rows = [int(i) for i in torch.argsort(first, stable=True) if int(first[i]) <= g.n_layers]
    k_row = torch.zeros(masks.shape[0], len(g.writers)).index_add_(1, g.upstream, masks.float()).gt(0).sum(1)
    per_row = lambda i: (int(k_row[i]) + ROW_OVERHEAD) * n * p * d  # noqa: E731
    s = 0
    while s < len(rows):
        e, big = s + 1, per_row(rows[s])
        while e < len(rows) and (e - s + 1) * max(big, per_row(rows[e])) <= MAX_ROW_ELEMENTS:
            big = max(big, per_row(rows[e]))
            e += 1
        idx = rows[s:e]
        out[idx] = _evaluate_rows(runs, masks[idx], mode, metric)
        s = e
    return out


def _evaluate_rows(runs: Runs, masks: torch.Tensor, mode: str, metric: Any) -> torch.Tensor:
    g, model, W = runs.graph, runs.weights.model, runs.weights
    dev = runs.out_corr.device
    masks = masks.to(dev)
    R = int(masks.shape[0])
    n, p, d = (int(s) for s in runs.out_corr.shape[1:])
    H = g.n_heads
    l0 = _first_layer(g, masks)
    if l0 > g.n_layers:  # nothing patched anywhere
        return torch.full((R,), runs.m_corr, dtype=torch.float64)
    circuit = mode == "circuit"
    fmask = masks.to(runs.out_corr.dtype)
    groups = _groups(g)
    slots = _row_slots(g, masks)  # [R, k] writer of each slot
    k = slots.shape[1]
    # V[r, s]: the change that writer slots[r, s] carries into row r's readers:
    # circuit: out_u(run) - out_u(corr); patch: out_u(clean) - out_u(run)
    V = runs.out_corr.new_zeros((R, k, n, p, d))
    first_w = 1 + min(l0, g.n_layers) * (H + (1 if g.has_mlp else 0))
    known = slots < (1 if circuit else first_w)  # fixed before the first patched layer: delta
    ri, si = known.nonzero(as_tuple=True)
    V[ri, si] = runs.delta[slots[ri, si]]
    state: dict = {}

    def change(layer: int, kinds: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The added input of the readers of (layer, kinds): (add [R, C, n, p, d], active [R, C],
        offsets of each kind in C); one matmul over the row's slots below the readers' n_up."""
        key = ("idx", layer, kinds)
        if key not in runs.memo:
            parts, offs, off = [], {}, 0
            for kind in kinds:
                first, count, n_up = groups[(layer, kind)]
                parts.append(_reader_edge_index(g, first, count, n_up, dev))
                offs[kind] = (off, count)
                off += count
            runs.memo[key] = (torch.cat(parts), offs)
        idx, offs = runs.memo[key]
        n_up = idx.shape[1]
        below = slots < n_up
        kk = max(1, int(below.sum(1).max()))
        cols = slots[:, :kk].clamp(max=n_up - 1)
        M = fmask[:, idx]  # [R, C, n_up]
        M = M.gather(2, cols[:, None, :].expand(R, M.shape[1], kk)) * below[:, None, :kk]
        add = torch.bmm(M, V[:, :kk].reshape(R, kk, -1)).reshape(R, -1, n, p, d)
        return add, M.ne(0).any(-1), offs

    def qkv_hook(layer: int, kind: str):
        def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            if state.get("attn_layer") != layer:  # the layer's first q/k/v hook: one matmul for all three
                state["attn_layer"], state["attn"] = layer, change(layer, ("q", "k", "v"))
            add, active, offs = state["attn"]
            off, count = offs[kind]
            ri, ci = active[:, off : off + count].nonzero(as_tuple=True)
            if circuit:  # readers without circuit inputs read the corrupted residual
                cv = _corrupted_value(runs, layer, kind)
                value = cv[None].expand(R, *cv.shape)
            else:  # ... or their own run's
                value = x.reshape(R, n, *x.shape[1:])
            if not len(ri):
                return value.reshape(x.shape)
            value = value.clone()
            base = runs.base[("pre", layer)][None] if circuit else state["pre"].reshape(R, n, p, d)[ri]
            xin = base + add[ri, off + ci]  # [P, n, p, d]
            ln = model.blocks[layer].ln1(xin.reshape(-1, p, d)).reshape(len(ri), n * p, d)
            proj = torch.bmm(ln, W.get(f"W_{kind.upper()}", layer).to(ln.dtype)[ci])  # [P, n*p, dh]
            b = W.get(f"b_{kind.upper()}", layer)
            if b is not None:
                proj = proj + b.to(proj.dtype)[ci][:, None]
            value[ri, :, :, ci] = proj.reshape(len(ri), n, p, -1).to(value.dtype)
            return value.reshape(x.shape)
        return hook

    def set_changes(layer_slot0: int, count: int, out_of) -> None:
        """Write V for every slot holding writer ``layer_slot0 + j`` (j < count); ``out_of(ri, j)``
        gives those rows' outputs [P, n, p, d]."""
        sel = (slots >= layer_slot0) & (slots < layer_slot0 + count)
        ri, si = sel.nonzero(as_tuple=True)
        if not len(ri):
            return
        wi = slots[ri, si]
        out = out_of(ri, wi - layer_slot0)
        V[ri, si] = (out - runs.out_corr[wi]) if circuit else (runs.out_clean[wi] - out)

    def z_hook(layer: int):
        def hook(z: torch.Tensor, hook: Any = None) -> None:
            first, _ = _writer_slots(g, layer)
            zr = z.reshape(R, n, p, H, -1)
            WO = W.get("W_O", layer).to(z.dtype)

            def out_of(ri: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
                o = torch.bmm(zr[ri, :, :, hi].reshape(len(ri), n * p, -1), WO[hi]).reshape(len(ri), n, p, d)
                return o if W.scale[layer] == 1.0 else o * W.scale[layer]
            set_changes(first, H, out_of)
        return hook

    def single_reader(layer: int, kind: str, x: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """The input of an mlp / the final residual [R*n, p, d], from ``base`` [R or 1, n, p, d]."""
        add, active, _ = change(layer, (kind,))
        out = base.expand(R, n, p, d).clone() if circuit else x.reshape(R, n, p, d).clone()
        rows = active[:, 0]
        out[rows] = out[rows] + add[rows, 0]
        return out.reshape(R * n, p, d).to(x.dtype)

    def mlp_in_hook(layer: int):
        def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            return single_reader(layer, "mlp", x, runs.base[("mlp", layer)][None])
        return hook

    def mlp_out_hook(layer: int):
        def hook(x: torch.Tensor, hook: Any = None) -> None:
            _, slot = _writer_slots(g, layer)
            xr = x.reshape(R, n, p, d)
            set_changes(slot, 1, lambda ri, _j: xr[ri])
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
        final = single_reader(g.n_layers, "logits", hidden, runs.base[("final", 0)][None])
        logits = _unembed_at(model, final, metric_positions(metric, p))
    return torch.tensor([eval_metric(metric, logits[i * n : (i + 1) * n]) for i in range(R)], dtype=torch.float64)


def _corrupted_value(runs: Runs, layer: int, kind: str) -> torch.Tensor:
    """The hook_q/k/v value [n, p, G, dh] of the corrupted run (the model's own ``ln1`` and
    weights on the recorded residual), computed once."""
    key = ("value", layer, kind)
    if key not in runs.memo:
        base = runs.base[("pre", layer)]
        G = runs.weights.get(f"W_{kind.upper()}", layer).shape[0]
        with torch.no_grad():
            runs.memo[key] = runs.weights.project(layer, kind, base[None, None].expand(1, G, *base.shape))
    return runs.memo[key]
