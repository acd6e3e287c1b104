"""lenswidget: live notebook widgets for mechanistic interpretability.

``Lens(model)`` wraps a TransformerLens model; ``lens.attention(prompt)``,
``lens.patching(clean, corrupted, answer, wrong)`` and ``lens.logit_lens(prompt)`` make widgets
whose clicks rerun the model with hooks. ``lenswidget.analysis`` has the same computations as plain
functions; ``lenswidget.models`` loads embedded and Hugging Face models offline.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import InputError, LensError, ModelLoadError, ProtocolError
from .session import Lens

__version__ = "0.1.0"
__all__ = ["Lens", "LensError", "InputError", "ModelLoadError", "ProtocolError", "__version__", "analysis", "models", "widgets"]

#: subpackages that ``lenswidget.<name>`` imports on first use (``import lenswidget`` stays cheap)
_LAZY = ("analysis", "models", "widgets")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'lenswidget' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
