"""Position-start runs for the patching engine: a run patched at position ``p`` computes only
positions ``p`` and later.

Attention is causal, so a patch at position ``p`` (a ``pos`` / ``dest_pos`` cell) cannot change
anything at positions ``< p``: there every activation, and so every key and value, is the base
run's. A position-start run therefore feeds the blocks only the rows ``p..`` of the residual
stream (``[rows, n_pos - p, d_model]``) and lets each attention layer attend to the base run's
keys and values for positions ``< p`` followed by its own for ``p..``. What the blocks need for
that:

* **Keys and values of the base run** (:class:`PrefixKV`), recorded once per layer in the
  engine's self-check pass (the unpatched prompt batch run block by block), exactly as the
  attention hands them to a KV cache: after the rotary embedding, ``[n, kv_heads, n_pos, d_head]``.
  They reach the attention through the ``past_key_values`` argument that TransformerLens's
  reimplemented attention bridges (``_update_kv_cache``: Llama/SmolLM2, GPT-2, ...) and Hugging
  Face's attention modules read: ``update(k, v, layer)`` returns the prefix followed by ``k, v``.
  TransformerLens's ``NativeAttention`` (the toy model) takes no cache; for it
  :func:`_native_forward` is its own forward with the prefix added (the same projections,
  rotary, grouped-query repeat, soft-cap and softmax; ``pattern_fn`` is still the bridge's
  ``hook_pattern``), installed only while a position-start batch runs.
* **Positional inputs for positions ``p..``** (:func:`cut_inputs`): the captured block inputs with
  a sequence axis (rotary ``position_embeddings`` / ``position_ids``, ``cache_position``) cut to
  ``p..``, a ``[.., n_pos, n_pos]`` mask cut to its query rows ``p..`` (all key columns kept).

Every activation a patch hook sees is then cut the same way (``_patching_sites.slice_act``;
``hook_k`` / ``hook_v`` see the new positions only, ``hook_pattern`` is
``[rows, head, n_pos - p, n_pos]``). The engine checks the whole mechanism once per sweep:
unpatched rows started at ``p`` must reproduce the base logits at ``p..``, else it runs those
cells from position 0.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch


class PrefixKV:
    """The base run's keys and values per layer, handed to attention as a cache.

    ``record`` mode (the self-check pass, ``n`` rows at full length): ``update`` keeps ``k, v``
    (``[n, kv_heads, n_pos, d_head]``) for the current ``layer`` and returns them unchanged.
    Prefix mode (``start > 0``): ``update`` returns the recorded positions ``< start``, tiled to
    the batch's rows, followed by ``k, v`` along the position axis. The engine sets ``layer``
    before each block call (so the layer index the attention passes is not relied on).
    """

    def __init__(self, n: int):
        self.n = n
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.layer = 0
        self.start = 0
        self.record = True
        # read-positions-only mode (see _native_forward): the positions of the given rows whose
        # outputs are needed; None for all. The engine sets it for the last block only.
        self.queries: list[int] | None = None
        self._tiled: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def complete(self, n_layers: int) -> bool:
        return all(layer in self.keys for layer in range(n_layers))

    def _prefix(self, layer: int, start: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (layer, start, rows)
        if key not in self._tiled:
            reps = rows // self.n
            k = self.keys[layer][:, :, :start]
            v = self.values[layer][:, :, :start]
            self._tiled[key] = (k.repeat(reps, 1, 1, 1), v.repeat(reps, 1, 1, 1))
        return self._tiled[key]

    def update(self, k: torch.Tensor, v: torch.Tensor, *args: Any, **kwargs: Any):
        if self.record:
            self.keys[self.layer] = k[: self.n].detach()
            self.values[self.layer] = v[: self.n].detach()
            return k, v
        if self.start == 0:
            return k, v
        pk, pv = self._prefix(self.layer, self.start, int(k.shape[0]))
        return torch.cat([pk.to(k.dtype), k], dim=-2), torch.cat([pv.to(v.dtype), v], dim=-2)

    # what Hugging Face code may ask a cache; a prefix is all this one holds
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if self.record else self.start


def _causal_bias(attn: Any, seq: int, kv: int, like: torch.Tensor,
                 rows: list[int] | None = None) -> torch.Tensor:
    """``[seq, kv]`` (``[len(rows), kv]`` for the query rows ``rows``): -inf where query row
    ``i`` (position ``kv - seq + i``) may not look, 0 elsewhere; cached on the attention module
    per shape, rows, dtype and device."""
    cache = attn.__dict__.setdefault("_lenswidget_causal_bias", {})
    key = (seq, kv, None if rows is None else tuple(rows), like.dtype, like.device)
    if key not in cache:
        mask = attn.causal_mask[kv - seq : kv, :kv].to(like.device)
        if rows is not None:
            mask = mask[rows]
        cache[key] = torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(
            mask, float("-inf"))
    return cache[key]


def _native_forward(self: Any, hidden_states: torch.Tensor, attention_mask: Any = None,
                    position_ids: Any = None, pattern_fn: Any = None,
                    past_key_values: Any = None, **kwargs: Any):
    """``NativeAttention.forward`` with ``past_key_values`` (a :class:`PrefixKV`): queries for the
    given rows, keys/values for the prefix and the given rows, the causal mask's rows
    ``prefix..`` (see the module docstring).

    With ``past_key_values.queries`` (positions of the given rows; the engine sets it in the last
    block when the metric declares what it reads), only those positions get queries, attention
    and the output projection: every position still gives its key and value, the pattern is
    ``[rows, head, len(queries), kv]``, and the output is 0 at the other positions (nothing reads
    them after the last block)."""
    from transformer_lens.model_bridge.sources.native.model import apply_softcap

    if attention_mask is not None:
        raise RuntimeError("position start: NativeAttention with an attention_mask")
    batch, seq, _ = hidden_states.shape
    queries = getattr(past_key_values, "queries", None)
    q_in = hidden_states if queries is None else hidden_states[:, queries]
    q = self.q(q_in).view(batch, q_in.shape[1], self.n_heads, self.d_head).transpose(1, 2)
    k = self.k(hidden_states).view(batch, seq, self.n_kv_heads, self.d_head).transpose(1, 2)
    v = self.v(hidden_states).view(batch, seq, self.n_kv_heads, self.d_head).transpose(1, 2)
    if self.rotary is not None:
        if position_ids is not None and position_ids.shape[0] > 1 and bool(
            (position_ids == position_ids[:1]).all()
        ):  # the rows' positions agree: one row of rotary tables broadcasts to all
            position_ids = position_ids[:1]
        if queries is None:
            q, k = self.rotary.apply_rope(q, k, position_ids=position_ids)
        else:  # queries at their own positions: apply_rope rotates a pair with the same
            # positions, so each goes with a one-head slice of itself whose result is dropped
            ids = torch.arange(seq, device=q.device)[None] if position_ids is None else position_ids
            q = self.rotary.apply_rope(q, q[:, :1], position_ids=ids[:, queries])[0]
            k = self.rotary.apply_rope(k[:, :1], k, position_ids=position_ids)[1]
    if past_key_values is not None:
        k, v = past_key_values.update(k, v)
    kv = int(k.shape[-2])
    if self.rotary is not None and position_ids is None and kv != seq:
        raise RuntimeError("position start: rotary NativeAttention without position_ids")
    if self.kv_repeats > 1:
        k = k.repeat_interleave(self.kv_repeats, dim=1)
        v = v.repeat_interleave(self.kv_repeats, dim=1)
    scores = torch.matmul(q, k.transpose(-2, -1)) / self.scale
    scores = apply_softcap(scores, self.attn_scores_soft_cap)
    if self.causal and queries is not None:
        scores = scores + _causal_bias(self, seq, kv, scores, queries)
    elif self.causal:
        # the causal mask as -inf/0 added to the scores: the same scores as the class's
        # masked_fill (x + 0 = x, x - inf = -inf) in one pass instead of a copy and a fill, and
        # no second fill after softmax: every query row keeps its own position, so no row is
        # all -inf and softmax gives exact zeros there. Out of place: the edge engines take
        # gradients through here (softmax saves its output).
        scores = scores + _causal_bias(self, seq, kv, scores)
    pattern = torch.softmax(scores, dim=-1)
    if pattern_fn is not None:
        pattern = pattern_fn(pattern)
    if queries is not None:
        attn = torch.matmul(pattern, v).transpose(1, 2).reshape(batch, len(queries), -1)
        part = self.o(attn)
        out = part.new_zeros(batch, seq, part.shape[-1])
        out[:, queries] = part
        return out, pattern
    attn = torch.matmul(pattern, v).transpose(1, 2).contiguous().view(batch, seq, -1)
    return self.o(attn), pattern


def native_attention(model: Any) -> bool:
    """Whether every block's attention is TransformerLens's ``NativeAttention`` (the attention
    whose forward :func:`injected` replaces, so read-positions-only runs apply)."""
    blocks = getattr(model, "blocks", None) or []
    return bool(blocks) and all(
        type(getattr(getattr(b, "attn", None), "original_component", None)).__name__
        == "NativeAttention"
        for b in blocks
    )


def supported(model: Any) -> str:
    """Why position-start runs cannot be tried on ``model`` ("" when they can)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or any(getattr(b, "attn", None) is None for b in blocks):
        return "the blocks have no attn component"
    if getattr(model.cfg, "positional_embedding_type", "") == "alibi":
        return "ALiBi attention (position biases are not cut to the query rows)"
    return ""


