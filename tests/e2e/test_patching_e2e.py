"""The patching notebook in real JupyterLab + Chromium: the sweep, a clicked cell, a cancelled sweep."""

from __future__ import annotations

import pytest

from .test_attention_e2e import _click_cell


def test_sweep_click_cell_matches_python_and_cancel_keeps_widget_usable(lab):
    page = lab.page
    lab.open("patching.ipynb")
    lab.run_all(timeout_ms=400_000)
    roots = page.locator('[data-testid="lw-root"]')
    fact = roots.nth(0)
    lab.wait_python("fact.sweep_state", "done")

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
    lab.wait_python("ioi.sweep_state", "partial", timeout=60)
    ioi.locator('[data-testid="lw-partial"]').wait_for(state="visible")
    assert lab.python_json("any(r.partial for r in ioi.exact_results.values())")
    # cancel stopped work: fewer runs made than cells in the sweep, and the session is free at once
    runs, total = lab.python_json(
        "[sum(int(r.stats.get('runs', 0)) for r in ioi.exact_results.values()),"
        " sum(int(r.values.numel()) for r in ioi.exact_results.values())]"
    )
    assert runs < total, (runs, total)
    assert lab.python_json("ioi.lens.running") == ""
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


def test_inputs_sites_and_direction_from_the_view(lab):
    page = lab.page
    lab.open("patching.ipynb")
    lab.run_all(timeout_ms=400_000)
    toy = page.locator('[data-testid="lw-root"]').nth(2)  # the induction widget on the toy model
    toy.scroll_into_view_if_needed()
    clean_before = lab.python_json("induction.clean_prompt")

    # prompts of different token counts: a clear error with both tokenizations, nothing lost
    toy.locator('[data-testid="lw-corrupted"]').fill("red fish blue")
    toy.locator('[data-testid="lw-apply"]').click()
    error = toy.locator('[data-testid="lw-error"]')
    error.wait_for(state="visible")
    assert "tokens" in error.inner_text()
    toy.locator('[data-testid="lw-rejected"]').wait_for(state="visible")
    assert lab.python_json("induction.error['kind']") == "input"
    assert lab.python_json("induction.clean_prompt") == clean_before

    # good inputs apply: the metric values drawn are Python's
    toy.locator('[data-testid="lw-corrupted"]').fill("red fish blue tree king star red fish blue tree king")
    toy.locator('[data-testid="lw-wrong"]').fill("star")
    toy.locator('[data-testid="lw-apply"]').click()
    lab.wait_python("induction.wrong", "star")
    page.wait_for_function(
        "([el, v]) => Math.abs(Number(el.querySelector('[data-testid=\"lw-corrupted-value\"]').dataset.value) - v) < 1e-6",
        arg=[toy.element_handle(), lab.python_json("induction.corrupted_value")],
    )

    # the sites menu and the direction select reach Python; a sweep then runs in that direction
    toy.locator('[data-testid="lw-sites-summary"]').click()
    toy.locator('[data-testid="lw-site-attn_out"]').uncheck()
    lab.wait_python("'attn_out' in induction.sites", False)
    toy.locator('[data-testid="lw-direction"]').select_option("noise")
    lab.wait_python("induction.direction", "noise")
    assert lab.python_json("induction.exact") == {}
    toy.locator('[data-testid="lw-sweep"]').click()
    lab.wait_python("induction.sweep_state", "done")
    assert lab.python_json("induction.exact_results['resid_pre'].direction") == "noise"
