"""lenswidget: live notebook widgets for mechanistic interpretability.

``Lens(model)`` wraps a TransformerLens model; ``lens.attention(prompt)``,
``lens.patching(clean, corrupted, answer, wrong)`` and ``lens.logit_lens(prompt)`` make widgets
whose clicks rerun the model with hooks. ``lenswidget.analysis`` has the same computations as plain
functions; ``lenswidget.models`` loads embedded and Hugging Face models offline.
"""

from __future__ import annotations

from .errors import InputError, LensError, ModelLoadError, ProtocolError
from .session import Lens

__version__ = "0.1.0"
__all__ = ["Lens", "LensError", "InputError", "ModelLoadError", "ProtocolError", "__version__"]
