"""The workspace notebook in real JupyterLab + Chromium: a patching cell and a DLA contributor
clicked in the view focus the attention grid (drawn focus == lens.selection); resample ablation
from the grid's view, with a wrong-length source prompt first."""

from __future__ import annotations

import pytest

from .test_attention_e2e import _click_cell
from .test_logit_lens_e2e import _click_lens_cell


def _drawn_focus(page, grid, want: str) -> str:
    """Wait until the grid's focus panel draws head ``want`` ("l,h"); return what it draws."""
    page.wait_for_function(
        "([el, want]) => { const f = el.querySelector('[data-testid=\"lw-focus\"]');"
        " return f && !f.hidden && f.dataset.head === want; }",
        arg=[grid.element_handle(), want],
        timeout=30_000,
    )
    return grid.locator('[data-testid="lw-focus"]').get_attribute("data-head")


def test_workspace_click_focuses_grid_and_resample(lab):
    page = lab.page
    lab.open("workspace.ipynb")
    lab.run_all(timeout_ms=300_000)
    ws = page.locator(".lw-workspace").first
    patching = ws.locator(".lw-root.lw-patching")
    grid = ws.locator(".lw-root.lw-attention")
    table = ws.locator(".lw-root.lw-logit-lens")
    assert lab.python_json("lens.selection.label") == "L1H2"  # the notebook's lens.select
    assert _drawn_focus(page, grid, "1,2") == "1,2"

    # click head cell L1H0 of the heads-over-all-positions heatmap
    heat = patching.locator('[data-testid="lw-heatmap-attn_head_out_all_pos"]')
    heat.scroll_into_view_if_needed()
    _click_cell(heat, 1, 0)
    lab.wait_python("lens.selection.label", "L1H0", timeout=60)
    selection = lab.python_json("[lens.selection.source, list(lens.selection.head), lens.selection.prompt]")
    assert selection[0] == "PatchingHeatmap"
    drawn = _drawn_focus(page, grid, "1,0")
    assert [int(x) for x in drawn.split(",")] == selection[1] == lab.python_json("ws.attention.focus")
    assert grid.locator('[data-testid="lw-linked"]').get_attribute("data-label") == "L1H0"
    assert selection[2] == lab.python_json("ws.attention.prompt")

    # click the largest head contributor in the logit lens's direct logit attribution
    canvas = table.locator('[data-testid="lw-lens-table"]')
    canvas.scroll_into_view_if_needed()
    rows, cols = lab.python_json("[len(ws.logit_lens.row_labels), len(ws.logit_lens.tokens)]")
    _click_lens_cell(canvas, rows - 1, cols - 1)
    page.wait_for_function(
        "el => el.querySelector('[data-testid=\"lw-dla-row\"][data-kind=\"head\"]')", arg=table.element_handle()
    )
    row = table.locator('[data-testid="lw-dla-row"][data-kind="head"]').first
    label = row.get_attribute("data-label")
    want = label.replace("L", "").replace("H", ",")
    row.locator(".lw-ll-dla-label").click()
    lab.wait_python("lens.selection.label", label, timeout=60)
    assert lab.python_json("lens.selection.source") == "LogitLensTable"
    grid.scroll_into_view_if_needed()
    assert _drawn_focus(page, grid, want) == ",".join(map(str, lab.python_json("list(lens.selection.head)")))

    # resample from a prompt of another length: the error banner, nothing drawn changes
    assert grid.locator('[data-testid="lw-mode"]').input_value() == "resample"
    box = grid.locator('[data-testid="lw-resample-prompts"]')
    box.wait_for(state="visible")
    box.fill("the dog ran")
    ablate = grid.locator('[data-testid="lw-ablate"]')
    ablate.click()
    error = grid.locator('[data-testid="lw-error"]')
    error.wait_for(state="visible")
    assert "tokens but the prompt is" in error.inner_text()
    assert lab.python_json("ws.attention.error['kind']") == "input"
    assert lab.python_json("ws.attention.resample_prompts") == ["the dog ran"]

    # two right-length sources: the drawn mean change equals Python's average over them
    sources = ["the dog ran to the house . the dog ran to the", "a man came to a boy . a man came to a"]
    box.fill("\n".join(sources))
    ablate.click()
    lab.wait_python("ws.attention.last_result.get('n_sources')", 2, timeout=60)
    assert lab.python_json("ws.attention.resample_prompts") == sources
    l, h = map(int, want.split(","))
    expected = lab.python_json(
        "__import__('lenswidget').analysis.ablate_heads(lens.model, lens.tokenize(ws.attention.prompt), "
        f"[({l}, {h})], mode='resample', source_tokens=lens.model.to_tokens({sources!r})).to_json()['mean_delta']"
    )
    result = grid.locator('[data-testid="lw-result"]')
    page.wait_for_function(
        "([el, want]) => { const m = el.querySelector('[data-testid=\"lw-result\"] [data-testid=\"lw-mean-delta\"]');"
        " return m && Math.abs(Number(m.dataset.value) - want) < 1e-5 && el.textContent.includes('Resample-ablating'); }",
        arg=[grid.element_handle(), expected],
    )
    drawn_mean = float(result.locator('[data-testid="lw-mean-delta"]').get_attribute("data-value"))
    assert drawn_mean == pytest.approx(expected, abs=1e-5)
    assert abs(expected) > 0.05
    assert lab.python_json("ws.attention.error") == {}
