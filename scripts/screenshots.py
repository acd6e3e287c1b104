"""Screenshots of the three widgets in real JupyterLab + Chromium, for the README (docs/*.png).

    python scripts/screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import Lab, chromium, jupyter_lab  # noqa: E402
from tests.e2e.test_attention_e2e import _click_cell  # noqa: E402


def shot(lab: Lab, root, name: str) -> None:
    root.scroll_into_view_if_needed()
    lab.page.wait_for_timeout(400)
    root.screenshot(path=str(REPO / "docs" / name))
    print("wrote", REPO / "docs" / name)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, jupyter_lab(Path(tmp)) as server, chromium() as browser:
        page = browser.new_context(viewport={"width": 1300, "height": 2200}, device_scale_factor=1).new_page()
        lab = Lab(page, server)
        lab.open("quickstart.ipynb")
        lab.run_all()
        root = page.locator('[data-testid="lw-root"]').first
        grid = root.locator('[data-testid="lw-grid"]')
        _click_cell(grid, 1, 0)
        root.locator('[data-testid="lw-ablate"]').click()
        root.locator('[data-testid="lw-delta"]').first.wait_for()
        shot(lab, root, "attention_grid.png")

        lab.open("patching.ipynb")
        lab.run_all(timeout_ms=400_000)
        fact = page.locator('[data-testid="lw-root"]').first
        layer, pos = lab.python_json(
            "divmod(int(fact.exact_results['resid_pre'].values.argmax()), fact.exact_results['resid_pre'].values.shape[1])"
        )
        _click_cell(fact.locator('[data-testid="lw-heatmap-resid_pre"]'), layer, pos)
        fact.locator('[data-testid="lw-cell-value"]').wait_for()
        shot(lab, fact, "patching_heatmap.png")

        lab.open("logit_lens.ipynb")
        lab.run_all(timeout_ms=300_000)
        root = page.locator('[data-testid="lw-root"]').first
        table = root.locator('[data-testid="lw-lens-table"]')
        rows, cols = int(table.get_attribute("data-rows")), int(table.get_attribute("data-cols"))
        point = table.evaluate("(el, rp) => el.lwScrollToCell(rp[0], rp[1])", [rows - 1, cols - 1])
        table.click(position=point)
        root.locator('[data-testid="lw-dla-row"]').first.wait_for()
        shot(lab, root, "logit_lens_table.png")


if __name__ == "__main__":
    main()
