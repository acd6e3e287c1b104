"""Attention head scores: previous-token, induction, duplicate-token, first-token and entropy.

The first three are exactly TransformerLens's ``head_detector.detect_head(..., error_measure="mul")``
scores (the fraction of a head's attention, over all query positions, that falls on the positions
the detection pattern marks), computed for every head at once from one cached run instead of a
Python loop over heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError
from .hooks import act_name

SCORE_NAMES: tuple[str, ...] = ("previous_token", "induction", "duplicate_token", "first_token", "entropy")


@dataclass(frozen=True)
class HeadScores:
    """Scores of every head on one prompt.

    Attributes:
        values: float32 [n_scores, n_layers, n_heads], in the order of ``names``.
        names: the score names (``SCORE_NAMES``).
        patterns: float32 [n_layers, n_heads, pos, pos] attention patterns (query, key) of the run.
    """

    values: torch.Tensor
    names: tuple[str, ...]
    patterns: torch.Tensor
    hook: str = field(default="blocks.{layer}.attn.hook_pattern")

    def __getitem__(self, name: str) -> torch.Tensor:
        """The [n_layers, n_heads] tensor of score ``name``."""
        try:
            return self.values[self.names.index(name)]
        except ValueError:
            raise KeyError(f"unknown score {name!r}; scores are {list(self.names)}") from None

    def top(self, name: str, n: int = 5) -> list[tuple[str, float]]:
        """The ``n`` heads with the highest ``name`` score as ``[("L1H3", 0.91), ...]``."""
        scores = self[name]
        flat = scores.flatten()
        order = torch.argsort(flat, descending=True)[:n]
        n_heads = scores.shape[1]
        return [(f"L{int(i) // n_heads}H{int(i) % n_heads}", float(flat[i])) for i in order]


def attention_patterns(model: Any, tokens: torch.Tensor, cache: Any = None) -> torch.Tensor:
    """Attention patterns of every head for one prompt: float32 [n_layers, n_heads, pos, pos].

    ``tokens`` is [1, pos] (or [pos]); ``cache`` an ActivationCache of that run to reuse."""
    tokens = _one_prompt(tokens)
    if cache is None:
        with torch.inference_mode():
            _, cache = model.run_with_cache(
                tokens, names_filter=lambda name: name.endswith("attn.hook_pattern")
            )
    n_layers = int(model.cfg.n_layers)
    return torch.stack([cache[act_name("pattern", layer)][0] for layer in range(n_layers)]).float()


def detection_patterns(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """TransformerLens's detection patterns for one prompt, each [pos, pos] (query, key), 0/1.

    ``previous_token``: key = query - 1. ``duplicate_token``: earlier keys with the same token.
    ``induction``: keys right after an earlier copy of the query's token. ``first_token``: key 0.
    """
    ids = _one_prompt(tokens)[0].cpu()
    n = ids.shape[0]
    prev = torch.zeros(n, n)
    if n > 1:
        prev[1:, :-1] = torch.eye(n - 1)
    dup = (ids[:, None] == ids[None, :]).float()
    dup.fill_diagonal_(0)
    dup = torch.tril(dup)
    induction = torch.zeros(n, n)
    induction[:, 1:] = dup[:, :-1]
    induction = torch.tril(induction)
    first = torch.zeros(n, n)
    first[:, 0] = 1
    return {"previous_token": prev, "duplicate_token": dup, "induction": induction, "first_token": first}


def head_scores(model: Any, tokens: torch.Tensor, *, cache: Any = None) -> HeadScores:
    """Scores of every head on one prompt.

    Args:
        model: a TransformerBridge.
        tokens: LongTensor [1, pos] (BOS included, as ``model.to_tokens`` gives it).
        cache: optional ActivationCache of the same run.

    Returns:
        :class:`HeadScores` with ``values`` [5, n_layers, n_heads]: ``previous_token``, ``induction``,
        ``duplicate_token`` (equal to ``detect_head(model, prompt, "<name>_head")``), ``first_token``
        (fraction of attention on position 0, ``detect_head`` with a first-column pattern) and
        ``entropy`` (mean over query positions of the attention distribution's entropy, in nats).
    """
    patterns = attention_patterns(model, tokens, cache)
    if patterns.shape[-1] < 2:
        raise InputError("Head scores need at least two tokens.")
    masks = detection_patterns(tokens)
    denom = patterns.sum(dim=(-1, -2))  # [L, H]; equals pos for softmax rows, as in detect_head
    rows = []
    for name in SCORE_NAMES:
        if name == "entropy":
            p = patterns.clamp_min(0)
            ent = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)  # [L, H, q]
            rows.append(ent.mean(-1))
        else:
            mask = masks[name].to(patterns.device)
            rows.append((patterns * mask).sum(dim=(-1, -2)) / denom)
    return HeadScores(values=torch.stack(rows).float(), names=SCORE_NAMES, patterns=patterns)


def repeated_random_tokens(
    model: Any, n_repeat: int, *, batch: int = 1, seed: int = 0
) -> torch.Tensor:
    """BOS + ``n_repeat`` random tokens + the same tokens again: LongTensor [batch, 1 + 2*n_repeat].

    Tokens are drawn uniformly from the vocabulary, leaving out the tokenizer's special tokens."""
    d_vocab = int(model.cfg.d_vocab)
    tok = getattr(model, "tokenizer", None)
    special = set(getattr(tok, "all_special_ids", []) or [])
    allowed = torch.tensor([i for i in range(d_vocab) if i not in special])
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, allowed.numel(), (batch, n_repeat), generator=gen)
    seq = allowed[idx]
    bos_id = getattr(tok, "bos_token_id", None)
    if bos_id is None:
        bos_id = int(allowed[0])
    bos = torch.full((batch, 1), int(bos_id))
    return torch.cat([bos, seq, seq], dim=1)


def induction_probe(
    model: Any, n_repeat: int = 12, *, batch: int = 4, seed: int = 0, tokens: torch.Tensor | None = None
) -> torch.Tensor:
    """Induction score of every head on repeated random tokens: float32 [n_layers, n_heads].

    The score is the mean attention, over the second copy's query positions and the batch, to the
    key right after the query token's first occurrence (offset ``n_repeat - 1`` below the
    diagonal): 1.0 for a perfect induction head. ``tokens`` overrides the random sequence (it must
    be BOS + a sequence of length ``n_repeat`` repeated twice)."""
    if tokens is None:
        tokens = repeated_random_tokens(model, n_repeat, batch=batch, seed=seed)
    if tokens.shape[-1] != 1 + 2 * n_repeat:
        raise InputError(f"Expected BOS + 2*{n_repeat} tokens, got {tokens.shape[-1]}.")
    device = next(model.parameters()).device
    with torch.inference_mode():
        _, cache = model.run_with_cache(
            tokens.to(device), names_filter=lambda name: name.endswith("attn.hook_pattern")
        )
    out = []
    for layer in range(int(model.cfg.n_layers)):
        pattern = cache[act_name("pattern", layer)].float()  # [batch, head, q, k]
        diag = pattern.diagonal(offset=-(n_repeat - 1), dim1=-2, dim2=-1)  # [batch, head, n]
        # queries in the second copy: positions 1 + n_repeat .. 2*n_repeat
        out.append(diag[..., -n_repeat:].mean(dim=(0, -1)))
    return torch.stack(out).cpu()


def _one_prompt(tokens: torch.Tensor) -> torch.Tensor:
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.shape[0] != 1:
        raise InputError(f"Expected the tokens of one prompt, [1, pos]; got shape {tuple(tokens.shape)}.")
    return tokens
