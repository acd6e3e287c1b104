"""Pure torch analysis: functions from a model and tokens to tensors with labels.

Nothing here knows about widgets. Every function takes a TransformerLens ``TransformerBridge``
(in eval mode) and token tensors, and returns tensors or small result dataclasses whose fields
say their shapes. Correctness lives here and is tested against TransformerLens's own functions.

Names are imported lazily so ``import lenswidget`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # heads.py: attention head scores
    "head_scores": "heads",
    "HeadScores": "heads",
    "induction_probe": "heads",
    "attention_patterns": "heads",
    "detection_patterns": "heads",
    "repeated_random_tokens": "heads",
    "SCORE_NAMES": "heads",
    # attention_stream.py: scores and pooled thumbnails of long prompts, one layer at a time
    "stream_attention": "attention_stream",
    "StreamedAttention": "attention_stream",
    "head_pattern": "attention_stream",
    "PatternOverview": "attention_stream",
    "PatternWindow": "attention_stream",
    # ablation.py: hooked reruns with heads removed
    "ablate_heads": "ablation",
    "AblationResult": "ablation",
    "head_means": "ablation",
    "head_ablation_hooks": "ablation",
    "component_ablation_hooks": "ablation",
    "reference_activations": "ablation",
    # patching.py / attribution.py / metrics.py: activation patching
    "patch_sweep": "patching",
    "patch_one": "patching",
    "PatchOne": "patching",
    "PatchResult": "patching",
    "SITES": "patching",
    "attribution_patching": "attribution",
    "logit_diff_metric": "metrics",
    "answer_prob_metric": "metrics",
    "normalized_metric": "metrics",
    "top_components": "components",
    # readout.py (the logit lens) / dla.py
    "logit_lens": "readout",
    "LogitLensResult": "readout",
    "target_stats": "readout",
    "direct_logit_attribution": "dla",
    "DLAResult": "dla",
    # hooks.py: TransformerLens hook names
    "act_name": "hooks",
    "head_label": "hooks",
    # circuits.py: circuit discovery (edge attribution, exact edge patching, faithfulness)
    "component_graph": "circuits",
    "ComponentGraph": "circuits",
    "edge_attribution": "circuits",
    "EdgeScores": "circuits",
    "circuit_metric": "circuits",
    "patch_edge": "circuits",
    "faithfulness_curve": "circuits",
    "FaithfulnessCurve": "circuits",
    "MIB_FRACTIONS": "circuits",
    # promoted.py: what one component's output promotes / suppresses
    "promoted_tokens": "promoted",
    "PromotedTokens": "promoted",
    # weights.py: circuits read from the weights (composition, OV / QK circuits, copying)
    "composition_scores": "weights",
    "all_composition_scores": "weights",
    "Composition": "weights",
    "random_baseline": "weights",
    "copying_scores": "weights",
    "ov_eigenvalues": "weights",
    "ov_circuit": "weights",
    "qk_circuit": "weights",
    "direct_path": "weights",
    "TokenTable": "weights",
    "head_weights": "weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lenswidget.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
