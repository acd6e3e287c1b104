"""Widget classes: thin anywidget views over a :class:`lenswidget.Lens`.

Each class mirrors one front-end module in ``js/`` (``attention.py`` ↔ ``js/attention.ts``).
"""

from __future__ import annotations

from .attention import AttentionGrid
from .base import LensWidget, Request

__all__ = ["AttentionGrid", "LensWidget", "Request"]
