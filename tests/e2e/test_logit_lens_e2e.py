"""The logit-lens notebook in real JupyterLab + Chromium: drill down into a cell, ablate a contributor."""

from __future__ import annotations

import pytest


def _click_lens_cell(table, row: int, pos: int) -> None:
    point = table.evaluate("(el, rp) => el.lwScrollToCell(rp[0], rp[1])", [row, pos])
    table.click(position=point)


def test_drill_down_and_ablate_match_python(lab):
    page = lab.page
    lab.open("logit_lens.ipynb")
    lab.run_all(timeout_ms=300_000)
    root = page.locator('[data-testid="lw-root"]').first
    table = root.locator('[data-testid="lw-lens-table"]')
    table.wait_for(state="visible")
    rows, cols = lab.python_json("[len(table.row_labels), len(table.tokens)]")
    assert int(table.get_attribute("data-rows")) == rows and int(table.get_attribute("data-cols")) == cols

    row, pos = rows - 1, cols - 1
    _click_lens_cell(table, row, pos)
    detail = root.locator('[data-testid="lw-cell-detail"]')
    page.wait_for_function(
        "([el, want]) => { const d = el.querySelector('[data-testid=\"lw-cell-detail\"]');"
        " return d && d.dataset.cell === want && d.querySelector('[data-testid=\"lw-dla-row\"]'); }",
        arg=[root.element_handle(), f"{row},{pos}"],
    )
    expected = lab.python_json(f"table.select({row}, {pos})")
    drawn = detail.locator('[data-testid="lw-dla-row"]').evaluate_all(
        "els => els.map(e => [e.dataset.label, Number(e.dataset.value)])"
    )
    assert [d[0] for d in drawn] == expected["dla"]["labels"][: len(drawn)]
    for (_, value), want in zip(drawn, expected["dla"]["values"]):
        assert value == pytest.approx(want, abs=1e-5)
    logit = float(detail.locator('[data-testid="lw-dla-logit"]').get_attribute("data-value"))
    assert logit == pytest.approx(expected["dla"]["logit"], abs=1e-5)
    top = detail.locator('[data-testid="lw-topk-row"]').evaluate_all(
        "els => els.map(e => [Number(e.dataset.tokenId), Number(e.dataset.value)])"
    )
    assert top[0][0] == expected["top"][0]["id"]
    assert top[0][1] == pytest.approx(expected["top"][0]["prob"], abs=1e-6)

    # ablate the largest head contributor: the table redraws and the changed cells are marked
    head = next(label for label, kind in zip(expected["dla"]["labels"], expected["dla"]["kinds"]) if kind == "head")
    detail.locator(f'[data-testid="lw-dla-ablate"][data-label="{head}"]').click()
    banner = root.locator('[data-testid="lw-ablated"]')
    banner.wait_for(state="visible", timeout=60_000)
    assert lab.python_json("table.ablated") == [head]
    n_changed = lab.python_json("int(sum(table.changed))")
    assert int(banner.get_attribute("data-changed")) == n_changed
    # the new table is a real rerun: its final prediction equals a hand-hooked run in the kernel
    ok = lab.python_json(
        "(lambda l, h: (lambda hooks: (lambda logits: int(logits[0, -1].argmax()) == int(table.result.top_ids[-1, -1, 0]))"
        "(table.lens.model.run_with_hooks(table.lens.tokenize(table.prompt), fwd_hooks=hooks)))"
        "([(f'blocks.{l}.attn.hook_z', lambda z, hook: z.index_fill(2, __import__('torch').tensor([h]), 0.0))]))"
        f"(*map(int, {head!r}[1:].split('H')))"
    )
    assert ok
    root.locator('[data-testid="lw-undo"]').click()
    banner.wait_for(state="hidden")
    assert lab.python_json("table.ablated") == []


def test_target_mode_and_prompt_from_the_view(lab):
    page = lab.page
    lab.open("logit_lens.ipynb")
    lab.run_all(timeout_ms=300_000)
    root = page.locator('[data-testid="lw-root"]').first
    root.locator('[data-testid="lw-lens-table"]').wait_for(state="visible")

    # a typed target
    root.locator('[data-testid="lw-target"]').fill(" Rome")
    root.locator('[data-testid="lw-set-target"]').click()
    lab.wait_python("table.target_text", " Rome")
    # a target that is not one token: a clear error, the old target stays
    root.locator('[data-testid="lw-target"]').fill(" New York City")
    root.locator('[data-testid="lw-set-target"]').click()
    error = root.locator('[data-testid="lw-error"]')
    error.wait_for(state="visible")
    assert "not one" in error.inner_text()
    assert lab.python_json("table.target_text") == " Rome"

    # a target picked in a cell's top-k list (sent by id)
    rows, cols = lab.python_json("[len(table.row_labels), len(table.tokens)]")
    _click_lens_cell(root.locator('[data-testid="lw-lens-table"]'), rows - 1, cols - 1)
    second = root.locator('[data-testid="lw-topk-row"]').nth(1)
    second.wait_for(state="visible")
    picked = int(second.get_attribute("data-token-id"))
    second.click()
    lab.wait_python("table.target", picked)

    # shading mode and a new prompt
    root.locator('[data-testid="lw-lens-mode"]').select_option("target_rank")
    lab.wait_python("table.mode", "target_rank")
    root.locator('[data-testid="lw-prompt"]').fill("The capital of France is")
    root.locator('[data-testid="lw-run"]').click()
    lab.wait_python("table.prompt", "The capital of France is")
    page.wait_for_function(
        "([el, n]) => +el.querySelector('[data-testid=\"lw-lens-table\"]').dataset.cols === n",
        arg=[root.element_handle(), lab.python_json("len(table.tokens)")],
    )
