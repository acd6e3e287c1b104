"""The cell result of one patched cell of a :class:`~lenswidget.widgets.patching.PatchingHeatmap`
(the ``cell_result`` trait, docs/protocol.md): its label and hook, the patched, clean, corrupted,
exact and attribution values, the top tokens before and after the patch, each pair's value, and
for a head cell that head's clean and corrupted attention patterns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..analysis._patching_sites import n_heads_for
from ..analysis.hooks import act_name, head_label
from ..analysis.patching import SITES, PatchResult
from ..analysis.text import top_tokens
from ..encode import encode_tensor
from ._patching_results import per_prompt, value_at

if TYPE_CHECKING:  # pragma: no cover
    from .patching import PatchingHeatmap


def patched_cell(hm: "PatchingHeatmap", site: str, one: Any, result_for_labels: PatchResult | None) -> dict:
    """The ``cell_result`` of ``one`` (``patch_one``'s result at ``site``) on ``hm``'s current
    pairs, direction and metric; ``result_for_labels`` (exact, else attribution) names the cell."""
    model = hm.lens.model
    baseline = hm._corrupted if hm.direction == "denoise" else hm._clean
    with torch.inference_mode():
        before = hm.lens.run(baseline).logits
    dims = SITES[site].dims
    cell = {
        "site": site,
        "index": [int(i) for i in one.index],
        "label": result_for_labels.cell_label(one.index) if result_for_labels else one.hook,
        "hook": one.hook,
        "value": float(one.value),
        "clean_value": float(hm.clean_value),
        "corrupted_value": float(hm.corrupted_value),
        "exact": value_at(hm.exact_results.get(site), one.index),
        "attribution": value_at(hm.attribution_results.get(site), one.index),
        "top_before": top_tokens(model, before[0, -1]),
        "top_after": top_tokens(model, one.logits[0, -1]),
    }
    if "head" in dims and n_heads_for(model, SITES[site].act) == hm.lens.n_heads:
        layer, head = int(one.index[dims.index("layer")]), int(one.index[dims.index("head")])
        pats = []
        for tokens in (hm._clean, hm._corrupted):
            pattern = hm.lens.run(tokens).cache[act_name("pattern", layer)][0, head]
            pats.append(encode_tensor(pattern, "f32")[0])
        cell["head"] = {
            "layer": layer, "head": head, "label": head_label(layer, head), "tokens": list(hm.clean_tokens),
            "clean_pattern": pats[0], "corrupted_pattern": pats[1], "shape": [len(hm.clean_tokens)] * 2,
        }
    assert hm._pairs is not None
    cell["per_prompt"] = per_prompt(hm._pairs.answer_ids, hm._pairs.wrong_ids, hm.pairs, one.logits)
    return cell
