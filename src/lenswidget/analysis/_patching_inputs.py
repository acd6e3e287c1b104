"""Input checks of activation patching (:mod:`.patching`, and the circuit functions that take
the same prompt pairs): tokens from text or ids, one pair batch of equal lengths, the model in
eval mode, and the hook a site patches present on the model. Each failure is an
:class:`~lenswidget.errors.InputError` that says what to change.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from ._patching_sites import Site
from .hooks import act_name
from .text import str_tokens

TokensLike = Any  # torch.Tensor [batch, pos] or [pos], a str, or a list of str


def str_tokens_of(model: Any, tokens: torch.Tensor) -> list[str] | None:
    """The string form of one prompt's tokens, or None when the model has no tokenizer."""
    return None if getattr(model, "tokenizer", None) is None else str_tokens(model, tokens)


def as_tokens(model: Any, tokens: TokensLike, what: str) -> torch.Tensor:
    """``[batch, pos]`` int64 tokens on the model's device, from tokens or text."""
    if isinstance(tokens, str):
        tokens = [tokens]
    if isinstance(tokens, (list, tuple)) and tokens and all(isinstance(t, str) for t in tokens):
        rows = [model.to_tokens(t)[0] for t in tokens]
        lengths = {int(r.shape[0]) for r in rows}
        if len(lengths) != 1:
            raise InputError(
                f"the {what} prompts have different token counts ({sorted(lengths)}): every "
                "prompt of a batch needs the same length",
                details={"lengths": [int(r.shape[0]) for r in rows]},
            )
        tokens = torch.stack(rows)
    t = torch.as_tensor(tokens)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{what} tokens must be integer token ids, got dtype {t.dtype}")
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(
            f"{what} tokens must be shaped [batch, pos] (or [pos]), got {tuple(t.shape)}",
            details={"shape": list(t.shape)},
        )
    vocab = int(model.cfg.d_vocab)
    if int(t.min()) < 0 or int(t.max()) >= vocab:
        raise InputError(f"{what} tokens must lie in [0, {vocab}) (the model's vocabulary)")
    return t.long().to(model.cfg.device)


def check_inputs(
    model: Any, clean_tokens: TokensLike, corrupted_tokens: TokensLike, direction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the model and both prompt batches; returns ``(clean, corrupted)`` tensors."""
    if direction not in ("denoise", "noise"):
        raise InputError(
            f"direction must be 'denoise' (clean into corrupted) or 'noise' (corrupted into "
            f"clean), got {direction!r}"
        )
    if not hasattr(model, "run_with_cache") or not hasattr(model, "cfg"):
        raise InputError(
            f"patching needs a TransformerLens model (TransformerBridge), got {type(model).__name__}"
        )
    if any(m.training for m in model.modules()):
        raise InputError(
            "the model is in training mode (dropout would make patching random); call "
            "model.eval() first"
        )
    clean = as_tokens(model, clean_tokens, "clean")
    corrupted = as_tokens(model, corrupted_tokens, "corrupted")
    if clean.shape[1] != corrupted.shape[1]:
        ct, rt = str_tokens_of(model, clean[0]), str_tokens_of(model, corrupted[0])
        shown = ""
        if ct is not None and rt is not None:
            shown = f"; clean: {ct}; corrupted: {rt}"
        raise InputError(
            f"the clean and corrupted prompts have different token counts: clean has "
            f"{clean.shape[1]} tokens, corrupted has {corrupted.shape[1]}. Patching needs prompts "
            f"of the same length{shown}",
            details={
                "clean_length": int(clean.shape[1]),
                "corrupted_length": int(corrupted.shape[1]),
                "clean_tokens": ct,
                "corrupted_tokens": rt,
            },
        )
    if clean.shape[0] != corrupted.shape[0]:
        raise InputError(
            f"the clean and corrupted batches differ in size: {clean.shape[0]} clean prompts, "
            f"{corrupted.shape[0]} corrupted prompts; patching pairs them one to one",
            details={"clean_batch": int(clean.shape[0]), "corrupted_batch": int(corrupted.shape[0])},
        )
    return clean, corrupted


def require_site_hooks(model: Any, site: Site) -> None:
    """InputError when the model lacks the hook a site patches (e.g. ``mlp_out`` on an
    attention-only model, ``resid_mid`` on a parallel-attention model)."""
    hook_dict = model.hook_dict  # built on each access: read it once
    for layer in (0, int(model.cfg.n_layers) - 1):
        name = act_name(site.act, layer)
        if name not in hook_dict:
            why = ""
            if site.act in ("mlp_out", "resid_mid") and getattr(model.cfg, "attn_only", False):
                why = " (it is an attention-only model: it has no MLP layers)"
            elif site.act == "resid_mid" and getattr(model.cfg, "parallel_attn_mlp", False):
                why = " (its attention and MLP read the same residual in parallel)"
            elif site.act == "resid_mid":
                why = " (its blocks have no residual between attention and MLP)"
            raise InputError(
                f"site {site.name!r} patches {site.hook}, which this model does not have{why}",
                details={"site": site.name, "hook": name},
            )
