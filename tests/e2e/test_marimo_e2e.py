"""The attention grid in marimo (shadow DOM, no JupyterLab CSS variables, custom messages only)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .harness import _free_port
from .test_attention_e2e import _click_cell

APP = Path(__file__).with_name("marimo_app.py")
PROMPT = "the cat sat on the mat and the dog ran home . the cat sat on the mat"


@pytest.fixture()
def marimo_url(tmp_path):
    pytest.importorskip("marimo")
    port = _free_port()
    log = open(tmp_path / "marimo.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "marimo", "run", str(APP), "--headless", "--host", "127.0.0.1",
         "--port", str(port), "--no-token"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError((tmp_path / "marimo.log").read_text()[-3000:])
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(10)


def test_marimo_click_head_and_ablate(browser, marimo_url):
    from lenswidget import Lens, models
    from lenswidget.analysis import ablate_heads

    page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
    page.goto(marimo_url)
    grid = page.locator('[data-testid="lw-grid"]')  # Playwright's CSS engine pierces marimo's shadow root
    grid.wait_for(state="visible", timeout=120_000)
    _click_cell(grid, 1, 2)
    page.locator('[data-testid="lw-ablate"]').click()
    page.wait_for_function(
        "() => { const find = (root) => { const r = root.querySelector('[data-testid=\"lw-result\"]'); if (r) return r;"
        " for (const el of root.querySelectorAll('*')) if (el.shadowRoot) { const f = find(el.shadowRoot); if (f) return f; } return null; };"
        " const r = find(document); return r && r.textContent.includes('L1H2') && r.querySelector('[data-testid=\"lw-delta\"]'); }",
        timeout=60_000,
    )
    drawn = page.locator('[data-testid="lw-delta"]').evaluate_all("els => els.map(e => Number(e.dataset.value))")
    lens = Lens(models.toy())
    expected = ablate_heads(lens.model, lens.tokenize(PROMPT), [(1, 2)]).delta_logprob.tolist()
    assert drawn == pytest.approx(expected, abs=1e-5)
