"""Direct logit attribution: which components wrote what the model (or a logit-lens cell) predicts.

The residual stream at a position is a sum of what components wrote into it: the token embedding
(``hook_embed``), the positional embedding (``hook_pos_embed``, models with learned positions),
each attention head (``z[pos, h] @ W_O[h]``, from ``blocks.{l}.attn.hook_z``), the attention output
biases (``b_O``, one ``bias`` row for all layers) and each MLP layer (``blocks.{l}.hook_mlp_out``).
Once the final norm's scale ``s`` is fixed to the run's value, the norm is affine,
``ln(x) = gamma * P(x) / s + beta`` (``P`` subtracts the mean for LayerNorm, is the identity for
RMSNorm), so the logit of a token ``t`` splits exactly into one term per component::

    value_i   = (P(c_i) / s) · (gamma * u)          u = W_U[:, t]   (or W_U[:, t] - W_U[:, wrong])
    remainder = beta · u + b_U[t]                   (the final norm's bias and the unembedding bias)
    sum(values) + remainder + unexplained == logit

``unexplained`` is what the components do not account for (``|unexplained|`` stays below 1e-4 on
the architectures lenswidget supports: GPT-2, Pythia's parallel blocks, Llama/SmolLM2's RMSNorm and
grouped-query attention, Gemma's offset RMSNorm and scaled embeddings). On a layer whose
``attn_out`` is not the sum of its heads plus ``b_O`` (Gemma-2's post-attention norm), that layer
appears as one ``attn{l}`` component (kind ``"attn"``) instead of its heads; ``notes`` says so.

**Centring** (``center=True``, the default). A shift of every logit at a position by the same
amount changes no probability, so by default the target direction is centred over the vocabulary,
``u = W_U[:, t] - mean_v W_U[:, v]`` (and ``b_U[t] - mean(b_U)``): the decomposed ``logit`` is
then ``logit[t] - mean_v logit[v]``. This is exactly what TransformerLens's compatibility mode
(``enable_compatibility_mode()``: fold LayerNorm into ``W_U``, centre writing weights, centre
the unembedding) computes, without having to change the model:

* **raw bridge** (no compatibility mode), ``center=False``: ``logit`` is the model's own output
  logit of ``t`` (before any soft-capping) and the identity above holds with
  ``remainder = beta · W_U[:, t] + b_U[t]``. TL's ``logit_attrs`` does *not* equal these values on
  a raw bridge: it divides by the cached scale but ignores ``ln_final``'s weight and bias, so its
  parts neither match the model nor sum to its logit (TL's own DLA tool refuses raw bridges).
* **raw bridge**, ``center=True``: ``logit = logit[t] - mean_v logit[v]``; the per-layer values
  (``embed``, each layer's heads + bias, each MLP) equal TL's ``logit_attrs`` on the same model
  after ``enable_compatibility_mode()``. Per-head values differ from compatibility mode only by
  the value-bias terms compatibility mode moves from the heads into ``b_O``
  (``fold_value_biases``).
* **compatibility mode** (either ``center``; its ``W_U`` is already centred, ``gamma = 1`` and
  ``beta = 0`` are folded away): ``values`` equal TL's
  ``cache.logit_attrs(cache.get_full_resid_decomposition(expand_neurons=False))`` component by
  component, ``remainder = b_U[t]`` and ``logit`` is the compatibility-mode model's output logit.
* With ``wrong`` the decomposed quantity is ``logit[t] - logit[wrong]``; centring cancels there.

**Layers** (``layer=l``): the components that wrote ``blocks.{l}.hook_resid_pre`` (embeddings,
heads and MLPs of layers ``< l``), with the final norm applied to that partial stream as the logit
lens applies it to row ``l``: the scale is recomputed from ``resid_pre[l]`` itself (TL's
``accumulated_resid(apply_ln=True)``). So ``logit`` is the logit that lens cell shows
(``LogitLensResult.target_logit[l, pos]`` with ``center=False``), and the parts say "which
components wrote what this cell predicts". (TL's ``decompose_resid(layer=l, apply_ln=True)``
would instead divide by ``blocks.{l}.ln1``'s cached scale, the attention input's norm, not the
final norm the lens applies.) ``layer=None`` (or ``n_layers``) is the full model, using the
cached ``ln_final.hook_scale``.

Soft-capped models (Gemma-2, ``output_logits_soft_cap``): the decomposition is of the logit before
the cap (``cap * tanh(logit / cap)`` is not additive); the logit lens reports capped logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from .hooks import act_name, head_label
from .readout import (
    apply_final_norm,
    cache_tensor,
    check_pos,
    check_row,
    check_token_id,
    check_tokens,
    ensure_cache,
    has_cached,
    norm_params,
    resid_hooks,
    unembed_params,
)

BIAS_HOOK = "blocks.*.attn.b_O"


@dataclass(frozen=True, eq=False)
class DLAResult:
    """The direct logit attribution of one target at one position. ``n`` components.

    Attributes:
        labels: n labels: ``"embed"``, ``"pos_embed"``, ``"L{l}H{h}"`` (heads), ``"mlp{l}"``,
            ``"attn{l}"`` (a layer not split into heads), ``"bias"`` (all ``b_O`` together).
        hooks: n TransformerLens names: ``"hook_embed"``, ``"hook_pos_embed"``,
            ``"blocks.{l}.attn.hook_z"`` (with ``head_index``), ``"blocks.{l}.hook_mlp_out"``,
            ``"blocks.{l}.hook_attn_out"``, and ``"blocks.*.attn.b_O"`` (parameters, not a hook).
        kinds: n of ``"embed"``, ``"head"``, ``"mlp"``, ``"attn"``, ``"bias"``.
        layer_index, head_index: n ints or ``None`` (the layer / head of each component).
        values: float32 [n], each component's direct contribution to ``logit``.
        logit: the decomposed value: the target's logit (minus the mean logit when ``center``;
            minus the wrong token's logit with ``wrong``), at ``layer``, before soft-capping.
        remainder: the constant part, ``beta · u + b_U[t]`` (final-norm bias and unembedding bias).
        unexplained: ``logit - values.sum() - remainder``: what the components miss (~0).
        scale: the final norm's scale used (cached for the full model, recomputed for a layer).
        target, wrong: token ids. pos: the position (non-negative).
        layer: the lens row, ``0..n_layers`` (``n_layers`` = the full model).
        center: whether the target direction was centred over the vocabulary.
        notes: anything the caller should know (e.g. layers not split into heads).
    """

    labels: list[str]
    hooks: list[str]
    kinds: list[str]
    layer_index: list[int | None]
    head_index: list[int | None]
    values: torch.Tensor
    logit: float
    remainder: float
    unexplained: float
    scale: float
    target: int
    wrong: int | None
    pos: int
    layer: int
    center: bool
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def total(self) -> float:
        """``values.sum()``: with ``remainder`` (and ``unexplained``) it makes ``logit``."""
        return float(self.values.sum())

    def order(self) -> list[int]:
        """Component indices sorted by ``|value|``, largest first."""
        return [int(i) for i in torch.argsort(self.values.abs(), descending=True, stable=True)]

    def top(self, n: int | None = None) -> list[tuple[str, float]]:
        """The ``n`` largest contributors by ``|value|`` as ``[("L5H3", 1.23), ...]`` (all with ``None``)."""
        idx = self.order()[: (None if n is None else max(0, int(n)))]
        return [(self.labels[i], float(self.values[i])) for i in idx]

    def component(self, label: str) -> float:
        """The value of the component called ``label``."""
        try:
            return float(self.values[self.labels.index(label)])
        except ValueError:
            raise KeyError(f"no component {label!r}") from None


def _dla_hooks(n_layers: int) -> set[str]:
    names = {"hook_embed", "hook_pos_embed", "ln_final.hook_scale"}
    for l in range(n_layers):
        names |= {act_name("z", l), act_name("attn_out", l), act_name("mlp_out", l)}
    names |= set(resid_hooks(n_layers))
    return names


def direct_logit_attribution(
    model: Any,
    tokens: torch.Tensor | Sequence[int],
    target: int,
    *,
    pos: int = -1,
    wrong: int | None = None,
    layer: int | None = None,
    cache: Any = None,
    center: bool = True,
) -> DLAResult:
    """The direct logit attribution of ``target`` (or of ``target - wrong``) at ``pos``.

    See the module docstring for the exact identity ``sum(values) + remainder + unexplained ==
    logit``, what centring does, and how the values relate to TransformerLens with and without
    compatibility mode.

    Args:
        model: a TransformerLens ``TransformerBridge`` in eval mode.
        tokens: the prompt, LongTensor [pos] or [1, pos].
        target: the token id whose logit to decompose.
        pos: the position whose prediction to decompose (negative counts from the end).
        wrong: a token id: decompose the logit difference ``target - wrong`` instead.
        layer: ``None`` for the full model, or ``l`` in ``0..n_layers`` for the stream entering
            layer ``l`` read as the logit lens reads it (row ``l`` of :func:`logit_lens`).
        cache: an ``ActivationCache`` of this run to reuse; default: one run caching only what is needed.
        center: centre the target direction over the vocabulary (TL compatibility-mode numbers).

    Returns:
        A :class:`DLAResult`; ``values`` [n_components] float32.

    Raises:
        InputError: a position, layer or token id out of range, bad tokens or a mismatched cache.
    """
    tokens = check_tokens(model, tokens)
    n_layers = int(model.cfg.n_layers)
    target = check_token_id(model, target, what="target")
    if wrong is not None:
        wrong = check_token_id(model, wrong, what="wrong token")
    p = check_pos(pos, int(tokens.shape[0]))
    row = check_row(layer, n_layers)
    cache = ensure_cache(model, tokens, cache, names=_dla_hooks(n_layers))

    labels: list[str] = []
    hooks: list[str] = []
    kinds: list[str] = []
    layers: list[int | None] = []
    heads: list[int | None] = []
    vectors: list[torch.Tensor] = []
    notes: list[str] = []

    def add(label: str, hook: str, kind: str, l: int | None, h: int | None, vec: torch.Tensor) -> None:
        labels.append(label)
        hooks.append(hook)
        kinds.append(kind)
        layers.append(l)
        heads.append(h)
        vectors.append(vec.float())

    with torch.no_grad():
        add("embed", "hook_embed", "embed", None, None, cache_tensor(cache, "hook_embed", tokens)[p])
        if has_cached(cache, "hook_pos_embed"):
            add("pos_embed", "hook_pos_embed", "embed", None, None, cache_tensor(cache, "hook_pos_embed", tokens)[p])
        bias = None
        for l in range(row):
            block = model.blocks[l]
            attn_out = cache_tensor(cache, act_name("attn_out", l), tokens)[p].float()
            head_vecs = _head_results(model, l, cache_tensor(cache, act_name("z", l), tokens)[p])
            b_O = getattr(block.attn, "b_O", None)
            b_O = None if b_O is None else b_O.detach().float() * float(getattr(block, "residual_contribution_scale", 1.0))
            recon = head_vecs.sum(0) + (b_O if b_O is not None else 0.0)
            if _close(recon, attn_out, low_precision=model.W_U.dtype not in (torch.float32, torch.float64)):
                for h in range(head_vecs.shape[0]):
                    add(head_label(l, h), act_name("z", l), "head", l, h, head_vecs[h])
                if b_O is not None and bool(b_O.any()):
                    bias = b_O if bias is None else bias + b_O
            else:
                add(f"attn{l}", act_name("attn_out", l), "attn", l, None, attn_out)
                notes.append(
                    f"Layer {l}'s attention output is not the sum of its heads plus b_O (e.g. a post-attention "
                    f"norm), so it is shown as one component attn{l}."
                )
            if has_cached(cache, act_name("mlp_out", l)):
                add(f"mlp{l}", act_name("mlp_out", l), "mlp", l, None, cache_tensor(cache, act_name("mlp_out", l), tokens)[p])
        if bias is not None:
            add("bias", BIAS_HOOK, "bias", None, None, bias)

        # the stream being read, and the final norm's scale for it
        resid = cache_tensor(cache, resid_hooks(n_layers)[row], tokens)[p].float()
        norm = norm_params(model)
        if row == n_layers and norm.present and has_cached(cache, "ln_final.hook_scale"):
            scale = cache_tensor(cache, "ln_final.hook_scale", tokens)[p].reshape(-1)[0].float()
        else:
            scale = norm.scale(resid).reshape(-1)[0]

        # the direction in the residual stream and the constant terms
        W_U, b_U = unembed_params(model)
        u = W_U[:, target].float()
        b = float(b_U[target]) if b_U is not None else 0.0
        if wrong is not None:
            u = u - W_U[:, wrong].float()
            b -= float(b_U[wrong]) if b_U is not None else 0.0
        elif center:
            u = u - _vocab_mean(W_U)
            b -= float(b_U.float().mean()) if b_U is not None else 0.0
        direction = norm.gamma.to(u.device) * u

        stack = torch.stack(vectors).to(u.device)
        values = (norm.project(stack) / scale) @ direction
        remainder = float(norm.beta.to(u.device) @ u) + b

        # the logit itself, through the model's own norm module (as the logit lens reads it)
        normalized = apply_final_norm(model, resid[None].to(W_U.dtype)).float()[0]
        logit = float(normalized @ u) + b

    return DLAResult(
        labels=labels,
        hooks=hooks,
        kinds=kinds,
        layer_index=layers,
        head_index=heads,
        values=values.cpu(),
        logit=logit,
        remainder=remainder,
        unexplained=logit - float(values.sum()) - remainder,
        scale=float(scale),
        target=target,
        wrong=wrong,
        pos=p,
        layer=row,
        center=bool(center) and wrong is None,
        notes=notes,
    )


def _head_results(model: Any, layer: int, z: torch.Tensor) -> torch.Tensor:
    """Each head's write into the residual stream at one position: [n_heads, d_model], from
    ``z`` [n_heads, d_head] (TL's ``compute_head_results``, for one position only)."""
    attn = model.blocks[layer].attn
    W_O = attn.W_O.detach()  # [n_heads, d_head, d_model]
    dtype = torch.promote_types(z.dtype, W_O.dtype)
    out = (z.to(dtype)[:, :, None] * W_O.to(dtype)).sum(1).float()  # [n_heads, d_model]; einsum/bmm are slower on the strided W_O
    scale = getattr(attn, "_result_contribution_scale", 1.0)
    return out if scale == 1.0 else out * scale


def _vocab_mean(W_U: torch.Tensor) -> torch.Tensor:
    """``W_U.mean(dim=1)`` [d_model] as a matrix-vector product: ``W_U`` is usually a transposed
    view of the HF ``lm_head`` weight, where a strided reduction is ~50x slower."""
    ones = torch.ones(W_U.shape[1], dtype=W_U.dtype, device=W_U.device)
    return torch.mv(W_U, ones).float() / W_U.shape[1]


def _close(a: torch.Tensor, b: torch.Tensor, *, low_precision: bool) -> bool:
    tol = 2e-2 if low_precision else 1e-3
    return float((a - b).norm()) <= tol * (float(b.norm()) + 1e-6) + 1e-6
