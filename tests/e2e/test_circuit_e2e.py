"""The circuits notebook in real JupyterLab + Chromium: click an edge, change the size, click a node,
Remove / Restore a node, Rescore with another method, toggle the weights overlay; what is drawn
equals what Python computes (exact edge patch, circuit_metric, promoted_tokens, edge_attribution,
TransformerLens's composition scores). The notebook is opened and run once for the whole file."""

from __future__ import annotations

import pytest

from .harness import Lab, new_lab

CIRCUITS = "__import__('lenswidget.analysis.circuits', fromlist=['x'])"


@pytest.fixture(scope="module")
def circuits_lab(browser, jupyter_server):
    """circuits.ipynb open and run (the toy induction circuit is its first widget)."""
    with new_lab(browser, jupyter_server, "circuits.ipynb", run_all_ms=500_000) as lab:
        yield lab


def _toy(lab: Lab):
    toy = lab.page.locator('[data-testid="lw-root"]').nth(0)  # the induction circuit on the toy model
    toy.scroll_into_view_if_needed()
    return toy


def _wait_faithfulness(lab: Lab, toy, expected_js: str, timeout: int = 60_000) -> None:
    """Wait until the drawn faithfulness is not pending and ``expected_js`` (of ``f``, the element) holds."""
    lab.page.wait_for_function(
        "(el) => { const f = el.querySelector('[data-testid=\"lw-ci-faithfulness\"]');"
        f" return f && f.dataset.pending === 'false' && ({expected_js}); }}",
        arg=toy.element_handle(), timeout=timeout,
    )


def _click_edge(lab: Lab, graph, label: str) -> None:
    """A real mouse click on edge ``label`` at a point of its curve no other edge covers."""
    xy = graph.evaluate(
        """(svg, label) => {
            const hit = svg.querySelector(`[data-edge="${label}"] path.lw-ci-hit`);
            const len = hit.getTotalLength(), m = hit.getScreenCTM();
            for (let i = 1; i < 40; i++) {
                const p = hit.getPointAtLength(len * (i % 2 ? 0.5 + i / 80 : 0.5 - i / 80));
                const x = m.a * p.x + m.c * p.y + m.e, y = m.b * p.x + m.d * p.y + m.f;
                const top = svg.ownerDocument.elementFromPoint(x, y);
                if (top && top.closest('[data-edge]')?.getAttribute('data-edge') === label) return [x, y];
            }
            return null;
        }""",
        label,
    )
    assert xy is not None, f"edge {label} is covered everywhere"
    lab.page.mouse.click(*xy)


def test_edge_size_and_node_clicks_match_python(circuits_lab):
    lab = circuits_lab
    page = lab.page
    toy = _toy(lab)

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
        f"{CIRCUITS}.patch_edge(induction.lens.model, "
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
        f"(lambda w: ({CIRCUITS}.circuit_metric(w.model, w.clean, "
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


