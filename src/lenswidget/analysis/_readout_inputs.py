"""The inputs every read-out of the residual stream takes, checked: token ids, a token id, a
position, a lens row (with the hooks and labels of the rows), and the activation cache of the run
(checked against the tokens, or made by a fresh run caching only what is needed). Shared by the
logit lens (:mod:`.readout`), :mod:`.dla` and :mod:`.promoted`; each raises an :class:`InputError`
that says what to pass instead.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..errors import InputError
from ._unembed import _d_vocab, model_device
from .hooks import act_name



def resid_hooks(n_layers: int) -> list[str]:
    """The hook of each lens row: ``resid_pre`` of every layer, then the last ``resid_post``."""
    return [act_name("resid_pre", l) for l in range(n_layers)] + [act_name("resid_post", n_layers - 1)]


def resid_labels(n_layers: int) -> list[str]:
    """TransformerLens's ``accumulated_resid`` labels: ``"0_pre" .. "{n-1}_pre", "final_post"``."""
    return [f"{l}_pre" for l in range(n_layers)] + ["final_post"]


def check_tokens(model: Any, tokens: Any) -> torch.Tensor:
    """``tokens`` as a LongTensor [pos] on the model's device, or an :class:`InputError`."""
    if isinstance(tokens, str):
        raise InputError("Pass token ids (e.g. lens.tokenize(prompt) or model.to_tokens(prompt)), not text.")
    if not isinstance(tokens, torch.Tensor):
        try:
            tokens = torch.tensor(list(tokens), dtype=torch.long)
        except (TypeError, ValueError) as err:
            raise InputError(f"Tokens must be a sequence of token ids, got {type(tokens).__name__}.") from err
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise InputError(f"Tokens must be integer ids, got dtype {tokens.dtype}.")
    if tokens.ndim == 2:
        if tokens.shape[0] != 1:
            raise InputError(f"One prompt at a time: got a batch of {tokens.shape[0]} prompts.")
        tokens = tokens[0]
    if tokens.ndim != 1:
        raise InputError(f"Tokens must be [pos] or [1, pos], got shape {tuple(tokens.shape)}.")
    if tokens.numel() == 0:
        raise InputError("The prompt is empty: give at least one token.")
    d_vocab = _d_vocab(model)
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= d_vocab:
        raise InputError(f"Token id {lo if lo < 0 else hi} is outside the vocabulary (0..{d_vocab - 1}).")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and tokens.shape[0] > int(n_ctx):
        raise InputError(f"The prompt is {tokens.shape[0]} tokens long, more than the model's context of {n_ctx}.")
    return tokens.long()


def check_token_id(model: Any, token: Any, *, what: str = "target") -> int:
    """``token`` as an int id inside the vocabulary, or an :class:`InputError`."""
    if isinstance(token, torch.Tensor) and token.numel() == 1 and not token.is_floating_point():
        token = int(token.item())
    if isinstance(token, bool) or not isinstance(token, int):
        raise InputError(f"The {what} must be a token id (an integer), got {token!r}.")
    d_vocab = _d_vocab(model)
    if not 0 <= token < d_vocab:
        raise InputError(f"The {what} id {token} is outside the vocabulary (0..{d_vocab - 1}).")
    return int(token)


def check_pos(pos: Any, n_pos: int) -> int:
    """``pos`` (negative counts from the end) as an index in ``0..n_pos-1``, or an :class:`InputError`."""
    if isinstance(pos, bool) or not isinstance(pos, int):
        raise InputError(f"The position must be an integer, got {pos!r}.")
    if not -n_pos <= pos < n_pos:
        raise InputError(f"The position {pos} is out of range: the prompt has positions 0..{n_pos - 1}.")
    return pos % n_pos


def check_row(layer: Any, n_layers: int) -> int:
    """A lens row: ``None`` -> ``n_layers`` (the final stream), else an int in ``0..n_layers``."""
    if layer is None:
        return n_layers
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise InputError(f"The layer must be an integer or None, got {layer!r}.")
    if not 0 <= layer <= n_layers:
        raise InputError(
            f"The layer {layer} is out of range: 0..{n_layers - 1} read the stream entering that layer, "
            f"{n_layers} (or None) the final stream."
        )
    return layer


def ensure_cache(model: Any, tokens: torch.Tensor, cache: Any, *, names: Sequence[str] | Callable[[str], bool]) -> Any:
    """``cache`` checked to be a run on ``tokens``, or a fresh run caching only ``names``."""
    if cache is not None:
        embed = _cache_get(cache, "hook_embed", required=False)
        if embed is not None:
            n = embed.shape[-2]
            if n != tokens.shape[0]:
                raise InputError(f"The cache is of a {n}-token prompt, but the tokens are {tokens.shape[0]} long.")
        return cache
    if model.training:
        raise InputError("The model is in training mode: call model.eval() first (TransformerBridge.boot_native returns train mode).")
    flt = names if callable(names) else (lambda n, s=frozenset(names): n in s)
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens[None].to(model_device(model)), names_filter=flt)
    return cache


def cache_tensor(cache: Any, name: str, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """``cache[name]`` without its batch dimension (batch size 1), as [pos, ...]."""
    t = _cache_get(cache, name, required=True)
    if getattr(cache, "has_batch_dim", True):
        if t.shape[0] != 1:
            raise InputError(f"One prompt at a time: the cache holds a batch of {t.shape[0]}.")
        t = t[0]
    if tokens is not None and t.shape[0] != tokens.shape[0]:
        raise InputError(f"The cache is of a {t.shape[0]}-token prompt, but the tokens are {tokens.shape[0]} long.")
    return t


def _cache_get(cache: Any, name: str, *, required: bool) -> torch.Tensor | None:
    store = getattr(cache, "cache_dict", cache)
    if name in store:
        return store[name]
    if not required:
        return None
    raise InputError(f"The activation cache has no {name!r}: run the model with that hook cached (or pass no cache).")


def has_cached(cache: Any, name: str) -> bool:
    return name in getattr(cache, "cache_dict", cache)
