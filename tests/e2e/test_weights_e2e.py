"""The weights notebook in real JupyterLab + Chromium: click a composition cell and a head of the
copying strip, switch the Q / K / V tabs; what is drawn equals what Python (and TransformerLens)
compute. The notebook is opened and run once for the whole file."""

from __future__ import annotations

import pytest

from .harness import new_lab


@pytest.fixture(scope="module")
def weights_lab(browser, jupyter_server):
    """weights.ipynb open and run (the toy model's view is its first widget)."""
    with new_lab(browser, jupyter_server, "weights.ipynb", run_all_ms=420_000) as lab:
        yield lab


def _click_cell(canvas, row: int, col: int) -> None:
    canvas.click(position=_cell_xy(canvas, row, col))


def _cell_xy(canvas, row: int, col: int) -> dict:
    g = canvas.evaluate("el => ({...el.dataset})")
    gap = float(g.get("gap", 0))
    return {"x": float(g["originX"]) + col * (float(g["cellW"]) + gap) + float(g["cellW"]) / 2,
            "y": float(g["originY"]) + row * (float(g["cellH"]) + gap) + float(g["cellH"]) / 2}


def test_click_pair_and_head_match_python(weights_lab):
    lab = weights_lab
    page = lab.page
    root = page.locator('[data-testid="lw-root"]').first
    comp = root.locator('[data-testid="lw-wt-comp"]')
    comp.wait_for(state="visible")
    assert int(comp.get_attribute("data-rows")) == 8

    # click L0H3 (row 3) -> L1H0 (column 4) on the K tab
    root.locator('[data-testid="lw-wt-kind-k"]').click()
    lab.wait_python("view.kind", "k")
    _click_cell(comp, 3, 4)
    title = root.locator('[data-testid="lw-wt-pair-title"]')
    page.wait_for_function(
        "el => { const t = el.querySelector('[data-testid=\"lw-wt-pair-title\"]'); return t && t.textContent.startsWith('L0H3 → L1H0'); }",
        arg=root.element_handle(),
        timeout=60_000,
    )
    assert "K-composition" in title.text_content()
    drawn = float(root.locator('[data-testid="lw-wt-pair-score"]').get_attribute("data-value"))
    assert drawn == lab.python_json('view.pair_result["score"]')
    lab.python('_tl = float(toy.model.all_composition_scores("K").scores[0, 3, 1, 0])')  # TL may print
    tl = lab.python_json("_tl")
    assert drawn == pytest.approx(tl, abs=1e-5)
    baseline = float(root.locator('[data-testid="lw-wt-pair-baseline"]').get_attribute("data-value"))
    assert drawn > baseline + 0.05

    # click head L1H1 in the copying strip: its OV table for the prompt's tokens
    strip = root.locator('[data-testid="lw-wt-copying"]')
    _click_cell(strip, 1, 1)
    page.wait_for_function(
        "el => { const t = el.querySelector('[data-testid=\"lw-wt-head-title\"]'); return t && t.textContent === 'L1H1'; }",
        arg=root.element_handle(),
        timeout=60_000,
    )
    rows = root.locator('[data-testid="lw-wt-ov-row"]').evaluate_all(
        "els => els.map(r => [Number(r.dataset.sourceId), Array.from(r.querySelectorAll('[data-testid=lw-wt-ov-top]')).map(c => [Number(c.dataset.id), Number(c.dataset.value)])])"
    )
    expected = lab.python_json('[[r["source_id"], [[c["id"], c["value"]] for c in r["top"]]] for r in view.head_result["ov"]["rows"]]')
    assert [r[0] for r in rows] == [e[0] for e in expected]
    for (_, cells), (_, want) in zip(rows, expected):
        assert [c[0] for c in cells] == [w[0] for w in want]
        assert [c[1] for c in cells] == pytest.approx([w[1] for w in want], abs=1e-6)
    # and the kernel's own explicit matmul agrees with the first row drawn
    src = rows[0][0]
    lab.python(f"_ref = (lambda m: (m.W_E[{src}] @ m.W_V[1, 1] @ m.W_O[1, 1] @ m.W_U).topk(3).indices.tolist())(toy.model)")
    ref = lab.python_json("_ref")
    assert [c[0] for c in rows[0][1][:3]] == ref
    copying = float(root.locator('[data-testid="lw-wt-head-copying"]').get_attribute("data-value"))
    assert copying == pytest.approx(lab.python_json("float(copying_scores(toy.model)[1, 1])"), abs=1e-6)


def test_kind_tabs_switch_the_drawn_heatmap(weights_lab):
    """Click Q, then V, then K: the heatmap drawn is that kind's (the value drawn under the pointer
    and the clicked pair's score equal TransformerLens's all_composition_scores of that kind)."""
    lab = weights_lab
    page = lab.page
    root = page.locator('[data-testid="lw-root"]').first
    comp = root.locator('[data-testid="lw-wt-comp"]')
    comp.scroll_into_view_if_needed()
    lab.python("import torch as _t\nwith _t.no_grad(): _tlk = {k: float(toy.model.all_composition_scores(k.upper()).scores[0, 3, 1, 3]) for k in 'qkv'}")
    tl = lab.python_json("_tlk")
    # L0H3 -> L1H3 (row 3, column 7): the three kinds differ by far more than the 3 decimals drawn
    assert min(abs(tl[a] - tl[b]) for a, b in [("q", "k"), ("q", "v"), ("k", "v")]) > 0.003
    for kind in ["q", "v", "k"]:
        root.locator(f'[data-testid="lw-wt-kind-{kind}"]').click()
        lab.wait_python("view.kind", kind)
        page.wait_for_function(
            "([el, k]) => el.querySelector(`[data-testid=\"lw-wt-kind-${k}\"]`).getAttribute('aria-pressed') === 'true'",
            arg=[root.element_handle(), kind],
        )
        # the value drawn under the pointer (the kind's bytes may land a moment after the tab: move again)
        hover = root.locator('[data-testid="lw-wt-hover"]')
        want, text = f"L0H3 → L1H3: {tl[kind]:.3f}", ""
        for attempt in range(40):
            xy = _cell_xy(comp, 3, 7)
            comp.hover(position={"x": xy["x"] + (attempt % 2), "y": xy["y"]})
            if (text := hover.text_content()) == want:
                break
            page.wait_for_timeout(250)
        assert text == want
        comp.click(position=_cell_xy(comp, 3, 7))
        page.wait_for_function(
            "([el, k]) => { const t = el.querySelector('[data-testid=\"lw-wt-pair-title\"]');"
            " return t && t.textContent === `L0H3 → L1H3 (${k.toUpperCase()}-composition)`; }",
            arg=[root.element_handle(), kind], timeout=60_000,
        )
        drawn = float(root.locator('[data-testid="lw-wt-pair-score"]').get_attribute("data-value"))
        assert drawn == pytest.approx(tl[kind], abs=1e-5)
    assert lab.python_json("view.error") == {}
