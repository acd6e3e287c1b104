"""Head ablation: a hooked rerun with one or more heads' outputs removed.

A head's output is removed at ``blocks.{layer}.attn.hook_z`` (the per-head mix of values, before
the output projection), so nothing downstream of the head sees it:
- ``mode="zero"`` sets the head's z to 0;
- ``mode="mean"`` replaces it by the head's mean z (by default the mean over this prompt's
  positions; pass ``means`` from :func:`head_means` over a reference batch for a dataset mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from ..errors import InputError
from .hooks import act_name, head_label
from .text import str_tokens, top_tokens

MODES = ("zero", "mean")


@dataclass(frozen=True)
class AblationResult:
    """What a head ablation changed on one prompt.

    Attributes:
        heads: the ablated ``(layer, head)`` pairs.
        mode: ``"zero"`` or ``"mean"``.
        tokens: LongTensor [pos] of the prompt.
        logits_before, logits_after: float32 [pos, d_vocab].
        logprob_before, logprob_after: float32 [pos - 1]: log-prob of the actual next token at
            each position (position p predicts token p + 1).
        delta_logprob: ``logprob_after - logprob_before`` [pos - 1].
        str_tokens: the prompt's token strings (text).
    """

    heads: tuple[tuple[int, int], ...]
    mode: str
    tokens: torch.Tensor
    logits_before: torch.Tensor
    logits_after: torch.Tensor
    logprob_before: torch.Tensor
    logprob_after: torch.Tensor
    delta_logprob: torch.Tensor
    str_tokens: tuple[str, ...] = ()

    @property
    def labels(self) -> list[str]:
        return [head_label(l, h) for l, h in self.heads]

    @property
    def hooks(self) -> list[str]:
        return [act_name("z", l) for l, _ in self.heads]

    def top_predictions(self, which: str = "after", k: int = 10, pos: int = -1) -> list[tuple[int, float]]:
        """Top-``k`` next-token ``(id, prob)`` at ``pos`` for ``which`` in ``"before"``/``"after"``."""
        logits = self.logits_after if which == "after" else self.logits_before
        return [(t["id"], t["prob"]) for t in top_tokens(None, logits[pos], k)]

    def to_json(self, model: Any = None, k: int = 10) -> dict:
        """The JSON the front end draws (see docs/protocol.md). ``model`` decodes token strings."""

        toks = list(self.str_tokens)
        result = {
            "layer": self.heads[0][0],
            "head": self.heads[0][1],
            "heads": [list(h) for h in self.heads],
            "label": ", ".join(self.labels),
            "hook": ", ".join(dict.fromkeys(self.hooks)),
            "mode": self.mode,
            "tokens": toks,
            "next_tokens": toks[1:],
            "logprob_before": _floats(self.logprob_before),
            "logprob_after": _floats(self.logprob_after),
            "delta_logprob": _floats(self.delta_logprob),
            "mean_delta": float(self.delta_logprob.mean()) if self.delta_logprob.numel() else 0.0,
        }
        for which in ("before", "after"):
            logits = self.logits_after if which == "after" else self.logits_before
            result[f"top_{which}"] = top_tokens(model, logits[-1], k)
        return result


def head_means(model: Any, tokens: torch.Tensor, *, cache: Any = None) -> torch.Tensor:
    """Mean of every head's z over the batch and positions of ``tokens``: [n_layers, n_heads, d_head].

    Use a batch of reference prompts for dataset-mean ablation."""
    if cache is None:
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("attn.hook_z"))
    return torch.stack(
        [cache[act_name("z", l)].float().mean(dim=(0, 1)) for l in range(int(model.cfg.n_layers))]
    )


def ablate_heads(
    model: Any,
    tokens: torch.Tensor,
    heads: Iterable[tuple[int, int]] | tuple[int, int],
    *,
    mode: str = "zero",
    means: torch.Tensor | None = None,
    logits_before: torch.Tensor | None = None,
) -> AblationResult:
    """Rerun ``model`` on one prompt with ``heads`` ablated.

    Args:
        model: a TransformerBridge.
        tokens: LongTensor [1, pos].
        heads: one ``(layer, head)`` or several.
        mode: ``"zero"`` or ``"mean"``.
        means: [n_layers, n_heads, d_head] head means for ``"mean"`` (default: this prompt's,
            :func:`head_means`).
        logits_before: the clean logits [1, pos, d_vocab] if already computed (saves a pass).

    Returns:
        :class:`AblationResult` with the logits before/after and the per-position change in the
        log-probability of the actual next token.
    """
    if tokens.ndim == 1:
        tokens = tokens[None]
    heads = _check_heads(model, heads)
    if mode not in MODES:
        raise InputError(f"Unknown ablation mode {mode!r}: use one of {list(MODES)}.")
    if tokens.shape[-1] < 2:
        raise InputError("Ablation needs a prompt of at least two tokens.")
    if mode == "mean" and means is None:
        means = head_means(model, tokens)

    fwd_hooks = head_ablation_hooks(heads, mode=mode, means=means)
    with torch.inference_mode():
        if logits_before is None:
            logits_before = model(tokens)
        logits_after = model.run_with_hooks(tokens, fwd_hooks=fwd_hooks)
    before = logits_before[0].float()
    after = logits_after[0].float()
    lp_before = _next_token_logprobs(before, tokens[0])
    lp_after = _next_token_logprobs(after, tokens[0])
    return AblationResult(
        heads=tuple(heads),
        mode=mode,
        tokens=tokens[0].cpu(),
        logits_before=before.cpu(),
        logits_after=after.cpu(),
        logprob_before=lp_before.cpu(),
        logprob_after=lp_after.cpu(),
        delta_logprob=(lp_after - lp_before).cpu(),
        str_tokens=tuple(str_tokens(model, tokens[0])),
    )


def head_ablation_hooks(
    heads: Sequence[tuple[int, int]], *, mode: str = "zero", means: torch.Tensor | None = None
) -> list[tuple[str, Any]]:
    """Forward hooks (for ``run_with_hooks`` / ``model.hooks``) that ablate ``heads`` at
    ``blocks.{l}.attn.hook_z``: zero, or ``means`` [n_layers, n_heads, d_head] for ``"mean"``."""
    if mode == "mean" and means is None:
        raise InputError("Mean ablation needs head means (see head_means).")
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(int(layer), []).append(int(head))

    def make_hook(layer: int, idx: list[int]):
        def hook(z: torch.Tensor, hook: Any = None) -> torch.Tensor:
            z = z.clone()
            if mode == "zero":
                z[:, :, idx, :] = 0.0
            else:
                z[:, :, idx, :] = means[layer, idx].to(z.dtype).to(z.device)
            return z

        return hook

    return [(act_name("z", layer), make_hook(layer, hs)) for layer, hs in by_layer.items()]


def component_ablation_hooks(model: Any, components: Iterable[str]) -> list[tuple[str, Any]]:
    """Forward hooks that zero-ablate components named as direct logit attribution names them:
    ``"L{l}H{h}"`` (a head's z), ``"mlp{l}"`` (``blocks.{l}.hook_mlp_out``), ``"attn{l}"``
    (``blocks.{l}.hook_attn_out``). Raises :class:`InputError` for any other name."""
    import re

    heads: list[tuple[int, int]] = []
    hooks: list[tuple[str, Any]] = []

    def zero(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
        return torch.zeros_like(x)

    for name in components:
        m = re.fullmatch(r"L(\d+)H(\d+)|(mlp|attn)(\d+)", str(name))
        if m is None:
            raise InputError(f"Cannot ablate {name!r}: name a head 'L{{layer}}H{{head}}', 'mlp{{layer}}' or 'attn{{layer}}'.")
        if m.group(1) is not None:
            heads.extend(_check_heads(model, [(int(m.group(1)), int(m.group(2)))]))
            continue
        layer = int(m.group(4))
        if not 0 <= layer < int(model.cfg.n_layers):
            raise InputError(f"Layer {layer} is out of range: the model has layers 0..{int(model.cfg.n_layers) - 1}.")
        hook_name = act_name("mlp_out" if m.group(3) == "mlp" else "attn_out", layer)
        if hook_name not in model.hook_dict:
            raise InputError(f"This model has no {hook_name} (no {m.group(3).upper()} in layer {layer}).")
        hooks.append((hook_name, zero))
    return head_ablation_hooks(heads) + hooks if heads else hooks


def _next_token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    logprobs = torch.log_softmax(logits[:-1].double(), dim=-1)
    return logprobs.gather(-1, tokens[1:, None].to(logprobs.device))[:, 0].float()


def check_head(model: Any, layer: Any, head: Any) -> tuple[int, int]:
    """``(layer, head)`` as ints in range for ``model``, or an :class:`InputError` that says why."""
    if isinstance(layer, bool) or isinstance(head, bool) or not isinstance(layer, int) or not isinstance(head, int):
        raise InputError(f"Layer and head must be integers, got {(layer, head)!r}.")
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    if not 0 <= layer < n_layers:
        raise InputError(f"Layer {layer} is out of range: the model has layers 0..{n_layers - 1}.")
    if not 0 <= head < n_heads:
        raise InputError(f"Head {head} is out of range: each layer has heads 0..{n_heads - 1}.")
    return layer, head


def _check_heads(model: Any, heads: Any) -> list[tuple[int, int]]:
    if isinstance(heads, tuple) and len(heads) == 2 and all(isinstance(x, int) for x in heads):
        heads = [heads]
    out = []
    for item in heads:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise InputError(f"A head is a (layer, head) pair, got {item!r}.")
        out.append(check_head(model, *item))
    if not out:
        raise InputError("No heads to ablate.")
    return out


def _floats(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t.double().tolist()]