def test_remove_restore_and_rescore_match_python(circuits_lab):
    lab = circuits_lab
    page = lab.page
    toy = _toy(lab)
    size = toy.locator('[data-testid="lw-ci-size"]')
    size.fill("25")
    size.dispatch_event("change")
    _wait_faithfulness(lab, toy, "f.dataset.size === '25'")
    full = float(toy.locator('[data-testid="lw-ci-faithfulness"]').get_attribute("data-value"))

    # the head of the drawn circuit with the largest |node score|; the reference: circuit_metric of
    # the same top-25 edges without every edge into or out of that head
    node = lab.python_json(
        "max((n for n in induction.current['nodes'] if n.startswith('L')), "
        "key=lambda n: abs(induction.edge_scores.node_scores()[n]))"
    )
    want = lab.python_json(
        f"(lambda w: (lambda kept: {CIRCUITS}.circuit_metric(w.model, w.clean, w.corrupted, w.metric, kept))("
        f"[l for l in w.top_labels(25) if (lambda e: e.up != {node!r} and any(t != {node!r} for t in e.targets))(w.parse(l))]"
        "))(induction.work)"
    )
    m_empty, m_full = lab.python_json("[induction.work.m_empty, induction.work.m_full]")
    toy.locator(f'[data-testid="lw-ci-graph"] [data-node="{node}"] circle').click()
    remove = toy.locator('[data-testid="lw-ci-remove"]')
    remove.wait_for(state="visible")
    remove.click()
    page.wait_for_function(
        "([el, n]) => { const g = el.querySelector(`[data-testid=\"lw-ci-graph\"] [data-node=\"${n}\"]`);"
        " const f = el.querySelector('[data-testid=\"lw-ci-faithfulness\"]');"
        " return g && g.dataset.removed === 'true' && f.dataset.pending === 'false'"
        " && el.querySelector('[data-testid=\"lw-ci-summary-text\"]').textContent.includes('without'); }",
        arg=[toy.element_handle(), node], timeout=60_000,
    )
    drawn = float(toy.locator('[data-testid="lw-ci-faithfulness"]').get_attribute("data-value"))
    assert drawn == pytest.approx((want - m_empty) / (m_full - m_empty), abs=1e-5)
    assert abs(drawn - full) > 0.05  # the head mattered: far from the full circuit's faithfulness
    title = toy.locator('[data-testid="lw-ci-faithfulness"]').get_attribute("title")
    assert float(title.split()[1]) == pytest.approx(want, abs=1e-4)  # "metric <value> (corrupted ..."
    assert lab.python_json("induction.removed") == [node]

    # Restore: the full circuit again
    toy.locator('[data-testid="lw-ci-restore"]').click()
    page.wait_for_function(
        "([el, n]) => { const g = el.querySelector(`[data-testid=\"lw-ci-graph\"] [data-node=\"${n}\"]`);"
        " const f = el.querySelector('[data-testid=\"lw-ci-faithfulness\"]');"
        " return g && !g.dataset.removed && f.dataset.pending === 'false'"
        " && !el.querySelector('[data-testid=\"lw-ci-summary-text\"]').textContent.includes('without'); }",
        arg=[toy.element_handle(), node], timeout=60_000,
    )
    assert float(toy.locator('[data-testid="lw-ci-faithfulness"]').get_attribute("data-value")) == pytest.approx(full, abs=1e-9)
    assert lab.python_json("induction.removed") == []

    # Rescore with EAP: the drawn edge scores are edge_attribution(method="eap")'s
    old = lab.python_json("induction.method")
    new = "eap" if old != "eap" else "eap-ig"
    toy.locator('[data-testid="lw-ci-method"]').select_option(new)
    toy.locator('[data-testid="lw-ci-rescore"]').click()
    lab.wait_python("(induction.method, induction.score_state, induction.error)", [new, "done", {}], timeout=120)
    page.wait_for_function(
        "([el, m]) => el.querySelector('[data-testid=\"lw-ci-summary-text\"]').textContent.includes(`|${m}|`)",
        arg=[toy.element_handle(), new], timeout=30_000,
    )
    drawn_scores = toy.locator('[data-testid="lw-ci-graph"] [data-edge]').evaluate_all(
        "(gs) => Object.fromEntries(gs.map((g) => [g.dataset.edge, Number(g.dataset.score)]))"
    )
    ref = lab.python_json(
        f"(lambda w: (lambda s: dict(zip(s.edges, s.scores.tolist())))({CIRCUITS}.edge_attribution("
        f"w.model, w.clean, w.corrupted, w.metric, method={new!r}, steps=induction.steps)))(induction.work)"
    )
    before = lab.python_json(
        f"(lambda w: (lambda s: dict(zip(s.edges, s.scores.tolist())))({CIRCUITS}.edge_attribution("
        f"w.model, w.clean, w.corrupted, w.metric, method={old!r}, steps=5)))(induction.work)"
    )
    assert drawn_scores
    for label, v in drawn_scores.items():
        assert v == pytest.approx(ref[label], abs=1e-4)
    assert max(abs(ref[l] - before[l]) for l in drawn_scores) > 0.01  # the method change changed the numbers
    # the drawn edges are the pruned top 25 by the new scores
    drawn_edges = sorted(drawn_scores)
    want_edges = lab.python_json(
        "sorted(e.label for e in __import__('lenswidget.widgets._circuit_data', fromlist=['x']).prune("
        "[induction.work.parse(l) for l in induction.work.top_labels(25)])[0])"
    )
    assert drawn_edges == want_edges


