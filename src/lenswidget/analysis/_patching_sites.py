"""The patching sites: which hook each one patches, the axes of its result and the slice of the
activation that one cell of the result replaces. Shared by ``patching`` and ``attribution``.

A site mirrors one ``transformer_lens.patching.get_act_patch_{site}`` function: the same hook
(``activation_name``), the same result axes in the same order (``index_axis_names``) and the same
patch setter (which slice of the activation one cell replaces).

One site is patched differently from TransformerLens, on purpose: ``resid_mid``. On a
``TransformerBridge`` the hook ``blocks.L.hook_resid_mid`` sits on the MLP's input only; the skip
connection adds the unhooked sum ``resid_pre + attn_out``. Writing to that hook (what
TransformerLens 4.x's ``get_act_patch_resid_mid`` does) therefore changes what the MLP reads but
leaves the residual stream corrupted, and its sweep equals the ``mlp_out`` sweep. Here a
``resid_mid`` patch (:func:`patch_hooks`) sets ``blocks.L.hook_attn_out`` so that
``resid_pre + attn_out`` equals the wanted value on the cell's slice (the residual stream itself,
read by both the MLP and the skip path, as ``HookedTransformer`` patched it), and writes the same
value at ``hook_resid_mid`` too. :func:`grad_hook` gives the matching gradient for attribution
patching: the gradient at ``hook_attn_out`` is the gradient of the residual stream between
attention and MLP (both paths), the one at ``hook_resid_mid`` only the MLP's share.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from ..errors import InputError
from .hooks import act_name, head_label

# activation name -> the axes of one prompt's activation (batch dim dropped), by meaning:
# "pos"/"head" are indexed by a cell, None is a feature axis that a patch always takes whole.
_ACT_AXES: dict[str, tuple[str | None, ...]] = {
    "resid_pre": ("pos", None),
    "resid_mid": ("pos", None),
    "resid_post": ("pos", None),
    "attn_out": ("pos", None),
    "mlp_out": ("pos", None),
    "z": ("pos", "head", None),
    "q": ("pos", "head", None),
    "k": ("pos", "head", None),
    "v": ("pos", "head", None),
    "pattern": ("head", "dest_pos", "src_pos"),
}


@dataclass(frozen=True)
class Site:
    """One patching site.

    Attributes:
        name: the suffix of the matching TransformerLens function (``get_act_patch_{name}``).
        act: the TransformerLens activation name (``utilities.get_act_name(act, layer)``).
        dims: the result's axes, in TransformerLens's order: ``"layer"``, ``"pos"``, ``"head"``,
            ``"dest_pos"``, ``"src_pos"`` (every axis ending in ``pos`` is a token position).
        hook: the hook name pattern, e.g. ``"blocks.{layer}.attn.hook_z"``.
        description: one line for a menu.
        tl_function: the TransformerLens function name, or ``None`` where TransformerLens has no
            dedicated function (``resid_post``: it is TransformerLens's generic patcher with
            ``activation_name="resid_post"``). Its values equal ours on every site but
            ``resid_mid`` of a model with MLPs, which TransformerLens patches on the MLP's input
            only (see the module docstring).
        parts: for the ``*_every`` sites, the sites stacked on the leading ``patch_type`` axis.
    """

    name: str
    act: str
    dims: tuple[str, ...]
    hook: str
    description: str
    tl_function: str | None
    parts: tuple[str, ...] = ()

    @property
    def is_composite(self) -> bool:
        return bool(self.parts)


def _hook_pattern(act: str) -> str:
    return act_name(act, 0).replace("blocks.0.", "blocks.{layer}.", 1)


def _site(name: str, act: str, dims: tuple[str, ...], description: str, tl: bool = True) -> Site:
    return Site(
        name=name,
        act=act,
        dims=dims,
        hook=_hook_pattern(act),
        description=description,
        tl_function=f"get_act_patch_{name}" if tl else None,
    )


_SIMPLE: list[Site] = [
    _site("resid_pre", "resid_pre", ("layer", "pos"), "residual stream entering each block"),
    _site("resid_mid", "resid_mid", ("layer", "pos"), "residual stream between attention and MLP"),
    _site(
        "resid_post", "resid_post", ("layer", "pos"), "residual stream leaving each block", tl=False
    ),
    _site("attn_out", "attn_out", ("layer", "pos"), "attention layer output"),
    _site("mlp_out", "mlp_out", ("layer", "pos"), "MLP layer output"),
    _site("attn_head_out_all_pos", "z", ("layer", "head"), "each head's output (z), all positions"),
    _site(
        "attn_head_out_by_pos", "z", ("layer", "pos", "head"), "each head's output (z) by position"
    ),
    _site("attn_head_q_all_pos", "q", ("layer", "head"), "each head's queries, all positions"),
    _site("attn_head_q_by_pos", "q", ("layer", "pos", "head"), "each head's queries by position"),
    _site("attn_head_k_all_pos", "k", ("layer", "head"), "each head's keys, all positions"),
    _site("attn_head_k_by_pos", "k", ("layer", "pos", "head"), "each head's keys by position"),
    _site("attn_head_v_all_pos", "v", ("layer", "head"), "each head's values, all positions"),
    _site("attn_head_v_by_pos", "v", ("layer", "pos", "head"), "each head's values by position"),
    _site(
        "attn_head_pattern_all_pos",
        "pattern",
        ("layer", "head"),
        "each head's attention pattern, all positions",
    ),
    _site(
        "attn_head_pattern_by_pos",
        "pattern",
        ("layer", "head", "dest_pos"),
        "each head's attention pattern by destination position",
    ),
    _site(
        "attn_head_pattern_dest_src_pos",
        "pattern",
        ("layer", "head", "dest_pos", "src_pos"),
        "each single (destination, source) entry of each head's attention pattern",
    ),
]

_HEAD_PARTS = ("out", "q", "k", "v", "pattern")
_COMPOSITE: list[Site] = [
    Site(
        name="block_every",
        act="",
        dims=("patch_type", "layer", "pos"),
        hook=" | ".join(_hook_pattern(a) for a in ("resid_pre", "attn_out", "mlp_out")),
        description="resid_pre, attn_out and mlp_out stacked",
        tl_function="get_act_patch_block_every",
        parts=("resid_pre", "attn_out", "mlp_out"),
    ),
    Site(
        name="attn_head_all_pos_every",
        act="",
        dims=("patch_type", "layer", "head"),
        hook=" | ".join(_hook_pattern(a) for a in ("z", "q", "k", "v", "pattern")),
        description="head output, q, k, v and pattern (all positions) stacked",
        tl_function="get_act_patch_attn_head_all_pos_every",
        parts=tuple(f"attn_head_{p}_all_pos" for p in _HEAD_PARTS),
    ),
    Site(
        name="attn_head_by_pos_every",
        act="",
        dims=("patch_type", "layer", "pos", "head"),
        hook=" | ".join(_hook_pattern(a) for a in ("z", "q", "k", "v", "pattern")),
        description="head output, q, k, v and pattern (by position) stacked",
        tl_function="get_act_patch_attn_head_by_pos_every",
        parts=tuple(f"attn_head_{p}_by_pos" for p in _HEAD_PARTS),
    ),
]

#: Every site ``patch_sweep`` / ``attribution_patching`` accept, by name.
SITES: dict[str, Site] = {s.name: s for s in _SIMPLE + _COMPOSITE}


def get_site(site: str | Site) -> Site:
    if isinstance(site, Site):
        return site
    found = SITES.get(str(site))
    if found is None:
        # accept the TransformerLens function name too
        found = SITES.get(str(site).removeprefix("get_act_patch_"))
    if found is None:
        raise InputError(
            f"unknown patching site {site!r}; choose one of: {', '.join(SITES)}",
            details={"site": str(site), "sites": list(SITES)},
        )
    return found


# ------------------------------------------------------------------ geometry of one sweep
def n_heads_for(model: Any, act: str) -> int:
    """How many heads a site's head axis has: ``n_key_value_heads`` for k/v where the model
    has grouped-query attention (as TransformerLens does), else ``n_heads``."""
    cfg = model.cfg
    if act in ("k", "v") and getattr(cfg, "n_key_value_heads", None) is not None:
        return int(cfg.n_key_value_heads)
    return int(cfg.n_heads)


def axis_sizes(model: Any, site: Site, n_pos: int) -> dict[str, int]:
    return {
        "layer": int(model.cfg.n_layers),
        "pos": n_pos,
        "dest_pos": n_pos,
        "src_pos": n_pos,
        "head": n_heads_for(model, site.act),
        "patch_type": len(site.parts),
    }


def value_shape(model: Any, site: Site, n_pos: int) -> tuple[int, ...]:
    sizes = axis_sizes(model, site, n_pos)
    return tuple(sizes[d] for d in site.dims)


def iter_cells(shape: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Cells in TransformerLens's order (row-major, the last axis fastest)."""
    return itertools.product(*[range(n) for n in shape])


