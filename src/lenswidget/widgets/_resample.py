"""Source prompts for resample ablation, as the widgets take them (text, one prompt per entry)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
if TYPE_CHECKING:  # widgets check the lens through base.LensLike: no import circle with session.py
    from ..session import Lens


def resample_tokens(lens: Lens, prompts: Any, tokens: torch.Tensor, *, what: str = "prompt") -> torch.Tensor:
    """The token ids of ``prompts`` as LongTensor [n_src, pos], each the length of ``tokens``
    [1, pos]; an :class:`InputError` (showing both tokenizations) for a prompt of another
    length, and for no prompts at all."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise InputError(f"Resample prompts must be a list of strings, got {prompts!r:.80}.")
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise InputError(
            "Resample ablation needs source prompts of the same token length as the "
            f"{what}: type them (one per line) in the Resample box, or pass sources=[...]."
        )
    n_pos = int(tokens.shape[-1])
    rows = []
    for i, text in enumerate(prompts):
        ids = lens.tokenize(text, what=f"resample prompt {i + 1}")
        if int(ids.shape[-1]) != n_pos:
            mine, theirs = lens.str_tokens(tokens), lens.str_tokens(ids)
            raise InputError(
                f"Resample prompt {i + 1} is {int(ids.shape[-1])} tokens but the {what} is {n_pos}: "
                f"{theirs!r} vs {mine!r}. Resample ablation swaps each position's activation, so "
                "the prompts must tokenize to the same length.",
                details={"index": i, "tokens": theirs, "prompt_tokens": mine},
            )
        rows.append(ids[0])
    return torch.stack(rows)
