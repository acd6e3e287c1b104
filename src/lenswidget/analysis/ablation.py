"""Head ablation: a hooked rerun with one or more heads' outputs removed.

A head's output is removed at ``blocks.{layer}.attn.hook_z`` (the per-head mix of values, before
the output projection), so nothing downstream of the head sees it:
- ``mode="zero"`` sets the head's z to 0;
- ``mode="mean"`` replaces it by the head's mean z (by default the mean over this prompt's
  positions; pass ``means`` from :func:`head_means` over a reference batch for a dataset mean);
- ``mode="resample"`` replaces it, at every position, by its z on another prompt of the same
  length (``source_tokens`` [n_src, pos], e.g. the corrupted prompts): one rerun per source
  prompt, in one batch, and the result is the average over the sources (the log-probs and
  logits of the reruns are averaged).

Components named as direct logit attribution names them (``L{l}H{h}``, ``mlp{l}``, ``attn{l}``)
are ablated the same three ways by :func:`component_ablation_hooks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from ..errors import InputError
from .hooks import act_name, head_label
from .text import str_tokens, top_tokens

MODES = ("zero", "mean", "resample")


@dataclass(frozen=True)
class AblationResult:
    """What a head ablation changed on one prompt.

    Attributes:
        heads: the ablated ``(layer, head)`` pairs.
        mode: ``"zero"``, ``"mean"`` or ``"resample"``.
        tokens: LongTensor [pos] of the prompt.
        logits_before, logits_after: float32 [pos, d_vocab] (``"resample"``: the mean of the
            reruns' logits over the source prompts).
        logprob_before, logprob_after: float32 [pos - 1]: log-prob of the actual next token at
            each position (position p predicts token p + 1); ``"resample"``: the mean over the
            source prompts of each rerun's log-prob.
        delta_logprob: ``logprob_after - logprob_before`` [pos - 1].
        str_tokens: the prompt's token strings (text).
        logprob_after_each: ``"resample"`` only: float32 [n_src, pos - 1], one row per source.
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
    logprob_after_each: torch.Tensor | None = None

    @property
    def n_sources(self) -> int:
        """How many source prompts a resample ablation averaged over (0 for zero / mean)."""
        return 0 if self.logprob_after_each is None else int(self.logprob_after_each.shape[0])

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
            "n_sources": self.n_sources,
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
    source_tokens: torch.Tensor | None = None,
    logits_before: torch.Tensor | None = None,
) -> AblationResult:
    """Rerun ``model`` on one prompt with ``heads`` ablated.

    Args:
        model: a TransformerBridge.
        tokens: LongTensor [1, pos].
        heads: one ``(layer, head)`` or several.
        mode: ``"zero"``, ``"mean"`` or ``"resample"``.
        means: [n_layers, n_heads, d_head] head means for ``"mean"`` (default: this prompt's,
            :func:`head_means`).
        source_tokens: LongTensor [n_src, pos] (or [pos]) for ``"resample"``: prompts of the
            same length as ``tokens`` whose z replaces the heads'; the result averages over them.
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
    sources = None
    run_tokens = tokens
    if mode == "resample":
        source_tokens = check_sources(tokens, source_tokens)
        names = {act_name("z", l) for l, _ in heads}
        sources = reference_activations(model, source_tokens, names)
        run_tokens = tokens.expand(source_tokens.shape[0], -1)

    fwd_hooks = head_ablation_hooks(heads, mode=mode, means=means, sources=sources)
    with torch.inference_mode():
        if logits_before is None:
            logits_before = model(tokens)
        logits_after = model.run_with_hooks(run_tokens, fwd_hooks=fwd_hooks).float()
    before = logits_before[0].float()
    lp_before = _next_token_logprobs(before, tokens[0])
    lp_each = torch.stack([_next_token_logprobs(a, tokens[0]) for a in logits_after])
    after = logits_after.mean(0)
    lp_after = lp_each.mean(0)
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
        logprob_after_each=lp_each.cpu() if mode == "resample" else None,
    )


def check_sources(tokens: torch.Tensor, source_tokens: Any) -> torch.Tensor:
    """``source_tokens`` as LongTensor [n_src, pos] on ``tokens``' device, or an
    :class:`InputError`: resample ablation needs at least one source prompt of the same length."""
    if source_tokens is None:
        raise InputError(
            "Resample ablation needs source prompts (source_tokens [n_src, pos]) of the same length "
            "as the prompt, e.g. the corrupted prompts."
        )
    if not isinstance(source_tokens, torch.Tensor) or source_tokens.is_floating_point():
        raise InputError(f"source_tokens must be a LongTensor of token ids, got {type(source_tokens).__name__}.")
    if source_tokens.ndim == 1:
        source_tokens = source_tokens[None]
    n_pos = int(tokens.shape[-1])
    if source_tokens.ndim != 2 or source_tokens.shape[0] == 0:
        raise InputError(f"source_tokens must be [n_src, pos] with n_src >= 1, got shape {tuple(source_tokens.shape)}.")
    if int(source_tokens.shape[1]) != n_pos:
        raise InputError(
            f"The resample prompts are {int(source_tokens.shape[1])} tokens long but the prompt is {n_pos}: "
            "resample ablation replaces each position's activation, so they must tokenize to the same length.",
            details={"n_tokens": n_pos, "n_source_tokens": int(source_tokens.shape[1])},
        )
    return source_tokens.long().to(tokens.device)


def reference_activations(model: Any, tokens: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """The activations ``names`` of a clean run on ``tokens`` [batch, pos]: hook name -> tensor."""
    wanted = frozenset(names)
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in wanted)
    return {n: cache[n] for n in wanted}


def head_ablation_hooks(
    heads: Sequence[tuple[int, int]],
    *,
    mode: str = "zero",
    means: torch.Tensor | None = None,
    sources: dict[str, torch.Tensor] | None = None,
) -> list[tuple[str, Any]]:
    """Forward hooks (for ``run_with_hooks`` / ``model.hooks``) that ablate ``heads`` at
    ``blocks.{l}.attn.hook_z``: zero, ``means`` [n_layers, n_heads, d_head] for ``"mean"``, or for
    ``"resample"`` the z of source prompts, ``sources[hook name]`` [n_src, pos, n_heads, d_head]
    (see :func:`reference_activations`); the rerun's batch must be ``n_src`` (or 1)."""
    if mode == "mean" and means is None:
        raise InputError("Mean ablation needs head means (see head_means).")
    if mode == "resample" and sources is None:
        raise InputError("Resample ablation needs the source prompts' activations (see reference_activations).")
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(int(layer), []).append(int(head))

    def make_hook(layer: int, idx: list[int]):
        def hook(z: torch.Tensor, hook: Any = None) -> torch.Tensor:
            z = z.clone()
            if mode == "zero":
                z[:, :, idx, :] = 0.0
            elif mode == "resample":
                z[:, :, idx, :] = sources[act_name("z", layer)][:, :, idx, :].to(z.dtype).to(z.device)
            else:
                z[:, :, idx, :] = means[layer, idx].to(z.dtype).to(z.device)
            return z

        return hook

    return [(act_name("z", layer), make_hook(layer, hs)) for layer, hs in by_layer.items()]


