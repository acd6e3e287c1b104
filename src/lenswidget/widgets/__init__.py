"""Widget classes: thin anywidget views over a :class:`lenswidget.Lens`.

Each class mirrors one front-end module in ``js/``: ``attention.py`` ↔ ``js/attention.ts``
(:class:`AttentionGrid`), ``patching.py`` ↔ ``js/patching.ts`` (:class:`PatchingHeatmap`),
``logit_lens.py`` ↔ ``js/logit_lens.ts`` (:class:`LogitLensTable`), ``circuit.py`` ↔ ``js/circuit.ts``
(:class:`CircuitGraph`), ``weights.py`` ↔ ``js/weights.ts`` (:class:`WeightsView`). ``base.py`` holds the request
machinery they share.
"""

from __future__ import annotations

from .attention import AttentionGrid
from .base import LensWidget, Request
from .circuit import CircuitGraph
from .logit_lens import LogitLensTable
from .patching import PatchingHeatmap
from .weights import WeightsView
from .workspace import Workspace

__all__ = ["AttentionGrid", "CircuitGraph", "LensWidget", "LogitLensTable", "PatchingHeatmap", "Request", "WeightsView", "Workspace"]
