"""The clean and corrupted runs behind edge attribution and exact edge patching (:mod:`.circuits`).

:func:`prepare` runs both prompt batches once (no gradients, stopped at the final residual) and
records what every evaluation needs (:class:`Runs`): every writer's output ``[n_writers, n, p,
d_model]`` (``embed``, each head's ``z @ W_O``, each MLP's output), every reader site's input on
the corrupted run, each block's extra inputs, and, when the prompts share a long enough prefix,
the corrupted run's keys and values for the shared-prefix runs of :mod:`._edge_prefix`. The
writers' changes must add up to the final residual's (:func:`check_additive`): edges are terms of
that sum. :class:`Weights` reads the attention weights once and projects a reader's residual
through the model's own ``ln1`` and that head's weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError
from . import _edge_prefix as prefix
from ._circuit_graph import ComponentGraph
from ._patching_engine import _ERRORS, _unembed_at, eval_metric, metric_positions


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


def recording_hooks(graph: ComponentGraph, weights: Weights, store: dict, rows: slice = slice(None),
                    out: torch.Tensor | None = None) -> list:
    """Hooks that record (detached, batch rows ``rows`` only) every writer's output into one
    buffer ``store["out"]`` [n_writers, n, p, d] (allocated at the embedding, or ``out``) and every
    reader site's input (``("pre", l)``, ``("mlp", l)``, ``("final", 0)``: [n, p, d], copies)."""
    hooks: list = []
    n_w = len(graph.writers)

    def site(key: Any):
        def hook(x: torch.Tensor, hook: Any = None) -> None:
            store[key] = x[rows].detach().clone()
        return hook

    def embed(x: torch.Tensor, hook: Any = None) -> None:
        e = x[rows].detach().clone()
        store[("pre", 0)] = e
        store["out"] = e.new_empty((n_w, *e.shape)) if out is None else out
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
    k, reason = prefix.planned_start(model, clean, corrupted)
    with torch.no_grad():
        m_clean = final_metric(model, metric, run_to_final(model, clean, recording_hooks(graph, weights, stores[0])), positions)
        final, kv, reason = corrupted_forward(model, graph, weights, corrupted, stores[1], blocks, k, reason)
        m_corr = final_metric(model, metric, final, positions)
    out_clean, out_corr = stack_outputs(graph, stores[0]), stack_outputs(graph, stores[1])
    runs = Runs(graph, weights, clean, corrupted, out_clean, out_corr,
                {key: v for key, v in stores[1].items() if key != "out"}, blocks, m_clean, m_corr, metric)
    prefix.attach(runs.memo, k, kv, reason)
    check_additive(graph, runs.delta, out_clean, stores[0][("final", 0)], stores[1][("final", 0)])
    return runs


def corrupted_forward(model: Any, graph: ComponentGraph, weights: Weights, corrupted: torch.Tensor,
                      store: dict, blocks: list, k: int, reason: str) -> tuple[torch.Tensor, Any, str]:
    """The corrupted forward (no gradients): records into ``store`` (:func:`recording_hooks`) and
    ``blocks`` (each block's inputs) and, for ``k > 0``, every layer's keys and values. Returns
    (final residual [n, p, d], the :class:`~._position_start.PrefixKV` or None, why it is None).
    A forward that fails with the keys/values handed over runs again without."""
    handles = capture_block_inputs(model, blocks)
    try:
        try:
            with prefix.recording(model, int(corrupted.shape[0]), k) as kv:
                final = run_to_final(model, corrupted, recording_hooks(graph, weights, store))
        except _ERRORS as err:
            if not k:
                raise
            kv, reason = None, f"the forward with the keys/values recorded failed ({type(err).__name__}: {err})"
            store.clear()
            final = run_to_final(model, corrupted, recording_hooks(graph, weights, store))
    finally:
        for h in handles:
            h.remove()
    return final, kv, reason
