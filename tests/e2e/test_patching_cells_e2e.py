"""The patching heatmap in real JupyterLab + Chromium, read cell by cell: every cell drawn for a site
(the hidden table behind its canvas, js/patching/a11y.ts) equals TransformerLens's own sweep
computed in the kernel, as recovery and as the raw logit difference, denoising and noising.

Its notebook also holds the logit-lens table that test_logit_lens_cells_e2e.py reads: opening the
same notebook again reuses the server's kernel for it, so the second test skips the imports."""

from __future__ import annotations

CLEAN = "red fish blue tree king ship red fish blue tree king"
CORRUPTED = "red fish blue tree king moon red fish blue tree king"
SITES = ["resid_pre", "attn_head_out_all_pos", "attn_head_out_by_pos"]
ATOL = 1e-4

LENS_PROMPT = "red fish blue tree king ship red fish blue tree king ship red fish"
NOTEBOOK_NAME = "cells_e2e.ipynb"
NOTEBOOK = [
    "import lenswidget\nfrom lenswidget import models\nlens = lenswidget.Lens(models.toy())",
    f"hm = lens.patching({CLEAN!r}, {CORRUPTED!r}, 'ship', 'moon', sites={SITES!r})\nhm.sweep()\nhm",
    f"table = lens.logit_lens({LENS_PROMPT!r})\ntable",
]

# TransformerLens's sweeps with a metric written here (logit diff at the last position): not the
# code under test. Noising is TransformerLens's function with the roles swapped: the corrupted
# cache patched into the clean run.
REFERENCE = f"""
import functools as _ft, torch as _torch, tqdm as _tqdm
from transformer_lens import patching as _tlp
_tlp.tqdm = _ft.partial(_tqdm.tqdm, disable=True)
_m = lens.model
_clean, _corr = _m.to_tokens({CLEAN!r}), _m.to_tokens({CORRUPTED!r})
_a, _w = (int(_m.to_tokens(t, prepend_bos=False)[0, 0]) for t in ("ship", "moon"))
def _ld(logits):
    return logits[0, -1, _a] - logits[0, -1, _w]
with _torch.no_grad():
    _lc, _lx = float(_ld(_m(_clean))), float(_ld(_m(_corr)))
_, _cc = _m.run_with_cache(_clean)
_, _xc = _m.run_with_cache(_corr)
def _tl(site, direction):
    f = getattr(_tlp, "get_act_patch_" + site)
    return (f(_m, _corr, _cc, _ld) if direction == "denoise" else f(_m, _clean, _xc, _ld)).tolist()
from lenswidget.analysis import logit_diff_metric as _ldm, patch_sweep as _ps
def _lenswidget(site, direction):  # the plain-Python API with that direction, no widget
    return _ps(_m, _clean, _corr, _ldm([_a], [_w]), site=site, direction=direction).values.tolist()
"""

WAIT_JS = """([table, want, n, atol]) => {
    if (!table) return false;
    const tds = [...table.querySelectorAll('td[data-row]')];
    const at = (e) => e.dataset.index.split(',').reduce((g, i) => g[+i], want);
    return tds.length === n && tds.every(e => e.dataset.source === 'exact' && Math.abs(Number(e.dataset.value) - at(e)) <= atol);
}"""

READ_JS = """els => els.map(e => ({row: +e.dataset.row, col: +e.dataset.col, index: e.dataset.index.split(',').map(Number),
    value: Number(e.dataset.value), text: e.textContent, source: e.dataset.source, site: e.dataset.site}))"""


def _at(grid, index):
    for i in index:
        grid = grid[i]
    return grid


def _flat(grid) -> list[float]:
    return [v for g in grid for v in _flat(g)] if isinstance(grid, list) else [grid]


def _recovery(raw, clean: float, corrupted: float):
    if isinstance(raw, list):
        return [_recovery(g, clean, corrupted) for g in raw]
    return (raw - corrupted) / (clean - corrupted)


def _drawn(page, root, site: str, want, n: int) -> list[dict]:
    """The ``n`` cells drawn for ``site`` once they show ``want`` (a sweep or a conversion arriving)."""
    table = root.locator(f'[data-testid="lw-cells-{site}"]')
    try:
        page.wait_for_function(WAIT_JS, arg=[table.element_handle(), want, n, ATOL], timeout=60_000)
    except Exception:
        pass  # the asserts below say what differs
    return table.locator("td[data-row]").evaluate_all(READ_JS)


