"""TransformerLens hook names and component labels, in one place.

Component names everywhere in lenswidget (results, messages, tooltips) are TransformerLens hook
names and ``L{layer}H{head}`` labels, so a user who sees a cell knows which hook to use.
"""

from __future__ import annotations

# short site name -> hook name pattern (TransformerLens 4.x TransformerBridge names)
_HOOKS = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "z": "blocks.{layer}.attn.hook_z",
    "q": "blocks.{layer}.attn.hook_q",
    "k": "blocks.{layer}.attn.hook_k",
    "v": "blocks.{layer}.attn.hook_v",
    "pattern": "blocks.{layer}.attn.hook_pattern",
    "attn_scores": "blocks.{layer}.attn.hook_attn_scores",
    "result": "blocks.{layer}.attn.hook_result",
    "scale_final": "ln_final.hook_scale",
}


def act_name(site: str, layer: int | None = None) -> str:
    """The TransformerLens hook name for ``site`` at ``layer`` (e.g. ``act_name("z", 1)`` ->
    ``"blocks.1.attn.hook_z"``). Raises ``KeyError`` for an unknown site."""
    pattern = _HOOKS[site]
    if "{layer}" in pattern:
        if layer is None:
            raise ValueError(f"site {site!r} needs a layer")
        return pattern.format(layer=int(layer))
    return pattern


def head_label(layer: int, head: int) -> str:
    """``L{layer}H{head}``, the label of one attention head."""
    return f"L{int(layer)}H{int(head)}"