@contextmanager
def injected(model: Any, kv: PrefixKV) -> Iterator[None]:
    """While active, every block's attention gets ``past_key_values=kv`` (a forward pre-hook on
    ``block.attn``) and a ``NativeAttention`` runs :func:`_native_forward`."""
    handles = []
    natives = []

    def add_cache(module: Any, args: tuple, kwargs: dict):
        return args, {**kwargs, "past_key_values": kv}

    try:
        for block in model.blocks:
            handles.append(block.attn.register_forward_pre_hook(add_cache, with_kwargs=True))
            inner = getattr(block.attn, "original_component", None)
            if type(inner).__name__ == "NativeAttention":
                inner.forward = types.MethodType(_native_forward, inner)
                natives.append(inner)
        yield
    finally:
        for h in handles:
            h.remove()
        for inner in natives:
            del inner.forward  # back to the class's forward


def _map_tensors(x: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, tuple):
        return tuple(_map_tensors(y, fn) for y in x)
    if isinstance(x, list):
        return [_map_tensors(y, fn) for y in x]
    return x


def cut_inputs(args: tuple, kwargs: dict, n_pos: int, start: int) -> tuple[tuple, dict]:
    """A block's captured inputs for the query positions ``start..`` (see the module docstring):
    ``[.., n_pos, n_pos]`` masks keep rows ``start..`` and every key column; tensors whose second
    axis (``[batch, pos, ...]``: position ids, rotary cos/sin) or only axis (``cache_position``)
    is the position axis keep ``start..``."""
    if start == 0:
        return args, kwargs

    def cut(t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 4 and t.shape[-2] == n_pos and t.shape[-1] == n_pos:
            return t[..., start:, :]
        if t.ndim >= 2 and t.shape[1] == n_pos:
            return t[:, start:]
        if t.ndim == 1 and t.shape[0] == n_pos and not t.is_floating_point():
            return t[start:]
        return t

    return _map_tensors(args, cut), {k: _map_tensors(v, cut) for k, v in kwargs.items()}


def run_logits(part: torch.Tensor, base_logits: torch.Tensor, start: int,
               positions: list[int] | None, n: int,
               frame: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """The logits ``[n, n_pos, vocab]`` of each run in ``part``, computed at positions ``start..``
    only, one run after another.

    ``part`` holds the computed logits of ``rows // n`` runs: ``[rows, n_pos - start, vocab]``
    (``positions`` None) or ``[rows, len(positions ≥ start), vocab]`` at the declared positions
    from ``start`` on. Positions before ``start`` are the base run's logits (``base_logits``
    ``[n, n_pos, vocab]``): a patch there cannot change them. Undeclared positions are NaN, as
    in ``_patching_runs._unembed_at``.

    The runs are written one by one into one ``[n, n_pos, vocab]`` frame, so a batch's logits are
    never laid out at full length (filling a ``[rows, n_pos, vocab]`` tensor with NaN cost the
    toy model's sweeps a third of their time): each yielded tensor is valid until the next one
    is asked for, which is how the engine hands it to the metric and reads back a float.
    ``frame``: a NaN-filled ``[n, n_pos, vocab]`` tensor to write into (the engine keeps one per
    sweep; only the positions a metric reads are ever written, so the rest stay NaN)."""
    rows, p = int(part.shape[0]), int(base_logits.shape[1])
    if start == 0 and positions is None:
        for j in range(rows // n):
            yield part[j * n : (j + 1) * n]
        return
    if frame is None:
        frame = part.new_full((n, p, part.shape[-1]), float("nan"))
    want = list(range(p)) if positions is None else positions
    before = [q for q in want if q < start]
    after = [q for q in want if q >= start]
    if before:
        frame[:, before] = base_logits[:, before].to(frame.dtype)
    for j in range(rows // n):
        if after:
            frame[:, after] = part[j * n : (j + 1) * n]
        yield frame


def read_logits(part: torch.Tensor, base_logits: torch.Tensor, start: int,
                positions: list[int], n: int) -> torch.Tensor:
    """``[runs, n, len(positions), vocab]``: every run's logits at the metric's ``positions``,
    from ``part`` (``[rows, len(positions >= start), vocab]``, as in :func:`run_logits`) and,
    before ``start``, the base run's (``base_logits``), for a metric that takes all runs at once
    (``metrics.batched_form``)."""
    runs = int(part.shape[0]) // n
    after = part.reshape(runs, n, part.shape[1], part.shape[-1])
    before = [q for q in positions if q < start]
    if not before:
        return after
    lead = base_logits[:, before].to(part.dtype)
    return torch.cat([lead[None].expand(runs, -1, -1, -1), after], dim=2)


def shared_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading positions two prompt batches ``[n, n_pos]`` share in every prompt: the
    first position where some prompt's tokens differ (``n_pos`` when they are equal). Attention
    is causal, so at those positions every activation of the two runs is the same: a patch there
    copies a value onto itself, and runs that mix the two can start at this position."""
    differs = (a != b).any(0).nonzero()
    return int(differs[0]) if differs.numel() else int(a.shape[-1])
