"""`import lenswidget` alone: the subpackages resolve on first use and the import stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = r"""
import sys, time
t0 = time.perf_counter()
import lenswidget
elapsed = time.perf_counter() - t0
heavy = [m for m in ("transformer_lens", "transformers", "anywidget", "lenswidget.models", "lenswidget.widgets") if m in sys.modules]
assert not heavy, f"import lenswidget pulled in {heavy}"
toy = lenswidget.models.toy          # was AttributeError before
ablate = lenswidget.analysis.ablate_heads
grid = lenswidget.widgets.AttentionGrid
assert "lenswidget.models" in sys.modules and "lenswidget.widgets" in sys.modules
assert {"models", "analysis", "widgets"} <= set(dir(lenswidget))
try:
    lenswidget.no_such_thing
except AttributeError as err:
    assert "no_such_thing" in str(err)
else:
    raise AssertionError("a missing attribute must raise AttributeError")
print(f"{elapsed:.3f}")
"""


def test_bare_import_resolves_subpackages_lazily():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # torch is the floor (~1-3 s here); transformer_lens, transformers and anywidget are not imported
    assert float(out.stdout.strip()) < 10


def test_models_attribute_after_bare_import():
    import lenswidget

    assert callable(lenswidget.models.toy)
    with pytest.raises(AttributeError):
        lenswidget.not_a_subpackage
