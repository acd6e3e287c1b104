"""The logit lens (``logit_lens``): what each layer's residual stream would predict if the model stopped there.

Row ``r`` of the lens is the residual stream entering layer ``r`` (``blocks.{r}.hook_resid_pre``)
for ``r < n_layers``, and the final stream (``blocks.{n_layers-1}.hook_resid_post``) for
``r == n_layers``: ``n_layers + 1`` rows in all. Each row, at each position, is read the way
TransformerLens 4.3 reads it in ``ActivationCache.accumulated_resid(apply_ln=True)``: the
model's own ``ln_final`` module is applied to the row with **statistics recomputed from that row**
(TL's ``apply_ln_to_stack(..., recompute_ln=True)``; the cached final-LN scale belongs to the final
stream only), then ``@ W_U + b_U``, then the adapter's output transform (Gemma-2 style logit
soft-capping; the identity for most models). The last row therefore reproduces the model's own
logits. The labels are TL's: ``"0_pre"``, ``"1_pre"``, ..., ``"final_post"``.

Logits are never held for all rows at once: ``[rows, positions, d_vocab]`` for SmolLM2 on 512
tokens would be 3 GB of float32. Rows × positions are flattened and processed ``chunk_rows`` at a
time (64 MiB of logits per chunk by default): each chunk's logits give their top-k, softmax
normaliser and target statistics, and are dropped.

The few helpers that :mod:`lenswidget.analysis.dla` shares with the lens (the final norm's
parameters, the residual rows, token checks), so both read the stream the same way, live in
:mod:`._unembed` (the model's read-out end) and :mod:`._readout_inputs` (checked inputs and the
cache); they are importable from here as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..errors import InputError
from ._readout_inputs import (  # noqa: F401  (re-exported: dla, promoted and session import them from here)
    cache_tensor,
    check_pos,
    check_row,
    check_token_id,
    check_tokens,
    ensure_cache,
    has_cached,
    resid_hooks,
    resid_labels,
)
from ._unembed import (  # noqa: F401  (re-exported, as above)
    NormParams,
    _d_vocab,
    apply_final_norm,
    final_norm,
    model_device,
    norm_params,
    output_transform,
    unembed_params,
)

# Default size of one chunk of logits, in elements (16 Mi float32 = 64 MiB; 341 cells for SmolLM2).
CHUNK_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class LogitLensResult:
    """The logit lens of one prompt. ``R = n_layers + 1`` rows, ``P`` positions.

    Attributes:
        tokens: LongTensor [P], the prompt.
        top_ids: LongTensor [R, P, k], the k most likely next tokens of each cell, most likely first.
        top_probs: float32 [R, P, k], their softmax probabilities (over the full vocabulary).
        top_logits: float32 [R, P, k], their logits.
        log_norm: float32 [R, P], ``logsumexp`` of each cell's logits (``prob = exp(logit - log_norm)``).
        labels: R labels, TransformerLens's ``accumulated_resid`` labels ``"0_pre" .. "final_post"``.
        hooks: R hook names the rows were read from (``blocks.{l}.hook_resid_pre``, then
            ``blocks.{n_layers-1}.hook_resid_post``).
        target: the target token id, or ``None``.
        target_prob, target_logit: float32 [R, P] for the target (``None`` without one).
        target_rank: LongTensor [R, P], 0 = the most likely token; ties count only strictly
            larger logits (TL's convention).
        normalized: float32 [R, P, d_model], ``ln_final`` applied to each row (what ``W_U`` reads);
            kept so :meth:`with_target` need not rerun the model.
        chunk_rows: how many (row, position) cells' logits were held at once.
        model: the model (kept for :meth:`with_target`).

    Logits are the model's own outputs: after soft-capping where the model caps them, and
    centred over the vocabulary on a bridge in compatibility mode (``center_unembed``), which
    shifts every logit of a cell equally and leaves probabilities and ranks unchanged.
    """

    tokens: torch.Tensor
    top_ids: torch.Tensor
    top_probs: torch.Tensor
    top_logits: torch.Tensor
    log_norm: torch.Tensor
    labels: list[str]
    hooks: list[str]
    target: int | None = None
    target_prob: torch.Tensor | None = None
    target_logit: torch.Tensor | None = None
    target_rank: torch.Tensor | None = None
    normalized: torch.Tensor | None = field(default=None, repr=False)
    chunk_rows: int = 0
    model: Any = field(default=None, repr=False)

    @property
    def n_rows(self) -> int:
        """``n_layers + 1``."""
        return int(self.top_ids.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.top_ids.shape[1])

    @property
    def k(self) -> int:
        return int(self.top_ids.shape[2])

    def with_target(self, target: int, *, rank: bool = True) -> "LogitLensResult":
        """The same lens with statistics for another ``target`` token id, without rerunning the
        model. Logit and probability come from the kept ``normalized`` rows and ``log_norm``
        (milliseconds); the rank needs one chunked pass over the vocabulary (the unembedding
        matmul, without softmax or top-k). ``rank=False`` skips it (``target_rank`` is ``None``)."""
        if self.model is None or self.normalized is None:
            raise InputError("This logit-lens result kept no normalized rows; rerun logit_lens with the target.")
        target = check_token_id(self.model, target, what="target")
        shape = (self.n_rows, self.n_pos)
        flat = self.normalized.reshape(-1, self.normalized.shape[-1])
        if rank:
            stats = _chunked_readout(self.model, flat, k=0, target=target, chunk_rows=self.chunk_rows or None)
            logit, ranks = stats["target_logit"].reshape(shape), stats["target_rank"].reshape(shape)
        else:
            logit, ranks = _target_logits(self.model, flat, target).reshape(shape), None
        return dataclasses.replace(
            self,
            target=target,
            target_logit=logit,
            target_prob=torch.exp(logit - self.log_norm),
            target_rank=ranks,
        )

    def top_tokens(self, row: int, pos: int, decode: Callable[[int], str] | None = None) -> list[tuple[Any, float]]:
        """The top-k of one cell as ``[(id or decode(id), prob), ...]``, most likely first."""
        ids = self.top_ids[row, pos].tolist()
        probs = self.top_probs[row, pos].tolist()
        return [((decode(i) if decode else i), p) for i, p in zip(ids, probs)]


# --------------------------------------------------------------------------- entry point
def logit_lens(
    model: Any,
    tokens: torch.Tensor | Sequence[int],
    k: int = 10,
    *,
    target: int | None = None,
    cache: Any = None,
    chunk_rows: int | None = None,
) -> LogitLensResult:
    """The logit lens of one prompt: each layer's residual stream read through the final norm
    and the unembedding (see the module docstring for exactly how).

    Args:
        model: a TransformerLens ``TransformerBridge`` in eval mode.
        tokens: the prompt's token ids, LongTensor [pos] or [1, pos] (or a list of ints).
        k: how many top tokens to keep per cell, 1..d_vocab.
        target: a token id whose probability, logit and rank to report in every cell.
        cache: an ``ActivationCache`` of ``model`` on ``tokens`` to reuse (needs the
            ``hook_resid_pre`` hooks and the last ``hook_resid_post``); default: one run.
        chunk_rows: how many cells' logits to hold at once; default ``CHUNK_ELEMENTS // d_vocab``.

    Returns:
        A :class:`LogitLensResult` with [n_layers + 1, pos, k] top tokens and, with ``target``,
        [n_layers + 1, pos] target statistics.

    Raises:
        InputError: bad tokens, ``k`` outside 1..d_vocab, a target outside the vocabulary, a cache
        of another prompt, or a model in training mode.
    """
    tokens = check_tokens(model, tokens)
    d_vocab = _d_vocab(model)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_vocab:
        raise InputError(f"k must be an integer from 1 to {d_vocab} (the vocabulary size), got {k!r}.")
    if target is not None:
        target = check_token_id(model, target, what="target")
    chunk_rows = _check_chunk_rows(chunk_rows, d_vocab)
    n_layers = int(model.cfg.n_layers)
    hooks = resid_hooks(n_layers)
    cache = ensure_cache(model, tokens, cache, names=hooks)

    with torch.no_grad():
        stack = torch.stack([cache_tensor(cache, h, tokens) for h in hooks])  # [R, P, d_model]
        normalized = apply_final_norm(model, stack.reshape(-1, stack.shape[-1]))
        stats = _chunked_readout(model, normalized, k=k, target=target, chunk_rows=chunk_rows)

    shape = (len(hooks), int(tokens.shape[0]))
    out: dict[str, Any] = {}
    if target is not None:
        out = {
            "target_logit": stats["target_logit"].reshape(shape),
            "target_prob": stats["target_prob"].reshape(shape),
            "target_rank": stats["target_rank"].reshape(shape),
        }
    return LogitLensResult(
        tokens=tokens.detach().cpu(),
        top_ids=stats["top_ids"].reshape(*shape, k),
        top_probs=stats["top_probs"].reshape(*shape, k),
        top_logits=stats["top_logits"].reshape(*shape, k),
        log_norm=stats["log_norm"].reshape(shape),
        labels=resid_labels(n_layers),
        hooks=hooks,
        target=target,
        normalized=normalized.reshape(*shape, -1).float(),
        chunk_rows=chunk_rows,
        model=model,
        **out,
    )


def _chunked_readout(
    model: Any, normalized: torch.Tensor, *, k: int, target: int | None, chunk_rows: int | None
) -> dict[str, torch.Tensor]:
    """Logits of ``normalized`` [N, d_model], ``chunk_rows`` rows at a time, reduced to the top-k
    and the softmax normaliser (when ``k > 0``) and to the target's logit, rank (and probability
    when ``k > 0``). Float32 / long results on the CPU.

    Per chunk: one matmul into a reused buffer, top-k, the target's rank as a 0/1 comparison
    summed by a matrix-vector product (several times faster on CPU than summing a bool tensor),
    then ``logsumexp`` as ``max + log(sum(exp(logits - max)))`` in place."""
    W_U, b_U = unembed_params(model)
    transform = output_transform(model)
    n, d_vocab = int(normalized.shape[0]), int(W_U.shape[1])
    chunk = min(_check_chunk_rows(chunk_rows, d_vocab), max(n, 1))
    dev = W_U.device
    logits_buf = torch.empty(chunk, d_vocab, dtype=W_U.dtype, device=dev)
    cmp_buf = torch.empty(chunk, d_vocab, dtype=torch.float32, device=dev) if target is not None else None
    ones = torch.ones(d_vocab, dtype=torch.float32, device=dev)
    top_ids, top_logits, top_probs, log_norm = [], [], [], []
    t_logit, t_prob, t_rank = [], [], []
    with torch.no_grad():
        for start in range(0, n, chunk):
            x = normalized[start : start + chunk].to(device=dev, dtype=W_U.dtype)
            logits = logits_buf[: x.shape[0]]
            if b_U is not None:
                torch.addmm(b_U, x, W_U, out=logits)
            else:
                torch.matmul(x, W_U, out=logits)
            if transform is not None:
                logits = transform(logits)
            if logits.dtype != torch.float32:
                logits = logits.float()
            if target is not None:
                assert cmp_buf is not None
                tl = logits[:, target].clone()  # a view would keep the chunk alive
                cmp = torch.gt(logits, tl[:, None], out=cmp_buf[: x.shape[0]])
                t_logit.append(tl.cpu())
                t_rank.append(torch.mv(cmp, ones).round_().long().cpu())
            if k > 0:
                top = torch.topk(logits, k, dim=-1, sorted=True)
                mx = top.values[:, :1]
                lse = torch.mv(logits.sub_(mx).exp_(), ones).log_() + mx[:, 0]  # overwrites logits
                top_ids.append(top.indices.cpu())
                top_logits.append(top.values.cpu())
                top_probs.append(torch.exp(top.values - lse[:, None]).cpu())
                log_norm.append(lse.cpu())
                if target is not None:
                    t_prob.append(torch.exp(t_logit[-1] - log_norm[-1]))
    out: dict[str, torch.Tensor] = {}
    if k > 0:
        out.update(
            top_ids=torch.cat(top_ids),
            top_logits=torch.cat(top_logits),
            top_probs=torch.cat(top_probs),
            log_norm=torch.cat(log_norm),
        )
    if target is not None:
        out.update(target_logit=torch.cat(t_logit), target_rank=torch.cat(t_rank))
        if t_prob:
            out["target_prob"] = torch.cat(t_prob)
    return out


def _target_logits(model: Any, normalized: torch.Tensor, target: int) -> torch.Tensor:
    """The logit of ``target`` for each row of ``normalized`` [N, d_model] (float32 [N], CPU)."""
    W_U, b_U = unembed_params(model)
    with torch.no_grad():
        logit = normalized.to(device=W_U.device, dtype=W_U.dtype) @ W_U[:, target]
        if b_U is not None:
            logit = logit + b_U[target]
        transform = output_transform(model)
        if transform is not None:
            logit = transform(logit)
    return logit.float().cpu()


def target_stats(result: LogitLensResult, target: int) -> dict[str, torch.Tensor]:
    """``{"prob", "logit", "rank"}``, each [n_layers + 1, pos], for another ``target`` of a lens
    result (see :meth:`LogitLensResult.with_target`)."""
    r = result.with_target(target)
    return {"prob": r.target_prob, "logit": r.target_logit, "rank": r.target_rank}


def _check_chunk_rows(chunk_rows: int | None, d_vocab: int) -> int:
    if chunk_rows is None:
        return max(1, CHUNK_ELEMENTS // d_vocab)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InputError(f"chunk_rows must be a positive integer, got {chunk_rows!r}.")
    return chunk_rows
