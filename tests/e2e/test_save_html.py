"""``widget.save_html``: one file that opens from file:// in Chromium with no server and no
kernel, draws the saved view, and says so when a click needs the model."""

from __future__ import annotations

import shutil

import pytest

from lenswidget.widgets import AttentionGrid

PROMPT = "the cat sat on the mat and the cat sat on the mat"
CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium"),
]
# `browser`: the one Chromium of the test session (tests/e2e/conftest.py); a second
# sync_playwright() beside it in the same thread would fail.


def test_saved_attention_grid_draws_python_numbers_offline(browser, toy_lens, tmp_path):
    grid = AttentionGrid(toy_lens, PROMPT)
    grid.focus_head(1, 0)
    path = grid.save_html(tmp_path / "figure.html")
    text = path.read_text()
    assert "unpkg" not in text and "cdn" not in text.lower() and "<script src" not in text
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector('#lw-static[data-ready="1"]', state="attached", timeout=20_000)
    assert not errors, errors
    assert all(u.startswith(("file:", "blob:", "data:")) for u in requests), requests
    focus = page.locator('[data-testid="lw-focus"]')
    assert focus.get_attribute("data-head") == "1,0"
    # hover a query: the listed weights are the pattern Python computed
    q = len(grid.tokens) - 1
    page.locator('[data-testid="lw-query"]').nth(q).hover()
    drawn = page.locator('[data-testid="lw-attend-item"]').evaluate_all(
        "els => els.map(e => [Number(e.dataset.index), Number(e.dataset.value)])"
    )
    row = grid.head_scores.patterns[1, 0, q]
    assert len(drawn) == 5
    for k, value in drawn:
        assert value == pytest.approx(float(row[k]), abs=2e-3)
    assert drawn[0][1] == pytest.approx(float(row.max()), abs=2e-3) and float(row.max()) > 0.2
    scores = page.locator('[data-testid="lw-focus-scores"] [data-score]').evaluate_all(
        "els => els.map(e => [e.dataset.score, Number(e.dataset.value)])"
    )
    for name, value in scores:
        assert value == pytest.approx(float(grid.head_scores[name][1, 0]), abs=1e-5)
    # a click that needs the model: the banner says so, the view stays
    page.locator('[data-testid="lw-ablate"]').click()
    page.wait_for_function("() => document.body.textContent.includes('needs the kernel')", timeout=10_000)
    assert focus.get_attribute("data-head") == "1,0"
    page.close()


def test_every_view_saves_and_renders(browser, toy_lens, tmp_path):
    views = {
        "logit_lens": toy_lens.logit_lens("the cat sat on the mat"),
        "patching": toy_lens.patching("the cat sat on the mat", "the dog sat on the mat", " the", " mat"),
    }
    for name, widget in views.items():
        path = widget.save_html(tmp_path / f"{name}.html")
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_selector('#lw-static[data-ready="1"]', state="attached", timeout=20_000)
        assert not errors, (name, errors)
        assert page.locator('[data-testid="lw-root"]').count() == 1, name
        assert page.locator("canvas").count() >= 1, name
        page.close()
