"""The top components of a patching result: its cells ranked by how much patching them moves the
metric, with their recovery (0 = the corrupted run's metric, 1 = the clean run's).

A cell is a head (``L9H9``), a layer (``L9``) or a (layer, position) cell
(``L9 pos 14 ' Mary'``), named as the heatmaps name them. Cells are ranked by
``|recovery - baseline|``, the size of the patch's effect: the baseline is 0 when denoising
(clean activations into the corrupted run) and 1 when noising, so a negative recovery (a head that
pushes against the answer, e.g. a negative name mover) ranks by its size too.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import InputError
from .patching import PatchResult

__all__ = ["top_components", "cell_component_label"]


def cell_component_label(result: PatchResult, index: Sequence[int]) -> str:
    """``"L9H9"``, ``"L9"``, ``"L9 pos 14 ' Mary'"``, ``"L9H9 dest_pos 3 ' to'"``, ... for one cell of
    ``result`` (its index in ``result.values``)."""
    dims, idx = result.dims, [int(i) for i in index]
    layer = idx[dims.index("layer")] if "layer" in dims else None
    head = idx[dims.index("head")] if "head" in dims else None
    parts = []
    if "patch_type" in dims and result.patch_types:
        parts.append(result.patch_types[idx[dims.index("patch_type")]])
    if head is not None and layer is not None and result.head_labels:
        parts.append(result.head_labels[layer][head])
    elif head is not None:
        parts.append(f"L{layer}H{head}" if layer is not None else f"H{head}")
    elif layer is not None:
        parts.append(f"L{layer}")
    for d, i in zip(dims, idx):
        if d.endswith("pos"):
            tok = result.pos_labels[i] if result.pos_labels and i < len(result.pos_labels) else None
            parts.append(f"{d} {i}" + (f" {tok!r}" if tok is not None else ""))
    return " ".join(parts)


def top_components(result: PatchResult, k: int = 5) -> list[dict]:
    """The ``k`` cells of ``result`` whose patch moves the metric most, largest effect first.

    Args:
        result: an exact or attribution :class:`~lenswidget.analysis.PatchResult`; NaN cells (not
            computed) are left out.
        k: how many (fewer when fewer cells have values).

    Returns:
        ``[{"index": [int, ...], "label": str, "hook": str, "recovery": float, "value": float}]``:
        the cell's index in ``result.values``, its name, the concrete hook it patches, its
        recovery ``(value - corrupted) / (clean - corrupted)`` and its value in the result's own
        metric. Ties keep the cells' order in ``result.values``.

    Raises:
        InputError: ``k`` is not a positive int, or the metric has no range (clean == corrupted).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}.")
    recovery = result.normalized().reshape(-1).double()
    baseline = 0.0 if result.direction == "denoise" else 1.0
    effect = (recovery - baseline).abs()
    finite = torch.nonzero(torch.isfinite(effect)).reshape(-1)
    # a stable sort on the effect, largest first: ties keep their flat order
    order = finite[torch.sort(-effect[finite], stable=True).indices][:k]
    shape = result.values.shape
    rows = []
    for flat in order.tolist():
        index = [int(i) for i in torch.unravel_index(torch.tensor(flat), shape)]
        rows.append({
            "index": index,
            "label": cell_component_label(result, index),
            "hook": result.cell_hook(index),
            "recovery": float(recovery[flat]),
            "value": float(result.values.reshape(-1)[flat]),
        })
    return rows
