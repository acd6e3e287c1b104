"""What one component does at one position: the tokens its output promotes and suppresses.

``promoted_tokens`` reads a node's output (``embed``: ``blocks.0.hook_resid_pre``; ``L{l}H{h}``:
``z[pos, h] @ W_O[h]``; ``mlp{l}``: ``blocks.{l}.hook_mlp_out``) through the final norm *with the
run's own scale* (``ln_final.hook_scale`` at ``pos``) and the unembedding, the target direction
centred over the vocabulary, exactly as :func:`~lenswidget.analysis.direct_logit_attribution`
computes a component's value: ``value[t] = (P(out) / scale) . (gamma * (W_U[:, t] - mean_v W_U[:, v]))``.
So ``values[t]`` is the component's direct logit attribution to token ``t``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from .dla import _head_results, _vocab_mean
from .readout import check_pos, check_tokens, norm_params, unembed_params
from .text import str_tokens

_HEAD = re.compile(r"^L(\d+)H(\d+)$")
_MLP = re.compile(r"^mlp(\d+)$")


@dataclass(frozen=True, eq=False)
class PromotedTokens:
    """The tokens one component's output raises and lowers most at one position.

    Attributes:
        component: the node label; pos: the position (non-negative).
        promoted_ids, promoted_values: LongTensor [k], float32 [k], largest value first.
        promoted: ``[(token, id, value), ...]`` the same k tokens as text; suppressed_ids /
            suppressed_values / suppressed likewise, most negative first.
        values: float32 [d_vocab], the component's direct logit attribution to every token.
        attention: float32 [pos + 1] for a head: its attention from ``pos`` to each source
            position (``hook_pattern``); ``None`` otherwise. attended: ``[(src_pos, token,
            weight), ...]`` the top-k sources, largest weight first (empty for non-heads).
        scale: the final norm's scale at ``pos``.
    """

    component: str
    pos: int
    promoted_ids: torch.Tensor
    promoted_values: torch.Tensor
    promoted: list[tuple[str, int, float]]
    suppressed_ids: torch.Tensor
    suppressed_values: torch.Tensor
    suppressed: list[tuple[str, int, float]]
    values: torch.Tensor
    attention: torch.Tensor | None
    attended: list[tuple[int, str, float]]
    scale: float


def _parse(model: Any, component: Any) -> tuple[str, int | None, int | None]:
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    c = str(component)
    if c == "embed":
        return "embed", None, None
    m = _HEAD.match(c)
    if m and int(m.group(1)) < n_layers and int(m.group(2)) < n_heads:
        return "head", int(m.group(1)), int(m.group(2))
    m = _MLP.match(c)
    if m and int(m.group(1)) < n_layers and f"blocks.{m.group(1)}.hook_mlp_out" in model.hook_dict:
        return "mlp", int(m.group(1)), None
    raise InputError(
        f"unknown component {component!r}: give 'embed', 'L{{l}}H{{h}}' (l < {n_layers}, h < {n_heads})"
        + (" or 'mlp{l}'" if "blocks.0.hook_mlp_out" in model.hook_dict else " (this model has no MLPs)"),
        details={"component": c},
    )


def _rows(model: Any, ids: torch.Tensor, values: torch.Tensor) -> list[tuple[str, int, float]]:
    return [(t, int(i), float(v)) for t, i, v in zip(str_tokens(model, ids), ids.tolist(), values.tolist())]


def promoted_tokens(
    model: Any, tokens: Any, component: str, pos: int = -1, k: int = 10, *, prompt: int = 0
) -> PromotedTokens:
    """The ``k`` tokens whose logits ``component``'s output at ``pos`` raises most and lowers most
    (its centred direct logit attribution, see the module docstring), and for a head the source
    positions it attends to from ``pos``.

    Args:
        model: a TransformerBridge in eval mode. tokens: one prompt, [pos] or [1, pos], or a
            batch [batch, pos] of which prompt ``prompt`` is read.
        component: ``"embed"``, ``"L{l}H{h}"`` or ``"mlp{l}"``. pos: negative counts from the end.
        k: how many tokens each way (1..d_vocab).

    Raises:
        InputError: an unknown component, a position or k out of range, bad tokens.
    """
    if isinstance(tokens, torch.Tensor) and tokens.ndim == 2 and tokens.shape[0] > 1:
        if isinstance(prompt, bool) or not isinstance(prompt, int) or not 0 <= prompt < tokens.shape[0]:
            raise InputError(f"prompt must be an index in 0..{tokens.shape[0] - 1}, got {prompt!r}")
        tokens = tokens[prompt]
    toks = check_tokens(model, tokens)
    kind, layer, head = _parse(model, component)
    p = check_pos(pos, int(toks.shape[0]))
    d_vocab = int(model.cfg.d_vocab)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_vocab:
        raise InputError(f"k must be an integer in 1..{d_vocab}, got {k!r}")
    names = ["ln_final.hook_scale"]
    if kind == "embed":
        names.append("blocks.0.hook_resid_pre")
    elif kind == "head":
        names += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.hook_pattern"]
    else:
        names.append(f"blocks.{layer}.hook_mlp_out")
    with torch.no_grad():
        _, cache = model.run_with_cache(toks[None], names_filter=lambda n: n in names)
        if kind == "embed":
            vec = cache["blocks.0.hook_resid_pre"][0, p]
        elif kind == "head":
            vec = _head_results(model, layer, cache[f"blocks.{layer}.attn.hook_z"][0, p])[head]
        else:
            vec = cache[f"blocks.{layer}.hook_mlp_out"][0, p]
        norm = norm_params(model)
        scale = cache["ln_final.hook_scale"][0, p].reshape(-1)[0].float() if "ln_final.hook_scale" in cache else torch.tensor(1.0)
        W_U, _ = unembed_params(model)
        x = (norm.project(vec.float()[None]) / scale)[0] * norm.gamma.to(vec.device)
        values = (x.to(W_U.dtype) @ W_U).float() - float(x @ _vocab_mean(W_U))
        top = values.topk(k)
        bottom = (-values).topk(k)
        attention, attended = None, []
        if kind == "head":
            attention = cache[f"blocks.{layer}.attn.hook_pattern"][0, head, p, : p + 1].float().cpu()
            w, src = attention.topk(min(k, p + 1))
            src_strs = str_tokens(model, toks[src])
            attended = [(int(s), t, float(v)) for s, t, v in zip(src.tolist(), src_strs, w.tolist())]
    return PromotedTokens(
        component=str(component), pos=p,
        promoted_ids=top.indices.cpu(), promoted_values=top.values.cpu(),
        promoted=_rows(model, top.indices.cpu(), top.values.cpu()),
        suppressed_ids=bottom.indices.cpu(), suppressed_values=(-bottom.values).cpu(),
        suppressed=_rows(model, bottom.indices.cpu(), (-bottom.values).cpu()),
        values=values.cpu(), attention=attention, attended=attended, scale=float(scale),
    )
