"""What :class:`~lenswidget.widgets.patching.PatchingHeatmap` derives from its patching results
(docs/protocol.md, PatchingHeatmap): result-map entries, the conversion between recovery and the
raw logit difference, a site's top-components rows, each pair's values of a patched run, and the
component a clicked cell selects. Pure functions of results and tensors; no traits."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Sequence

import torch

from ..analysis.components import top_components
from ..analysis.hooks import head_label
from ..analysis.metrics import logit_diff_metric
from ..analysis.patching import SITES, PatchResult
from ..encode import encode_tensor


def entry(result: PatchResult) -> dict:
    """One site's result map entry: float32 values plus what labels them."""
    data, _meta = encode_tensor(result.values, "f32")
    done = int(result.done_mask.sum()) if result.done_mask is not None else result.values.numel()
    out = {
        "data": data, "shape": list(result.values.shape), "dims": list(result.dims), "hook": result.hook,
        "partial": bool(result.partial), "done": done, "total": int(result.values.numel()), "method": result.method,
    }
    if result.head_labels and "head" in result.dims:
        # "H{h}", or "KV{g}" for the key/value groups of a grouped-query model's k/v sites
        out["labels"] = {"head": [re.sub(r"^L\d+", "", label) for label in result.head_labels[0]]}
    return out


def value_at(result: PatchResult | None, index: Sequence[int]) -> float | None:
    """The value of one cell, or None (no result, or not computed)."""
    if result is None:
        return None
    value = float(result.values[tuple(index)])
    return None if value != value else value


def metric_map(new: str, raw_clean: float, raw_corrupted: float) -> Callable[[Any], Any]:
    """The affine map from the other metric's values to ``new``'s: recovery ``(ld - corrupted) /
    (clean - corrupted)`` with the mean logit differences of the unpatched runs, or back."""
    a, b = raw_corrupted, raw_clean - raw_corrupted
    return (lambda v: (v - a) / b) if new == "normalized" else (lambda v: a + b * v)


def convert(result: PatchResult, f: Callable[[Any], Any]) -> PatchResult:
    """``result`` with its values and its clean / corrupted values mapped by ``f``."""
    return dataclasses.replace(
        result, values=f(result.values.double()).float(), clean_value=float(f(result.clean_value)),
        corrupted_value=float(f(result.corrupted_value)),
    )


def convert_cell(cell: dict, f: Callable[[Any], Any]) -> dict:
    """A cell result with its metric values mapped by ``f`` (``per_prompt`` is raw: unchanged)."""
    out = dict(cell)
    for key in ("value", "clean_value", "corrupted_value", "exact", "attribution"):
        if out.get(key) is not None:
            out[key] = float(f(out[key]))
    return out


def top_rows(
    exact: PatchResult | None, attr: PatchResult | None, k: int, raw_clean: float, raw_corrupted: float
) -> list[dict]:
    """A site's top components (:func:`~lenswidget.analysis.components.top_components`) over the
    values its heatmap shows: exact where the sweep computed them, else the attribution estimate
    (``source`` says which). Adds each row's raw ``logit_diff``."""
    result = exact if exact is not None else attr
    assert result is not None
    done = None
    if exact is None:
        done = torch.zeros(result.values.shape, dtype=torch.bool)
    elif attr is not None and exact.done_mask is not None and not bool(exact.done_mask.all()):
        done = exact.done_mask
        result = dataclasses.replace(exact, values=torch.where(done, exact.values, attr.values))
    rows = top_components(result, k)
    for row in rows:
        row["logit_diff"] = float(raw_corrupted + (raw_clean - raw_corrupted) * row["recovery"])
        row["source"] = "exact" if done is None or bool(done[tuple(row["index"])]) else "attribution"
    return rows


def per_prompt(answer_ids: list[int], wrong_ids: list[int], pairs: list[dict], logits: torch.Tensor) -> dict:
    """Each pair's logit difference on a patched run (``logits`` [n_pairs, pos, vocab]), on its
    clean and corrupted runs (from the ``pairs`` rows), and its own recovery (None where 0/0)."""
    with torch.inference_mode():
        patched = [float(v) for v in logit_diff_metric(answer_ids, wrong_ids).per_prompt(logits).tolist()]
    clean = [row["clean_logit_diff"] for row in pairs]
    corrupted = [row["corrupted_logit_diff"] for row in pairs]
    recovery = [None if c == x else float((v - x) / (c - x)) for v, c, x in zip(patched, clean, corrupted)]
    return {"logit_diff": patched, "clean_logit_diff": clean, "corrupted_logit_diff": corrupted, "recovery": recovery}


def selection_label(site: str, index: Sequence[int], result: PatchResult | None) -> str | None:
    """The component a cell names for the lens's selection: a head (``L9H9`` / ``L9KV1``), an MLP
    (``mlp9``) or an attention layer (``attn9``); None for residual-stream sites."""
    dims, act = SITES[site].dims, SITES[site].act
    layer = int(index[dims.index("layer")])
    if "head" in dims:
        h = int(index[dims.index("head")])
        return result.head_labels[layer][h] if result is not None and result.head_labels else head_label(layer, h)
    if act in ("mlp_out", "attn_out"):
        return f"{'mlp' if act == 'mlp_out' else 'attn'}{layer}"
    return None