def _check(cells: list[dict], site: str, dims: list[str], want, python, n: int) -> None:
    """Every drawn cell equals TransformerLens (``want``, the full tensor) and the widget's Python
    result at its full index (layer, pos[, head]); its text is that value as the cell shows it
    (2 decimals below 10). A [layer, pos, head] site shows the layer x pos map of one head."""
    assert len(cells) == n, (site, len(cells), n)
    for c in cells:
        index = c["index"]
        assert c["site"] == site and c["source"] == "exact" and index[:2] == [c["row"], c["col"]], (site, c)
        ref = _at(want, index)
        assert abs(c["value"] - ref) <= ATOL, (site, index, c["value"], ref)
        assert abs(c["value"] - _at(python, index)) <= 1e-6, (site, index, c["value"])
        decimals = len(c["text"].split(".")[1]) if "." in c["text"] else 0
        assert abs(float(c["text"]) - ref) <= 0.5 * 10**-decimals + ATOL, (site, index, c["text"])
    if len(dims) == 3:
        assert len({tuple(c["index"][2:]) for c in cells}) == 1  # one head's slice


def _spread(values: list[float]) -> float:
    return max(values) - min(values)


def test_every_drawn_cell_equals_transformer_lens_in_both_metrics_and_directions(lab):
    page = lab.page
    lab.open(lab.write_notebook(NOTEBOOK_NAME, NOTEBOOK))
    lab.run_all()
    root = page.locator('[data-testid="lw-root"]').first
    root.wait_for(state="visible")
    lab.python(REFERENCE)
    clean, corrupted = lab.python_json("[_lc, _lx]")
    assert clean - corrupted > 10  # the pair separates the answers by far more than any tolerance

    def python_values(site):
        return lab.python_json(f"hm.exact_results[{site!r}].values.tolist()")

    dims = {site: lab.python_json(f"list(hm.exact_results[{site!r}].dims)") for site in SITES}
    assert dims["attn_head_out_by_pos"] == ["layer", "pos", "head"]

    drawn: dict[tuple[str, str, str], dict] = {}
    for direction in ("denoise", "noise"):
        if direction == "noise":
            root.locator('[data-testid="lw-direction"]').select_option("noise")
            lab.wait_python("hm.direction", "noise")
            root.locator('[data-testid="lw-sweep"]').click()
            lab.wait_python("hm.sweep_state", "done")
        raw = {site: lab.python_json(f"_tl({site!r}, {direction!r})") for site in SITES}
        for site in SITES:  # analysis.patch_sweep(..., direction=) agrees with TransformerLens
            ours = lab.python_json(f"_lenswidget({site!r}, {direction!r})")
            assert len(_flat(ours)) == len(_flat(raw[site]))
            assert max(abs(a - b) for a, b in zip(_flat(ours), _flat(raw[site]))) <= ATOL, (site, direction)
        for metric in (("normalized", "logit_diff") if direction == "denoise" else ("logit_diff", "normalized")):
            if lab.python_json("hm.metric") != metric:
                root.locator('[data-testid="lw-metric-toggle"]').click()
                lab.wait_python("hm.metric", metric)
            for site in SITES:
                want = raw[site] if metric == "logit_diff" else _recovery(raw[site], clean, corrupted)
                n = len(want) * len(want[0])  # rows (layers) x columns (positions or heads)
                cells = _drawn(page, root, site, want, n)
                _check(cells, site, dims[site], want, python_values(site), n)
                label = root.locator(f'[data-testid="lw-cells-{site}"]').get_attribute("data-metric")
                assert ("recovery" in label) == (metric == "normalized"), label
                drawn[(direction, metric, site)] = {tuple(c["index"]): c["value"] for c in cells}
                # not a constant map, and not the unpatched run's value everywhere
                assert _spread([c["value"] for c in cells]) > 0.25, (direction, metric, site)

    # the two shadings and the two directions are different maps, by far more than the tolerance
    for direction in ("denoise", "noise"):
        for site in SITES:
            rec, ld = drawn[(direction, "normalized", site)], drawn[(direction, "logit_diff", site)]
            assert rec.keys() == ld.keys()  # the same cells (one head's slice stays shown)
            assert max(abs(rec[k] - ld[k]) for k in rec) > 1
    for metric in ("normalized", "logit_diff"):
        for site in SITES:
            den, noi = drawn[("denoise", metric, site)], drawn[("noise", metric, site)]
            assert den.keys() == noi.keys()
            assert max(abs(den[k] - noi[k]) for k in den) > 0.5, (metric, site)
    # resid_pre: denoising the position where the prompts differ recovers the clean run; noising
    # it destroys it (recovery ~1 vs ~0), the other positions barely move
    pos = [i for i, (a, b) in enumerate(zip(CLEAN.split(), CORRUPTED.split())) if a != b][0] + 1  # + BOS
    assert drawn[("denoise", "normalized", "resid_pre")][(0, pos)] > 0.9
    assert drawn[("noise", "normalized", "resid_pre")][(0, pos)] < 0.1
    assert lab.python_json("hm.error") == {}
