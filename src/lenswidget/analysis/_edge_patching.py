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
where an edge feeds it (the others read the corrupted, or their own run's, value).

When the prompts share their first ``k`` positions, patched runs compute only positions ``k..``
(exact: nothing differs from the corrupted run before ``k``; see :mod:`._edge_prefix`, checked
once per :class:`Runs`, with ``runs.memo["prefix"]`` the start that ran). The unpatched runs are
recorded by :mod:`._edge_runs`; the gradient methods (EAP, EAP-IG) live in :mod:`._edge_gradients`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from . import _edge_prefix as prefix
from ._circuit_graph import ComponentGraph, prune_to_paths
from ._edge_runs import (  # noqa: F401  (re-exported: the edge engines' shared names)
    Runs, Weights, _groups, _hook_names, _reader_edge_index, _writer_slots, capture_block_inputs,
    check_additive, final_metric, prepare, recording_hooks, run_to_final, stack_outputs,
)
from ._patching_engine import _ERRORS, _unembed, eval_metric, metric_positions

# float elements one batch of patched rows may hold in its buffers (~256 MB in float32), and
# what a row needs besides its changed writers, in [batch, pos, d_model] units (its activations)
MAX_ROW_ELEMENTS = 1 << 26
ROW_OVERHEAD = 24


# ------------------------------------------------------------------ patched runs
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
    activations) stay under ``MAX_ROW_ELEMENTS``. With a shared prefix ``k`` (``_edge_prefix``)
    they compute positions ``k..`` only; a metric that reads only positions ``< k`` (or identical
    prompts) gives the corrupted value without a run. A batch that fails from ``k`` is run
    again from position 0, as is everything after it (``runs.memo["prefix_fallback"]``)."""
    g = runs.graph
    n, p, d = (int(s) for s in runs.out_corr.shape[1:])
    out = torch.full((masks.shape[0],), runs.m_corr, dtype=torch.float64)
    k = prefix.start(runs)
    positions = metric_positions(metric, p)
    if k == p or (positions is not None and max(positions) < k):
        return out  # every run is the corrupted run where the metric reads
    masks = masks.cpu()
    if mode == "circuit":
        masks = prune_to_paths(g, masks)
    # rows with nothing left are the corrupted run; the others go by first patched layer
    layers = torch.tensor([r.layer for r in g.readers])[g.downstream]
    first = torch.where(masks, layers[None], g.n_layers + 1).min(1).values
    rows = [int(i) for i in torch.argsort(first, stable=True) if int(first[i]) <= g.n_layers]
    k_row = torch.zeros(masks.shape[0], len(g.writers)).index_add_(1, g.upstream, masks.float()).gt(0).sum(1)
    s = 0
    while s < len(rows):
        k = prefix.start(runs)
        per_row = lambda i: (int(k_row[i]) + ROW_OVERHEAD) * n * (p - k) * d  # noqa: E731
        e, big = s + 1, per_row(rows[s])
        while e < len(rows) and (e - s + 1) * max(big, per_row(rows[e])) <= MAX_ROW_ELEMENTS:
            big = max(big, per_row(rows[e]))
            e += 1
        idx = rows[s:e]
        try:
            out[idx] = _evaluate_rows(runs, masks[idx], mode, metric, k)
        except InputError:
            raise
        except _ERRORS as err:
            if not k:
                raise
            prefix.fallback(runs.memo, f"a patched batch from position {k} failed ({type(err).__name__}: {err})")
            continue  # the same rows again, from position 0
        s = e
    return out


def _evaluate_rows(runs: Runs, masks: torch.Tensor, mode: str, metric: Any, pos0: int = 0) -> torch.Tensor:
    """The rows' metrics (float64 [R]), computing positions ``pos0..`` only."""
    g, model, W = runs.graph, runs.weights.model, runs.weights
    dev = runs.out_corr.device
    masks = masks.to(dev)
    R = int(masks.shape[0])
    n, p_all, d = (int(s) for s in runs.out_corr.shape[1:])
    p = p_all - pos0  # the positions computed: every [.., n, pos, d] buffer below is cut to pos0..
    delta, out_corr, out_clean = (t[:, :, pos0:] for t in (runs.delta, runs.out_corr, runs.out_clean))
    base_of = lambda key: runs.base[key][:, pos0:]  # noqa: E731
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
    V[ri, si] = delta[slots[ri, si]]
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
                cv = _corrupted_value(runs, layer, kind)[:, pos0:]
                value = cv[None].expand(R, *cv.shape)
            else:  # ... or their own run's
                value = x.reshape(R, n, *x.shape[1:])
            if not len(ri):
                return value.reshape(x.shape)
            value = value.clone()
            base = base_of(("pre", layer))[None] if circuit else state["pre"].reshape(R, n, p, d)[ri]
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
        V[ri, si] = (out - out_corr[wi]) if circuit else (out_clean[wi] - out)

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
            return single_reader(layer, "mlp", x, base_of(("mlp", layer))[None])
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
    hidden = base_of(("pre", start)) if start < g.n_layers else base_of(("final", 0))
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        hidden = prefix.run_blocks(model, runs.memo, runs.block_inputs, n, p_all, hidden.repeat(R, 1, 1), start, pos0,
                                   each=lambda _l, h: state.__setitem__("pre", h))
        final = single_reader(g.n_layers, "logits", hidden, base_of(("final", 0))[None])
        positions = metric_positions(metric, p_all)
        after = prefix.after_positions(p_all, pos0, positions)
        part = _unembed(model, final if after is None else final[:, after])
        values = [eval_metric(metric, prefix.merged_logits(model, part[i * n : (i + 1) * n], runs.base[("final", 0)],
                                                           pos0, positions, runs.memo)) for i in range(R)]
    return torch.tensor(values, dtype=torch.float64)


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
