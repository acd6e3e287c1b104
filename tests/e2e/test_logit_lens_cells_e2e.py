"""The logit-lens table in real JupyterLab + Chromium, read cell by cell after an ablation made in the
view: every drawn cell (the hidden table behind the virtualised canvas, js/logit_lens/a11y.ts) equals
a logit lens written here, on a run with the head zeroed by a hand-written hook."""

from __future__ import annotations

from .test_patching_cells_e2e import LENS_PROMPT as PROMPT
from .test_patching_cells_e2e import NOTEBOOK, NOTEBOOK_NAME  # one notebook, one kernel for both files

PROB_ATOL = 1e-3  # probabilities travel as float16 (half a step below 1 is 2.4e-4)

# The logit lens by hand: each row's residual stream (blocks.l.hook_resid_pre, the last
# resid_post) through the model's own final norm and unembedding, softmax; the head zeroed at its
# hook_z. Not the code under test. The last row is checked against the model's real logits.
REFERENCE = f"""
import torch as _torch
_m = lens.model
_toks = _m.to_tokens({PROMPT!r})
_n = _m.cfg.n_layers
_names = [f"blocks.{{l}}.hook_resid_pre" for l in range(_n)] + [f"blocks.{{_n - 1}}.hook_resid_post"]
def _lens(head=None):
    store = {{}}
    hooks = [(nm, lambda x, hook, nm=nm: store.__setitem__(nm, x.detach().clone())) for nm in _names]
    if head is not None:
        layer, h = map(int, head[1:].split("H"))
        hooks.insert(0, (f"blocks.{{layer}}.attn.hook_z", lambda z, hook: z.index_fill(2, _torch.tensor([h]), 0.0)))
    with _torch.no_grad():
        logits = _m.run_with_hooks(_toks, fwd_hooks=hooks)
        ll = _m.unembed(_m.ln_final(_torch.stack([store[nm][0] for nm in _names])))
    assert float((ll[-1] - logits[0]).abs().max()) < 1e-4
    top = ll.softmax(-1).max(-1)
    return {{"ids": top.indices.tolist(), "probs": top.values.tolist(),
            "text": [[_m.tokenizer.decode([i]) for i in row] for row in top.indices.tolist()]}}
"""

READ_JS = """els => els.map(e => ({row: +e.dataset.row, col: +e.dataset.col, id: +e.dataset.tokenId,
    prob: Number(e.dataset.prob), value: Number(e.dataset.value), changed: e.dataset.changed === 'true',
    text: e.textContent}))"""


def _click_lens_cell(canvas, row: int, pos: int) -> None:
    canvas.click(position=canvas.evaluate("(el, rp) => el.lwScrollToCell(rp[0], rp[1])", [row, pos]))


def _all_cells(canvas, cells, rows: int, cols: int) -> dict[tuple[int, int], dict]:
    """Every cell of the table, read from the drawn windows (scrolling to the far corner when the
    table is wider or taller than its viewport)."""
    out: dict[tuple[int, int], dict] = {}
    for row, pos in ((0, 0), (rows - 1, cols - 1)):
        canvas.evaluate("(el, rp) => el.lwScrollToCell(rp[0], rp[1])", [row, pos])
        assert cells.get_attribute("data-window") == canvas.get_attribute("data-window")
        for c in cells.locator("td[data-row]").evaluate_all(READ_JS):
            out[(c["row"], c["col"])] = c
    assert len(out) == rows * cols
    return out


def _check(drawn: dict, ref: dict, original: dict | None) -> None:
    for (r, p), c in drawn.items():
        assert c["id"] == ref["ids"][r][p], (r, p, c, ref["ids"][r][p])
        assert abs(c["prob"] - ref["probs"][r][p]) <= PROB_ATOL, (r, p, c["prob"], ref["probs"][r][p])
        assert c["value"] == c["prob"]  # shaded by the top-1 probability
        if not any(ch.isspace() for ch in ref["text"][r][p]):
            assert c["text"] == ref["text"][r][p]
        # marked changed exactly where the top-1 token differs from the unablated lens
        assert c["changed"] == (original is not None and ref["ids"][r][p] != original["ids"][r][p]), (r, p)


def test_ablated_logit_lens_cells_equal_a_hand_written_lens(lab):
    page = lab.page
    lab.open(lab.write_notebook(NOTEBOOK_NAME, NOTEBOOK))
    lab.run_all()
    root = page.locator('[data-testid="lw-root"]').nth(1)  # the patching heatmap is the first
    canvas = root.locator('[data-testid="lw-lens-table"]')
    canvas.wait_for(state="visible")
    cells = root.locator('[data-testid="lw-lens-cells"]')
    lab.python(REFERENCE)
    rows, cols = lab.python_json("[len(table.row_labels), len(table.tokens)]")
    original = lab.python_json("_lens()")
    before = _all_cells(canvas, cells, rows, cols)
    _check(before, original, None)

    # the view's ablation: click the last cell, then "ablate" on a layer-0 head among its contributors
    _click_lens_cell(canvas, rows - 1, cols - 1)
    detail = root.locator('[data-testid="lw-cell-detail"]')
    detail.locator('[data-testid="lw-dla-row"]').first.wait_for(state="visible")
    labels = detail.locator('[data-testid="lw-dla-ablate"]').evaluate_all("els => els.map(e => e.dataset.label)")
    head = next(label for label in labels if label.startswith("L0H"))
    detail.locator(f'[data-testid="lw-dla-ablate"][data-label="{head}"]').click()
    root.locator('[data-testid="lw-ablated"]').wait_for(state="visible", timeout=60_000)
    assert lab.python_json("[table.ablated, table.ablated_mode]") == [[head], "zero"]
    page.wait_for_function(
        "(el) => el.querySelector('[data-testid=\"lw-lens-cells\"] td[data-changed]')", arg=root.element_handle()
    )

    ablated = lab.python_json(f"_lens({head!r})")
    after = _all_cells(canvas, cells, rows, cols)
    _check(after, ablated, original)
    # the ablation moved the drawn cells by far more than the tolerance, and changed some top tokens
    assert max(abs(after[k]["prob"] - before[k]["prob"]) for k in after) > 100 * PROB_ATOL
    n_changed = sum(c["changed"] for c in after.values())
    assert n_changed > 0 and n_changed == lab.python_json("int(sum(table.changed))")
    assert lab.python_json("table.error") == {}

    # Undo: the original lens again, nothing marked
    root.locator('[data-testid="lw-undo"]').click()
    root.locator('[data-testid="lw-ablated"]').wait_for(state="hidden")
    page.wait_for_function(
        "(el) => !el.querySelector('[data-testid=\"lw-lens-cells\"] td[data-changed]')", arg=root.element_handle()
    )
    _check(_all_cells(canvas, cells, rows, cols), original, None)
