"""Token ids to the strings a user reads (plain text, never HTML)."""

from __future__ import annotations

from typing import Any, Sequence

import torch


def str_tokens(model: Any, ids: torch.Tensor | Sequence[int]) -> list[str]:
    """The text of each token id in ``ids`` (1-D); ``"#<id>"`` where the model has no tokenizer."""
    ids = [int(i) for i in (ids.reshape(-1).tolist() if isinstance(ids, torch.Tensor) else ids)]
    if getattr(model, "tokenizer", None) is None:
        return [f"#{i}" for i in ids]
    return [str(s) for s in model.to_str_tokens(torch.tensor(ids, dtype=torch.long), prepend_bos=False)]


def str_token(model: Any, token_id: int) -> str:
    """The text of one token id."""
    return str_tokens(model, [int(token_id)])[0]


def top_tokens(model: Any, logits: torch.Tensor, k: int = 10) -> list[dict]:
    """The ``k`` most likely next tokens of one position's logits [d_vocab], most likely first,
    as the views draw them: ``[{"token": text, "id": int, "prob": float}, ...]``."""
    probs = torch.softmax(logits.double(), dim=-1)
    values, ids = probs.topk(k)
    ids_list = [int(i) for i in ids]
    return [{"token": t, "id": i, "prob": float(v)} for t, i, v in zip(str_tokens(model, ids_list), ids_list, values)]