def test_weights_overlay_toggle_and_edge_click_match_transformerlens(circuits_lab):
    lab = circuits_lab
    page = lab.page
    toy = _toy(lab)
    box = toy.locator('[data-testid="lw-ci-overlay"]')
    graph = toy.locator('[data-testid="lw-ci-graph"]')
    if box.is_checked():  # the notebook's cell turned it on: off first
        box.uncheck()
        lab.wait_python("induction.overlay", {}, timeout=60)
        page.wait_for_function("(g) => g.dataset.overlay === 'false'", arg=graph.element_handle())
        assert graph.locator(".lw-ci-halo").count() == 0
    box.check()
    page.wait_for_function("(g) => g.dataset.overlay === 'true'", arg=graph.element_handle(), timeout=60_000)
    assert "composition score from the weights" in toy.locator('[data-testid="lw-ci-legend-overlay"]').text_content()

    # every drawn head -> head edge carries TL's composition score; embed / logits edges none
    drawn = graph.locator("[data-edge]").evaluate_all(
        "(gs) => gs.map((g) => [g.dataset.edge, g.dataset.composition ?? null, !!g.querySelector('.lw-ci-halo')])"
    )
    lab.python("import torch as _t\nwith _t.no_grad(): _tl = {k: toy.model.all_composition_scores(k.upper()).scores for k in 'qkv'}")
    heads = [(label, float(c)) for label, c, halo in drawn if c is not None and halo]
    assert heads, drawn
    assert all(c is None and not halo for label, c, halo in drawn if label.startswith("embed") or label.endswith("logits"))
    tl = lab.python_json(
        "{l: float(_tl[l[-1]][int(l[1]), int(l.split('H')[1].split('-')[0]), int(l.split('>L')[1].split('H')[0]), "
        f"int(l.split('H')[2].split('.')[0])]) for l in {[label for label, _ in heads]!r}}}"
    )
    for label, c in heads:
        assert c == pytest.approx(tl[label], abs=1e-5)

    # click the head -> head edge with the highest composition: the panel shows it beside the estimate
    label = max(heads, key=lambda t: t[1])[0]
    graph.scroll_into_view_if_needed()
    _click_edge(lab, graph, label)
    page.wait_for_function(
        "([el, e]) => { const t = el.querySelector('[data-testid=\"lw-ci-edge-label\"]');"
        " return t && t.dataset.edge === e && el.querySelector('[data-testid=\"lw-ci-edge-composition\"]'); }",
        arg=[toy.element_handle(), label], timeout=60_000,
    )
    comp = float(toy.locator('[data-testid="lw-ci-edge-composition"]').get_attribute("data-value"))
    z = float(toy.locator('[data-testid="lw-ci-edge-composition-z"]').get_attribute("data-value"))
    estimate = float(toy.locator('[data-testid="lw-ci-edge-estimate"]').get_attribute("data-value"))
    assert comp == pytest.approx(tl[label], abs=1e-5)
    mean, std = lab.python_json("list(__import__('lenswidget.analysis.weights', fromlist=['x']).random_baseline(toy.model))")
    assert z == pytest.approx((tl[label] - mean) / std, rel=1e-4)
    assert estimate == pytest.approx(lab.python_json(f"induction.edge_scores.score({label!r})"), abs=1e-6)
    assert abs(comp - estimate) > 0.01
    assert lab.python_json("induction.error") == {}