def region(site: Site, cell: Sequence[int]) -> tuple[Any, ...]:
    """The index (batch axis excluded) of the slice of ``site.act`` that ``cell`` replaces,
    exactly as TransformerLens's patch setter for that site."""
    where = dict(zip(site.dims, cell))
    out: list[Any] = []
    for axis in _ACT_AXES[site.act]:
        out.append(int(where[axis]) if axis is not None and axis in where else slice(None))
    return tuple(out)


Patch = Callable[[torch.Tensor], torch.Tensor]
Hook = Callable[..., torch.Tensor]


def patch_hooks(site: Site, layer: int, patch: Patch) -> list[tuple[str, Hook]]:
    """The ``(hook name, hook)`` pairs that apply ``patch`` to ``site``'s activation at ``layer``.

    ``patch`` maps the activation ``[batch, *act]`` (``act_name(site.act, layer)``) to its
    patched value. For every site but ``resid_mid`` that is one hook at that hook point. For
    ``resid_mid`` it is three, so the residual stream between attention and MLP is patched and
    not only the MLP's input (see the module docstring): ``hook_resid_pre`` keeps the block's
    input, ``hook_attn_out`` returns ``patch(resid_pre + attn_out) - resid_pre`` where the patch
    changes the sum (elsewhere ``attn_out`` untouched), and ``hook_resid_mid`` applies ``patch``
    to the MLP's input as well (a no-op up to rounding). Hooks fire in that order in a block.
    """
    name = act_name(site.act, layer)
    if site.act != "resid_mid":
        return [(name, lambda act, hook=None: patch(act))]
    seen: dict[str, torch.Tensor] = {}

    def keep_pre(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        seen["pre"] = act
        return act

    def set_attn_out(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        pre = seen.pop("pre", None)
        if pre is None or pre.shape != act.shape:
            raise RuntimeError(f"{act_name('resid_pre', layer)} did not fire before {act_name('attn_out', layer)}")
        mid = pre + act
        new = patch(mid)
        return torch.where(new != mid, new - pre, act)

    def set_mid(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        return patch(act)

    return [
        (act_name("resid_pre", layer), keep_pre),
        (act_name("attn_out", layer), set_attn_out),
        (name, set_mid),
    ]


def grad_hook(site: Site, layer: int) -> str:
    """The hook whose gradient is ``d metric / d (site's activation)`` along every path:
    ``hook_attn_out`` for ``resid_mid`` (``resid_mid = resid_pre + attn_out`` feeds both the MLP
    and the skip connection), else the site's own hook."""
    return act_name("attn_out" if site.act == "resid_mid" else site.act, layer)


def first_position(site: Site, cell: Sequence[int]) -> int:
    """The first token position a patch at ``cell`` can change: its ``pos`` / ``dest_pos`` index
    (causal attention: positions before it read nothing patched), else 0 (all-position sites)."""
    for axis in ("pos", "dest_pos"):
        if axis in site.dims:
            return int(cell[site.dims.index(axis)])
    return 0


def shift_cell(site: Site, cell: Sequence[int], start: int) -> tuple[int, ...]:
    """``cell`` in a run that computes only positions ``start..``: its ``pos`` / ``dest_pos``
    index minus ``start`` (``src_pos`` stays: keys of every position are still attended to)."""
    return tuple(
        int(i) - start if d in ("pos", "dest_pos") else int(i) for d, i in zip(site.dims, cell)
    )


def slice_act(site: Site, act: torch.Tensor, start: int) -> torch.Tensor:
    """A batch-first activation of ``site.act`` cut to the query positions ``start..``:
    ``[batch, pos, ...]`` -> ``[batch, pos - start, ...]``, a pattern ``[batch, head, dest, src]``
    -> ``[batch, head, dest - start, src]``."""
    if start == 0:
        return act
    axis = 1 + next(i for i, a in enumerate(_ACT_AXES[site.act]) if a in ("pos", "dest_pos"))
    return act.narrow(axis, start, act.shape[axis] - start)


def cell_mask(site: Site, cells: Sequence[Sequence[int]], act_shape: Sequence[int]) -> torch.Tensor:
    """``[len(cells), *act_shape]`` bool: True where each cell's patch replaces the activation."""
    mask = torch.zeros((len(cells), *act_shape), dtype=torch.bool)
    if not cells:
        return mask
    # one indexed store for all cells: each axis :func:`region` indexes takes every cell's index
    index: list[Any] = [torch.arange(len(cells))]
    for axis in _ACT_AXES[site.act]:
        if axis is not None and axis in site.dims:
            d = site.dims.index(axis)
            index.append(torch.tensor([int(c[d]) for c in cells]))
        else:
            index.append(slice(None))
    mask[tuple(index)] = True
    return mask


def labels(model: Any, site: Site, n_layers: int, str_tokens: list[str] | None) -> dict[str, Any]:
    heads = n_heads_for(model, site.act) if "head" in site.dims else 0
    grouped = site.act in ("k", "v") and heads != int(model.cfg.n_heads)
    head_labels = None
    if heads:
        head_labels = [
            [f"L{l}KV{h}" if grouped else head_label(l, h) for h in range(heads)]
            for l in range(n_layers)
        ]
    return {
        "layer_labels": [f"L{l}" for l in range(n_layers)],
        "pos_labels": None if str_tokens is None else list(str_tokens),
        "head_labels": head_labels,
    }