def component_ablation_hooks(
    model: Any,
    components: Iterable[str],
    *,
    mode: str = "zero",
    tokens: torch.Tensor | None = None,
    source_tokens: torch.Tensor | None = None,
) -> list[tuple[str, Any]]:
    """Forward hooks that ablate components named as direct logit attribution names them:
    ``"L{l}H{h}"`` (a head's z), ``"mlp{l}"`` (``blocks.{l}.hook_mlp_out``), ``"attn{l}"``
    (``blocks.{l}.hook_attn_out``). Raises :class:`InputError` for any other name.

    ``mode``: ``"zero"``; ``"mean"`` (each activation's mean over the positions of ``tokens``
    [1, pos], the prompt the hooks will run on); ``"resample"`` (its value on ``source_tokens``
    [n_src, pos], same length as ``tokens``: the hooked run's batch must be ``n_src``)."""
    import re

    if mode not in MODES:
        raise InputError(f"Unknown ablation mode {mode!r}: use one of {list(MODES)}.")
    heads: list[tuple[int, int]] = []
    names: list[str] = []
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
        names.append(hook_name)
    needed = set(names) | {act_name("z", l) for l, _ in heads}
    ref: dict[str, torch.Tensor] = {}
    if mode == "mean":
        if tokens is None:
            raise InputError("Mean ablation needs the prompt's tokens (its means are over its positions).")
        ref = {n: a.float().mean(dim=(0, 1), keepdim=True) for n, a in reference_activations(model, tokens, needed).items()}
    elif mode == "resample":
        if tokens is None:
            raise InputError("Resample ablation needs the prompt's tokens (to check the source prompts' length).")
        ref = reference_activations(model, check_sources(tokens, source_tokens), needed)

    def make_hook(name: str):
        def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            if mode == "zero":
                return torch.zeros_like(x)
            return ref[name].to(x.dtype).to(x.device).expand_as(x).clone()

        return hook

    hooks = [(n, make_hook(n)) for n in dict.fromkeys(names)]
    if heads:
        means = _means_table(model, ref) if mode == "mean" else None
        hooks = head_ablation_hooks(heads, mode=mode, means=means, sources=ref if mode == "resample" else None) + hooks
    return hooks


def _means_table(model: Any, ref: dict[str, torch.Tensor]) -> torch.Tensor:
    """[n_layers, n_heads, d_head] from per-layer z means in ``ref`` (zeros where a layer has none)."""
    cfg = model.cfg
    table = torch.zeros(int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_head))
    for layer in range(int(cfg.n_layers)):
        z = ref.get(act_name("z", layer))
        if z is not None:
            table[layer] = z[0, 0].float().cpu()
    return table


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
