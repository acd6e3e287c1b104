"""The patching notebook's dataset cell (IOI on 8 prompt pairs, SmolLM2) in real JupyterLab + Chromium:
the drawn pairs and top components equal Python's, a row click draws each pair's value as Python
computes it and selects the head on the lens, the metric switch, and bad dataset input in the box."""

from __future__ import annotations

import json

import pytest

from .harness import REPO

HEADS = "attn_head_out_all_pos"


def _cell_indices(*needles: str) -> list[int]:
    cells = json.loads((REPO / "notebooks" / "patching.ipynb").read_text())["cells"]
    return [next(i for i, c in enumerate(cells) if needle in "".join(c["source"])) for needle in needles]


def _run_cells(lab, indices: list[int], timeout_ms: int = 300_000) -> None:
    lab.page.evaluate(
        """async (indices) => {
            const panel = window.jupyterapp.shell.currentWidget;
            await panel.sessionContext.ready;
            for (const i of indices) {
                panel.content.activeCellIndex = i;
                await window.jupyterapp.commands.execute('notebook:run-cell');
            }
        }""",
        indices,
    )
    lab.wait_idle(timeout_ms)


def test_dataset_cell_top_components_row_click_and_bad_input(lab):
    page = lab.page
    lab.open("patching.ipynb")
    _run_cells(lab, _cell_indices("smol = lenswidget.Lens", "ioi8 = smol.patching"))
    hm = page.locator('[data-testid="lw-root"]').nth(0)
    hm.scroll_into_view_if_needed()

    # the pairs drawn are Python's
    pairs = hm.locator('[data-testid="lw-pair"]')
    pairs.nth(7).wait_for(state="attached")
    want_pairs = lab.python_json("ioi8.pairs")
    assert pairs.count() == 8
    assert [pairs.nth(i).locator('[data-testid="lw-pair-clean"]').inner_text() for i in range(8)] == [
        p["clean"] for p in want_pairs]

    # the top-components rows drawn equal hm.top (labels and recovery values)
    rows = hm.locator(f'[data-testid="lw-top-{HEADS}"] [data-testid="lw-top-component"]')
    rows.nth(0).wait_for(state="attached")
    want = lab.python_json(f"ioi8.top({HEADS!r}, k=ioi8.top_k)")
    drawn = [(rows.nth(i).get_attribute("data-label"), float(rows.nth(i).get_attribute("data-recovery")))
             for i in range(rows.count())]
    assert [d[0] for d in drawn] == [w["label"] for w in want] and len(want) == 5
    for (_, rec), w in zip(drawn, want):
        assert rec == pytest.approx(w["recovery"], abs=1e-6)
    assert rows.nth(0).locator('[data-testid="lw-top-recovery"]').inner_text() == f"{want[0]['recovery']:.3f}"

    # a row click is a cell click: the cell panel draws each pair's values as Python computes them
    second = want[1]
    rows.nth(1).click()
    index = ",".join(str(i) for i in second["index"])
    page.wait_for_function(
        "([el, idx]) => { const c = el.querySelector('[data-testid=\"lw-cell\"]');"
        " return c && !c.hidden && c.dataset.index === idx && c.querySelectorAll('[data-testid=\"lw-per-prompt-row\"]').length === 8; }",
        arg=[hm.element_handle(), index],
        timeout=120_000,
    )
    per_prompt = hm.locator('[data-testid="lw-per-prompt-row"]')
    drawn_ld = [float(per_prompt.nth(i).locator('[data-testid="lw-pp-patched"]').get_attribute("data-value")) for i in range(8)]
    drawn_rec = [float(per_prompt.nth(i).locator('[data-testid="lw-pp-recovery"]').get_attribute("data-value")) for i in range(8)]
    shown = lab.python_json("ioi8.cell_result['per_prompt']")
    assert drawn_ld == pytest.approx(shown["logit_diff"], abs=1e-6)
    assert drawn_rec == pytest.approx(shown["recovery"], abs=1e-6)
    fresh = lab.python_json(f"ioi8.patch({HEADS!r}, {second['index']})['per_prompt']['logit_diff']")
    assert drawn_ld == pytest.approx(fresh, abs=1e-4)
    assert max(drawn_ld) - min(drawn_ld) > 0.5  # eight different prompts, eight different values
    assert lab.python_json("ioi8.selected['index']") == second["index"]
    assert lab.python_json("smol.selection.label") == second["label"]
    drawn_value = float(hm.locator('[data-testid="lw-cell-value"]').get_attribute("data-value"))
    assert drawn_value == pytest.approx(lab.python_json("ioi8.cell_result['value']"), abs=1e-6)

    # raw logit difference one click away; the legend says which, the rows keep their recovery
    legend = hm.locator(f'[data-testid="lw-legend-{HEADS}"]')
    assert "recovery" in legend.inner_text()
    hm.locator('[data-testid="lw-metric-toggle"]').click()
    lab.wait_python("ioi8.metric", "logit_diff")
    page.wait_for_function("(el) => el.textContent.includes('logit diff (answer')", arg=legend.element_handle())
    assert lab.python_json("ioi8.clean_value") == pytest.approx(lab.python_json("ioi8.clean_logit_diff"), abs=1e-4)

    # bad dataset input in the box: a clear error, nothing lost, the view still works
    clean_box = hm.locator('[data-testid="lw-clean"]')
    corrupted_box = hm.locator('[data-testid="lw-corrupted"]')
    corrupted_box.fill("\n".join(p["corrupted"] for p in want_pairs[:7]))
    hm.locator('[data-testid="lw-apply"]').click()
    error = hm.locator('[data-testid="lw-error"]')
    error.wait_for(state="visible")
    assert "8 clean prompts but 7 corrupted prompts" in error.inner_text()
    assert len(lab.python_json("ioi8.pairs")) == 8
    # a pair whose two prompts tokenize to different lengths: named, both tokenizations shown
    lines = [p["corrupted"] for p in want_pairs]
    lines[2] = lines[2].replace(" gave", " quickly gave")
    corrupted_box.fill("\n".join(lines))
    hm.locator('[data-testid="lw-apply"]').click()
    page.wait_for_function("(el) => el.textContent.includes('pair 3')", arg=error.element_handle())
    hm.locator('[data-testid="lw-rejected"]').wait_for(state="visible")
    assert hm.locator('[data-testid="lw-rejected"]').get_attribute("data-pair") == "2"
    assert lab.python_json("ioi8.error['details']['pair']") == 2
    assert clean_box.input_value().count("\n") == 7
    assert lab.python_json("ioi8.clean_prompt") == "\n".join(p["clean"] for p in want_pairs)
