"""The patching notebook in real JupyterLab + Chromium: the sweep, a clicked cell, a cancelled sweep."""

from __future__ import annotations

import time

import pytest

from .test_attention_e2e import _click_cell


def _wait_python(lab, expr: str, expected, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while (value := lab.python_json(expr)) != expected:
        assert time.time() < deadline, f"{expr} = {value!r}, expected {expected!r}"
        time.sleep(0.3)


def test_sweep_click_cell_matches_python_and_cancel_keeps_widget_usable(lab):
    page = lab.page
    lab.open("patching.ipynb")
    lab.run_all(timeout_ms=400_000)
    roots = page.locator('[data-testid="lw-root"]')
    fact = roots.nth(0)
    _wait_python(lab, "fact.sweep_state", "done")

    # the metric summary shows the Python values
    clean = float(fact.locator('[data-testid="lw-clean-value"]').get_attribute("data-value"))
    assert clean == pytest.approx(lab.python_json("fact.clean_value"), abs=1e-6)

    # click the strongest resid_pre cell: one hooked rerun with exactly that patch
    layer, pos = lab.python_json(
        "divmod(int(fact.exact_results['resid_pre'].values.argmax()), fact.exact_results['resid_pre'].values.shape[1])"
    )
    heat = fact.locator('[data-testid="lw-heatmap-resid_pre"]')
    heat.scroll_into_view_if_needed()
    _click_cell(heat, layer, pos)
    cell = fact.locator('[data-testid="lw-cell"]')
    page.wait_for_function(
        "([el, want]) => { const c = el.querySelector('[data-testid=\"lw-cell\"]');"
        " return c && !c.hidden && c.querySelector('[data-testid=\"lw-cell-value\"]') && c.textContent.includes(want); }",
        arg=[fact.element_handle(), f"blocks.{layer}.hook_resid_pre"],
    )
    drawn = float(cell.locator('[data-testid="lw-cell-value"]').get_attribute("data-value"))
    exact = lab.python_json(f"float(fact.exact_results['resid_pre'].values[{layer}, {pos}])")
    fresh = lab.python_json(f"fact.patch('resid_pre', [{layer}, {pos}])['value']")
    assert drawn == pytest.approx(exact, abs=1e-4)
    assert drawn == pytest.approx(fresh, abs=1e-4)
    assert lab.python_json("fact.selected['index']") == [layer, pos]

    # IOI widget: start its exact sweep from the view, cancel it, the partial result stays
    ioi = roots.nth(1)
    ioi.scroll_into_view_if_needed()
    ioi.locator('[data-testid="lw-sweep"]').click()
    cancel = ioi.locator('[data-testid="lw-cancel"]')
    cancel.wait_for(state="visible", timeout=60_000)
    cancel.click()
    _wait_python(lab, "ioi.sweep_state", "partial", timeout=60)
    ioi.locator('[data-testid="lw-partial"]').wait_for(state="visible")
    assert lab.python_json("any(r.partial for r in ioi.exact_results.values())")
    # ... and the widget still works: a click reruns one patch
    heat = ioi.locator('[data-testid="lw-heatmap-resid_pre"]')
    _click_cell(heat, 0, 3)
    page.wait_for_function(
        "(el) => { const c = el.querySelector('[data-testid=\"lw-cell-value\"]'); return c && c.dataset.value; }",
        arg=ioi.element_handle(),
    )
    drawn = float(ioi.locator('[data-testid="lw-cell-value"]').get_attribute("data-value"))
    assert drawn == pytest.approx(lab.python_json("ioi.patch('resid_pre', [0, 3])['value']"), abs=1e-4)
    assert lab.python_json("ioi.error") == {}
