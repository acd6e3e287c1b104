"""Attention of every head on a long prompt, one layer at a time.

``attention_patterns`` / ``head_scores`` hold every pattern at once: float32
[n_layers, n_heads, pos, pos], 17 GB for SmolLM2 on 4,000 tokens. :func:`stream_attention` runs
the model once with a hook on each layer's ``hook_pattern`` that, while that layer's pattern
exists anyway, computes the head scores (the same numbers as :func:`~.heads.head_scores`) and a
max-pooled thumbnail of every head, then lets the pattern go. It keeps each block's input, so
:func:`head_pattern` later recomputes one head's full pattern by rerunning that one block (its
attention only) instead of the whole model.

Everything stays on the model's device until the small results are moved to the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from .heads import SCORE_NAMES, detection_patterns
from .hooks import act_name
from .readout import model_device

#: a layer's patterns ([n_heads, pos, pos] float32) may take at most this many bytes: the model
#: itself holds about three such tensors while it runs a layer
MAX_LAYER_PATTERN_BYTES = 2 * 1024**3


@dataclass
class StreamedAttention:
    """The result of :func:`stream_attention`.

    Attributes:
        values: float32 [n_scores, n_layers, n_heads] head scores, in the order of ``names``
            (equal to ``head_scores(model, tokens).values``).
        names: the score names (``SCORE_NAMES``).
        thumbs: float32 [n_layers, n_heads, size, size] (CPU): each head's pattern max-pooled to
            ``size`` x ``size`` (:func:`pool_size`: at most ``thumb``); when ``size == pos`` it *is* the pattern.
        pos: the prompt length in tokens.
        tokens: LongTensor [1, pos] on the model's device.
        logits: [1, pos, d_vocab] of the run when they fit ``keep_logits_bytes``, else None.
        patterns: float32 [n_layers, n_heads, pos, pos] (CPU) when they fit ``keep_patterns_bytes``,
            else None (then :func:`head_pattern` reruns one block).
        block_inputs: per layer ``(args, kwargs)`` of the block's forward (on the model's device),
            or None where the model has no ``blocks`` to rerun.
        overviews: float16 [n_layers, n_heads, S(S+1)/2] (CPU) when asked for: each head's pattern
            max-pooled to ``S = overview_size`` cells (:func:`pool_size`), only the causal triangle,
            row by row (row q holds cells 0..q), ready to send; else None.
        overview_size: S (0 without overviews).
        corners: float32 [n_layers, n_heads, c, c] (CPU) when asked for: each head's exact pattern
            on the first ``c`` queries and keys (the view's first window), else None.
    """

    values: torch.Tensor
    names: tuple[str, ...]
    thumbs: torch.Tensor
    pos: int
    tokens: torch.Tensor
    logits: torch.Tensor | None = None
    patterns: torch.Tensor | None = None
    block_inputs: list | None = None
    overviews: torch.Tensor | None = None
    overview_size: int = 0
    corners: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """The thumbnail side in cells."""
        return int(self.thumbs.shape[-1])

    @property
    def pooled(self) -> bool:
        """Whether the thumbnails are smaller than the patterns."""
        return self.size < self.pos


def check_attention_size(model: Any, pos: int) -> None:
    """An :class:`InputError` when one layer's patterns of a ``pos``-token prompt would take more
    than :data:`MAX_LAYER_PATTERN_BYTES` (the run would exhaust memory)."""
    n_heads = int(model.cfg.n_heads)
    need = n_heads * pos * pos * 4
    if need > MAX_LAYER_PATTERN_BYTES:
        limit = int((MAX_LAYER_PATTERN_BYTES / (n_heads * 4)) ** 0.5)
        raise InputError(
            f"The prompt is {pos} tokens: one layer's attention patterns would take "
            f"{need / 1024**3:.1f} GiB ({n_heads} heads x {pos}² x 4 bytes). This model's attention "
            f"views take at most {limit} tokens; shorten the prompt.",
            details={"n_tokens": pos, "max_tokens": limit},
        )


def _score_indices(tokens: torch.Tensor, device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(query, key) index pairs of the 0/1 detection patterns of previous-token, duplicate-token
    and induction (first-token is column 0)."""
    masks = detection_patterns(tokens)
    out = {}
    for name in ("previous_token", "induction", "duplicate_token"):
        q, k = masks[name].nonzero(as_tuple=True)
        out[name] = (q.to(device), k.to(device))
    return out


def layer_scores(pattern: torch.Tensor, idx: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Scores of one layer's heads from its pattern [n_heads, pos, pos] (float32): [n_scores, n_heads],
    the same definitions as :func:`~.heads.head_scores` (mask sums over the pattern's total)."""
    denom = pattern.sum(dim=(-1, -2))
    rows = []
    for name in SCORE_NAMES:
        if name == "entropy":  # -p log p, 0 at p = 0, in one pass (patterns are >= 0)
            rows.append(torch.special.entr(pattern.clamp_min(0) if pattern.min() < 0 else pattern).sum(-1).mean(-1))
        elif name == "first_token":
            rows.append(pattern[..., 0].sum(-1) / denom)
        else:
            q, k = idx[name]
            rows.append(pattern[:, q, k].sum(-1) / denom)
    return torch.stack(rows)


def pool_size(pos: int, size: int) -> tuple[int, int]:
    """``(bin, side)`` of the pooled thumbnail of a ``pos``-token pattern in at most ``size`` cells:
    square bins of ``bin = ceil(pos / size)`` tokens, ``side = ceil(pos / bin)`` cells."""
    k = max(1, -(-pos // max(1, size)))
    return k, -(-pos // k)


def pool_pattern(pattern: torch.Tensor, size: int) -> torch.Tensor:
    """Max-pool [..., pos, pos] in square bins of :func:`pool_size` tokens to [..., side, side]
    (the pattern itself when ``size >= pos``): a thin stripe stays visible at any zoom. The
    bins do not overlap, so a cell above the diagonal covers only keys after its queries (zero in
    a causal pattern) and the thumbnail is causal too. The last bin takes the tokens left
    (``ceil_mode``: no padded copy of the pattern)."""
    pos = pattern.shape[-1]
    k, side = pool_size(pos, size)
    if k == 1:
        return pattern
    lead = pattern.shape[:-2]
    flat = pattern.reshape(-1, 1, pos, pos)
    return F.max_pool2d(flat, k, ceil_mode=True).reshape(*lead, side, side)


class _Stop(Exception):
    """Raised from a hook to end a forward pass early."""


def _plain_kwargs(kwargs: dict) -> dict:
    out = {}
    for key, value in kwargs.items():
        if type(value).__name__.endswith("Cache"):
            value = None  # a key/value cache must not grow across reruns
        out[key] = value
    if "use_cache" in out:
        out["use_cache"] = False
    return out


def stream_attention(
    model: Any,
    tokens: torch.Tensor,
    *,
    thumb: int = 64,
    keep_patterns_bytes: int = 64 * 1024**2,
    keep_logits_bytes: int = 256 * 1024**2,
    keep_block_inputs: bool = True,
    overview: int = 0,
    overview_bytes: int = 256 * 1024**2,
    corner: int = 0,
) -> StreamedAttention:
    """Head scores and pooled thumbnails of every head on one prompt, one layer's pattern at a time.

    Args:
        model: a TransformerBridge (eval mode).
        tokens: LongTensor [1, pos], BOS included.
        thumb: thumbnail side (cells); a head's thumbnail is its pattern when ``pos <= thumb``.
        keep_patterns_bytes: keep every full pattern (float32, CPU) when they take at most this.
        keep_logits_bytes: keep the logits when they take at most this.
        keep_block_inputs: keep each block's input for :func:`head_pattern`.
        overview: when > 0, also keep every head's pattern max-pooled to at most this many cells
            a side (float16 triangles, :func:`overview_layout` within ``overview_bytes``), so a
            focused head's overview needs no rerun.
        corner: when > 0, also keep every head's exact pattern on the first ``corner`` tokens.

    Returns:
        :class:`StreamedAttention`. Raises :class:`InputError` for fewer than two tokens or a
        prompt whose patterns would exhaust memory (:func:`check_attention_size`).
    """
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.shape[0] != 1:
        raise InputError(f"Expected the tokens of one prompt, [1, pos]; got shape {tuple(tokens.shape)}.")
    pos = int(tokens.shape[-1])
    if pos < 2:
        raise InputError("Head scores need at least two tokens.")
    check_attention_size(model, pos)
    device = model_device(model)
    tokens = tokens.to(device)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    size = pool_size(pos, int(thumb))[1]
    keep_full = n_layers * n_heads * pos * pos * 4 <= keep_patterns_bytes
    idx = _score_indices(tokens, device)
    values = torch.zeros(len(SCORE_NAMES), n_layers, n_heads)
    thumbs = torch.zeros(n_layers, n_heads, size, size)
    full = torch.zeros(n_layers, n_heads, pos, pos) if keep_full else None
    o_side = overview_layout(n_layers, n_heads, pos, int(overview), overview_bytes) if overview > 0 else 0
    overviews = torch.zeros(n_layers, n_heads, o_side * (o_side + 1) // 2, dtype=torch.float16) if o_side else None
    o_rows, o_cols = torch.tril_indices(o_side, o_side, device=device) if o_side else (None, None)
    c = min(pos, max(0, int(corner)))
    corners = torch.zeros(n_layers, n_heads, c, c) if c else None

    def on_pattern(layer: int):
        def hook(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
            p = act[0].float()
            values[:, layer] = layer_scores(p, idx).cpu()
            thumbs[layer] = pool_pattern(p, size).cpu()
            if overviews is not None:
                overviews[layer] = pool_pattern(p, o_side)[:, o_rows, o_cols].half().cpu()
            if corners is not None:
                corners[layer] = p[:, :c, :c].cpu()
            if full is not None:
                full[layer] = p.cpu()
            return act

        return hook

    blocks = getattr(model, "blocks", None) if keep_block_inputs else None
    inputs: list = [None] * (len(blocks) if blocks is not None else 0)
    handles = []
    if blocks is not None:
        for i, block in enumerate(blocks):

            def pre(mod: Any, args: tuple, kwargs: dict, i: int = i) -> None:
                inputs[i] = (tuple(args), _plain_kwargs(kwargs)) if args else None

            handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
    hooks = [(act_name("pattern", layer), on_pattern(layer)) for layer in range(n_layers)]
    try:
        with torch.inference_mode():
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    finally:
        for handle in handles:
            handle.remove()
    keep_logits = logits.numel() * logits.element_size() <= keep_logits_bytes
    block_inputs = inputs if inputs and all(x is not None for x in inputs) and not keep_full else None
    return StreamedAttention(
        values=values,
        names=SCORE_NAMES,
        thumbs=thumbs,
        pos=pos,
        tokens=tokens,
        logits=logits if keep_logits else None,
        patterns=full,
        block_inputs=block_inputs,
        overviews=overviews,
        overview_size=o_side,
        corners=corners,
    )


def overview_layout(n_layers: int, n_heads: int, pos: int, size: int, max_bytes: int) -> int:
    """The overview side S (:func:`pool_size` of at most ``size`` cells) such that every head's
    float16 triangle, n_layers * n_heads * S(S+1)/2 * 2 bytes, fits ``max_bytes`` (at least 16)."""
    s = max(1, int(size))
    while True:
        side = pool_size(pos, s)[1]
        if side <= 16 or n_layers * n_heads * side * (side + 1) <= max_bytes:
            return side
        s = max(16, int(s * 0.9))


def check_window(pos: int, q0: int, q1: int, k0: int, k1: int, max_side: int) -> tuple[int, int, int, int]:
    """Check a window of queries ``q0 <= q < q1`` and keys ``k0 <= k < k1`` of a ``pos``-token
    pattern: inside it, not empty, at most ``max_side`` tokens a side. Returns the bounds as ints;
    an :class:`InputError` naming what is wrong otherwise."""
    try:
        bounds = tuple(int(x) for x in (q0, q1, k0, k1))
    except (TypeError, ValueError):
        raise InputError(
            f"Window bounds must be integers, got {[q0, q1, k0, k1]!r}.",
            details={"window": [repr(x) for x in (q0, q1, k0, k1)]},
        ) from None
    q0, q1, k0, k1 = bounds
    if not (0 <= q0 < q1 <= pos and 0 <= k0 < k1 <= pos):
        raise InputError(
            f"Window queries [{q0}, {q1}) x keys [{k0}, {k1}) is not inside the {pos}-token pattern "
            f"(need 0 <= q0 < q1 <= {pos} and 0 <= k0 < k1 <= {pos}).",
            details={"window": list(bounds), "pos": pos},
        )
    if q1 - q0 > max_side or k1 - k0 > max_side:
        raise InputError(
            f"Window of {q1 - q0} x {k1 - k0} tokens: at most {max_side} x {max_side}.",
            details={"window": list(bounds), "max_side": max_side},
        )
    return q0, q1, k0, k1


def head_pattern(model: Any, streamed: StreamedAttention, layer: int, head: int) -> torch.Tensor:
    """The full attention pattern of head ``(layer, head)`` on the streamed prompt: float32
    [pos, pos] (CPU), queries as rows. From the kept patterns, else by rerunning block ``layer`` on
    its kept input up to its ``hook_pattern`` (else the model up to that layer)."""
    if streamed.patterns is not None:
        return streamed.patterns[layer, head].clone()
    store: dict[str, torch.Tensor] = {}

    def grab(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        store["p"] = act[0, head].float().cpu()
        raise _Stop

    with torch.inference_mode(), model.hooks(fwd_hooks=[(act_name("pattern", layer), grab)]):
        try:
            if streamed.block_inputs is not None:
                args, kwargs = streamed.block_inputs[layer]
                model.blocks[layer](*args, **kwargs)
            else:
                model(streamed.tokens)
        except _Stop:
            pass
    if "p" not in store:  # pragma: no cover - a model whose block skipped its pattern hook
        raise InputError(f"blocks.{layer}.attn.hook_pattern did not fire; cannot show L{layer}H{head}.")
    return store["p"]


@dataclass
class PatternOverview:
    """One head's pattern max-pooled for an overview (what the focus panel draws zoomed out).

    Attributes:
        values: float32 [side, side]: cell (i, j) is the largest weight of queries
            ``i*bin .. i*bin+bin-1`` on keys ``j*bin .. j*bin+bin-1`` (zeros above the diagonal),
            rounded to float16 as it travels.
        bin: tokens a cell; pos: the prompt length; layer, head: the head.
    """

    values: torch.Tensor
    bin: int
    pos: int
    layer: int
    head: int


@dataclass
class PatternWindow:
    """A window of one head's pattern at full resolution, with token labels.

    Attributes:
        values: float32 [q1 - q0, k1 - k0]: ``pattern[q0:q1, k0:k1]`` (queries as rows).
        q0, q1, k0, k1: the bounds (half-open); layer, head: the head.
        query_tokens, key_tokens: the token strings of the rows and the columns.
    """

    values: torch.Tensor
    q0: int
    q1: int
    k0: int
    k1: int
    layer: int
    head: int
    query_tokens: list[str]
    key_tokens: list[str]


def overview_triangle(streamed: StreamedAttention, pattern: torch.Tensor | None, layer: int, head: int,
                      size: int) -> tuple[torch.Tensor, int, int]:
    """One head's overview as it travels: float16 [S(S+1)/2] (the triangle row by row), its side S
    and bin. From the streamed overviews when kept, else max-pooled from ``pattern`` [pos, pos]
    to at most ``size`` cells a side."""
    pos = streamed.pos
    if streamed.overviews is not None:
        side = streamed.overview_size
        return streamed.overviews[layer, head], side, pool_size(pos, side)[0]
    assert pattern is not None, "no kept overview: pass the head's pattern"
    k, side = pool_size(pos, size)
    rows, cols = torch.tril_indices(side, side)
    return pool_pattern(pattern.float(), side)[rows, cols].half(), side, k
