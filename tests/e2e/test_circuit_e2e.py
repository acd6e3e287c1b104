"""The circuits notebook in real JupyterLab + Chromium: click an edge, change the size, click a node;
what is drawn equals what Python computes (exact edge patch, circuit_metric, promoted_tokens)."""

from __future__ import annotations

import pytest


def test_edge_size_and_node_clicks_match_python(lab):
    page = lab.page
    lab.open("circuits.ipynb")
    lab.run_all(timeout_ms=500_000)
    toy = page.locator('[data-testid="lw-root"]').nth(0)  # the induction circuit on the toy model
    toy.scroll_into_view_if_needed()

    # click the strongest edge: the drawn exact value is Python's patch_edge
    edge = lab.python_json("induction.edge_scores.top(1)[0][0]")
    toy.locator(f'[data-edge="{edge}"] path.lw-ci-hit').click()
    page.wait_for_function(
        "([el, e]) => { const t = el.querySelector('[data-testid=\"lw-ci-edge-label\"]');"
        " const v = el.querySelector('[data-testid=\"lw-ci-edge-value\"]'); return t && t.dataset.edge === e && v; }",
        arg=[toy.element_handle(), edge],
    )
    drawn = float(toy.locator('[data-testid="lw-ci-edge-value"]').get_attribute("data-value"))
    exact = lab.python_json(
        "__import__('lenswidget.analysis.circuits', fromlist=['x']).patch_edge(induction.lens.model, "
        f"induction.work.clean, induction.work.corrupted, induction.work.metric, {edge!r})"
    )
    assert drawn == pytest.approx(exact, abs=1e-4)
    assert abs(exact - lab.python_json("induction.corrupted_value")) > 1.0

    # change the size: the graph redraws, then the drawn faithfulness is circuit_metric's
    size = toy.locator('[data-testid="lw-ci-size"]')
    size.fill("20")
    size.dispatch_event("change")
    page.wait_for_function(
        "(el) => el.querySelector('[data-testid=\"lw-ci-faithfulness\"]').dataset.size === '20'",
        arg=toy.element_handle(), timeout=60_000,
    )
    drawn_f = float(toy.locator('[data-testid="lw-ci-faithfulness"]').get_attribute("data-value"))
    want = lab.python_json(
        "(lambda w: (__import__('lenswidget.analysis.circuits', fromlist=['x']).circuit_metric(w.model, w.clean, "
        "w.corrupted, w.metric, w.top_labels(20)) - w.m_empty) / (w.m_full - w.m_empty))(induction.work)"
    )
    assert drawn_f == pytest.approx(want, abs=1e-5)
    assert int(toy.locator('[data-testid="lw-ci-graph"]').get_attribute("data-size")) == 20

    # click a node: the drawn promoted tokens are Python's
    toy.locator('[data-testid="lw-ci-graph"] [data-node="L1H1"] circle').click()
    lab.wait_python("(induction.selected, induction.error)", [{"node": "L1H1"}, {}], timeout=60)
    toy.locator('[data-testid="lw-ci-promoted"] [data-testid="lw-ci-token"]').first.wait_for(state="attached")
    drawn_tokens = toy.locator('[data-testid="lw-ci-promoted"] [data-testid="lw-ci-token"]').evaluate_all(
        "(rows) => rows.map((r) => r.dataset.token)"
    )
    want_tokens = lab.python_json(
        "[t for t, _, _ in __import__('lenswidget.analysis', fromlist=['x']).promoted_tokens("
        "induction.lens.model, induction.work.clean, 'L1H1', pos=-1, k=10).promoted]"
    )
    assert drawn_tokens == want_tokens
    assert lab.python_json("induction.error") == {}
