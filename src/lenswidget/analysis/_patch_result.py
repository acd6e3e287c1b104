"""What activation patching returns (:mod:`.patching`): :class:`PatchResult` (a sweep's values
with their labels, TransformerLens's shape) and :class:`PatchOne` (one patched rerun), built by
:func:`make_result`; :func:`stack_parts` stacks the parts of the ``*_every`` sites.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..errors import InputError
from ._patching_inputs import str_tokens_of
from ._patching_sites import Site, get_site, labels
from .hooks import act_name


@dataclass
class PatchResult:
    """The result of a patching sweep (exact or attribution).

    Attributes:
        values: the metric after patching each cell, float32 on the CPU, shaped like
            ``transformer_lens.patching.get_act_patch_{site}``'s result (see ``dims``).
            Cells a cancelled sweep did not reach are NaN.
        dims: the axis names of ``values``: ``("layer", "pos")``, ``("layer", "head")``,
            ``("layer", "pos", "head")``, ``("layer", "head", "dest_pos")``, ... Every axis whose
            name ends in ``pos`` is a token position (labelled by ``pos_labels``); ``"patch_type"``
            leads the ``*_every`` sites (labelled by ``patch_types``).
        site: the site name (a key of :data:`SITES`).
        hook: the TransformerLens hook name pattern, e.g. ``"blocks.{layer}.attn.hook_z"``
            (``" | "``-joined for the ``*_every`` sites).
        clean_value / corrupted_value: the metric on the unpatched clean / corrupted runs.
        direction: ``"denoise"`` (clean into corrupted, TransformerLens's) or ``"noise"``.
        method: ``"exact"`` (:func:`patch_sweep`) or ``"attribution"``.
        layer_labels: ``["L0", "L1", ...]``.
        pos_labels: the clean prompt's tokens as strings (first prompt of the batch), or None
            when the model has no tokenizer; ``corrupted_pos_labels`` likewise.
        head_labels: ``[layer][head]`` -> ``"L{l}H{h}"`` (``"L{l}KV{g}"`` for the key/value
            heads of a grouped-query model), or None when the site has no head axis.
        patch_types: for the ``*_every`` sites, the stacked sites in order (else empty).
        partial: True when the sweep was cancelled before every cell was run.
        done_mask: bool, shaped like ``values``: True where the cell was computed.
        stats: how the sweep ran (engine, batches, runs, tokens through the blocks, seconds;
            ``shared_prefix``: the leading positions every pair's prompts share, where runs
            start at the earliest; ``unchanged_cells``: cells patched only there, whose value is
            the base run's without a run; see ``_patching_engine``).
    """

    values: torch.Tensor
    dims: tuple[str, ...]
    site: str
    hook: str
    clean_value: float
    corrupted_value: float
    direction: str = "denoise"
    method: str = "exact"
    layer_labels: list[str] = field(default_factory=list)
    pos_labels: list[str] | None = None
    corrupted_pos_labels: list[str] | None = None
    head_labels: list[list[str]] | None = None
    patch_types: tuple[str, ...] = ()
    partial: bool = False
    done_mask: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def baseline_value(self) -> float:
        """The metric of the run being patched: corrupted for denoising, clean for noising."""
        return self.corrupted_value if self.direction == "denoise" else self.clean_value

    def normalized(self) -> torch.Tensor:
        """``(values - corrupted) / (clean - corrupted)``: 0 = the corrupted run's metric, 1 = the
        clean run's. Raises InputError when the two are equal (the metric has no range)."""
        span = self.clean_value - self.corrupted_value
        if span == 0 or span != span:
            raise InputError(
                "the metric has no range: the prompts give the same value "
                f"({self.clean_value:.4g} clean, {self.corrupted_value:.4g} corrupted)",
                details={"clean_value": self.clean_value, "corrupted_value": self.corrupted_value},
            )
        return (self.values - self.corrupted_value) / span

    def cell_hook(self, index: Sequence[int]) -> str:
        """The concrete hook name a cell patches, e.g. ``"blocks.3.attn.hook_z"``."""
        site = get_site(self.site)
        if site.is_composite:
            site = get_site(site.parts[int(index[0])])
            index = index[1:]
        return act_name(site.act, int(index[0]))

    def cell_label(self, index: Sequence[int]) -> str:
        """A short human label of a cell: hook, position token and head."""
        parts = [self.cell_hook(index)]
        dims = self.dims
        for d, i in zip(dims, index):
            if d.endswith("pos"):
                tok = self.pos_labels[int(i)] if self.pos_labels else None
                parts.append(f"{d} {int(i)}" + (f" {tok!r}" if tok is not None else ""))
            elif d == "head":
                parts.append(f"head {int(i)}")
        return ", ".join(parts)


@dataclass
class PatchOne:
    """One patched rerun (:func:`patch_one`).

    Attributes:
        value: the metric on the patched run (``float(result)`` gives it too).
        logits: ``[batch, pos, vocab]`` logits of the patched run.
        site / index / hook: which cell was patched, and the concrete hook name.
        direction: ``"denoise"`` or ``"noise"``.
    """

    value: float
    logits: torch.Tensor
    site: str
    index: tuple[int, ...]
    hook: str
    direction: str

    def __float__(self) -> float:
        return float(self.value)


def make_result(
    model: Any,
    site: Site,
    values: torch.Tensor,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    *,
    base_value: float,
    source_value: float,
    direction: str,
    method: str,
    partial: bool,
    done_mask: torch.Tensor,
    stats: dict,
) -> PatchResult:
    """A :class:`PatchResult` with its labels, from the metric on the run being patched
    (``base_value``) and on the run patched from (``source_value``)."""
    clean_value, corrupted_value = (
        (source_value, base_value) if direction == "denoise" else (base_value, source_value)
    )
    return PatchResult(
        values=values,
        dims=site.dims,
        site=site.name,
        hook=site.hook,
        clean_value=clean_value,
        corrupted_value=corrupted_value,
        direction=direction,
        method=method,
        corrupted_pos_labels=str_tokens_of(model, corrupted[0]),
        partial=partial,
        done_mask=done_mask,
        stats=stats,
        **labels(model, site, int(model.cfg.n_layers), str_tokens_of(model, clean[0])),
    )


def stack_parts(model: Any, site: Site, parts: list[PatchResult], method: str) -> PatchResult:
    """Stack the parts of a ``*_every`` site as TransformerLens does: k/v head axes zero-padded
    to ``n_heads`` (grouped-query models), the by-position pattern moved to [layer, pos, head]."""
    n_heads = int(model.cfg.n_heads)
    vals, masks = [], []
    for part in parts:
        v, m = part.values, part.done_mask
        assert m is not None
        if part.dims == ("layer", "head", "dest_pos"):
            v, m = v.permute(0, 2, 1), m.permute(0, 2, 1)
        if "head" in site.dims and v.shape[-1] != n_heads:
            pad = n_heads - v.shape[-1]
            v = torch.nn.functional.pad(v, (0, pad))
            m = torch.cat([m, m[..., :1].expand(*m.shape[:-1], pad)], dim=-1)
        vals.append(v)
        masks.append(m)
    first = parts[0]
    stats = {"parts": [p.stats for p in parts]}
    for key in ("runs", "batches", "block_tokens", "unembed_tokens", "unchanged_cells", "seconds"):
        stats[key] = sum(p.stats.get(key, 0) for p in parts)
    stats["engine"] = ",".join(sorted({str(p.stats.get("engine", "")) for p in parts}))
    head_labels = None
    if "head" in site.dims:
        head_labels = labels(model, get_site("attn_head_out_all_pos"), int(model.cfg.n_layers), None)[
            "head_labels"
        ]
    return PatchResult(
        values=torch.stack(vals),
        dims=site.dims,
        site=site.name,
        hook=site.hook,
        clean_value=first.clean_value,
        corrupted_value=first.corrupted_value,
        direction=first.direction,
        method=method,
        layer_labels=first.layer_labels,
        pos_labels=first.pos_labels,
        corrupted_pos_labels=first.corrupted_pos_labels,
        head_labels=head_labels,
        patch_types=site.parts,
        partial=any(p.partial for p in parts),
        done_mask=torch.stack(masks),
        stats=stats,
    )
