"""The quickstart in real JupyterLab + Chromium: click a head, ablate it, compare with Python."""

from __future__ import annotations

import time

import pytest

XSS = "<img src=x onerror=alert(1)>"


def _click_cell(canvas, row: int, col: int) -> None:
    d = canvas.evaluate("c => ({...c.dataset})")
    cw = float(d.get("cellW") or d["cell"])
    ch = float(d.get("cellH") or d["cell"])
    gap = float(d.get("gap", 0))
    x = float(d["originX"]) + col * (cw + gap) + cw / 2
    y = float(d["originY"]) + row * (ch + gap) + ch / 2
    canvas.click(position={"x": x, "y": y})


def test_quickstart_click_head_ablate_numbers_match_python(lab):
    page = lab.page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    lab.open("quickstart.ipynb")
    lab.run_all()

    root = page.locator('[data-testid="lw-root"]').first
    root.wait_for(state="visible")
    grid = root.locator('[data-testid="lw-grid"]')
    grid.wait_for(state="visible")
    rows, cols = int(grid.get_attribute("data-rows")), int(grid.get_attribute("data-cols"))
    n_layers, n_heads = lab.python_json("[grid.n_layers, grid.n_heads]")
    assert (rows, cols) == (n_layers, n_heads)

    # click head L1H0 in the grid: focus syncs back to Python
    _click_cell(grid, 1, 0)
    focus = root.locator('[data-testid="lw-focus"]')
    focus.wait_for(state="visible")
    assert focus.get_attribute("data-head") == "1,0"
    lab.wait_python("grid.focus", [1, 0], timeout=10)

    # ablate it: the hooked rerun happens in the kernel, the result is drawn in place
    t0 = time.perf_counter()
    root.locator('[data-testid="lw-ablate"]').click()
    page.wait_for_function(
        """(el) => { const r = el.querySelector('[data-testid="lw-result"]');
                     return r && r.querySelector('[data-testid="lw-delta"]') && r.textContent.includes('L1H0'); }""",
        arg=root.element_handle(),
    )
    roundtrip_ms = (time.perf_counter() - t0) * 1000
    print(f"toy ablate click -> redrawn: {roundtrip_ms:.0f} ms")

    drawn = root.locator('[data-testid="lw-delta"]').evaluate_all(
        "els => els.map(e => [Number(e.dataset.pos), Number(e.dataset.value), e.textContent.trim()])"
    )
    expected = lab.python_json("__import__('lenswidget').analysis.ablate_heads(lens.model, lens.tokenize(grid.prompt), [(1, 0)], mode='zero').to_json(lens.model)")
    assert len(drawn) == len(expected["delta_logprob"])
    for pos, value, text in drawn:
        assert value == pytest.approx(expected["delta_logprob"][pos], abs=1e-6)
        assert text.replace("−", "-").startswith(f"{expected['delta_logprob'][pos]:.3f}"[:5])
    mean = float(root.locator('[data-testid="lw-mean-delta"]').get_attribute("data-value"))
    assert mean == pytest.approx(expected["mean_delta"], abs=1e-6)
    top_after = root.locator('[data-testid="lw-top-after"] [data-testid="lw-top-row"]').evaluate_all(
        "els => els.map(e => [e.dataset.token, Number(e.dataset.value)])"
    )
    assert top_after[0][1] == pytest.approx(expected["top_after"][0]["prob"], abs=1e-6)
    # the widget's own trait holds what was drawn
    assert lab.python_json("grid.last_result['delta_logprob']") == pytest.approx(expected["delta_logprob"], abs=1e-9)

    # the mode select: Ablate now does a mean ablation, drawn = Python's
    root.locator('[data-testid="lw-mode"]').select_option("mean")
    lab.wait_python("grid.ablation_mode", "mean", timeout=10)
    root.locator('[data-testid="lw-ablate"]').click()
    page.wait_for_function(
        "(el) => (el.querySelector('[data-testid=\"lw-result-title\"]') || {}).textContent?.includes('Mean-ablating')",
        arg=root.element_handle(),
    )
    drawn = root.locator('[data-testid="lw-delta"]').evaluate_all("els => els.map(e => Number(e.dataset.value))")
    mean = lab.python_json(
        "__import__('lenswidget').analysis.ablate_heads(lens.model, lens.tokenize(grid.prompt), [(1, 0)], mode='mean').delta_logprob.tolist()"
    )
    assert drawn == pytest.approx(mean, abs=1e-6)
    # Clear removes the result in both places; colour-by reaches Python
    root.locator('[data-testid="lw-clear"]').click()
    lab.wait_python("grid.last_result", {}, timeout=10)
    assert root.locator('[data-testid="lw-delta"]').count() == 0
    root.locator('[data-testid="lw-color-by"]').select_option("previous_token")
    lab.wait_python("grid.color_by", "previous_token", timeout=10)
    assert not dialogs


def test_bad_prompt_shows_error_and_widget_survives(lab):
    page = lab.page
    lab.open("quickstart.ipynb")
    lab.run_all()
    root = page.locator('[data-testid="lw-root"]').first
    root.locator('[data-testid="lw-grid"]').wait_for(state="visible")
    prompt_before = lab.python_json("grid.prompt")

    box = root.locator('[data-testid="lw-prompt"]')
    box.fill("   ")
    root.locator('[data-testid="lw-run"]').click()
    err = root.locator('[data-testid="lw-error"]')
    err.wait_for(state="visible")
    assert "empty" in err.inner_text()
    assert lab.python_json("grid.prompt") == prompt_before
    assert "empty" in lab.python_json("grid.error['message']")

    # a new prompt works after the error
    box.fill("the dog ran to the cat . the dog ran to the cat")
    root.locator('[data-testid="lw-run"]').click()
    lab.wait_python("grid.prompt", "the dog ran to the cat . the dog ran to the cat", timeout=20)
    page.wait_for_function(
        "(el) => el.querySelectorAll('[data-testid=\"lw-prompt-token\"]').length > 5", arg=root.element_handle()
    )


def test_tokens_are_text_not_html(lab):
    """An HTML-looking prompt on SmolLM2 (BPE keeps the characters) is shown as text and runs nothing."""
    page = lab.page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    lab.open("quickstart.ipynb")
    lab.run_all()
    root = page.locator('[data-testid="lw-root"]').nth(1)  # the SmolLM2 grid
    root.locator('[data-testid="lw-grid"]').wait_for(state="visible")
    root.locator('[data-testid="lw-prompt"]').fill(XSS)
    root.locator('[data-testid="lw-run"]').click()
    page.wait_for_function(
        "(el) => Array.from(el.querySelectorAll('[data-testid=\"lw-prompt-token\"]')).map(e => e.textContent).join('').includes('onerror')",
        arg=root.element_handle(),
    )
    assert root.locator("img").count() == 0
    text = "".join(root.locator('[data-testid="lw-prompt-token"]').all_text_contents())
    assert "img" in text and "alert(1)" in text
    assert not dialogs


def test_follows_jupyterlab_dark_theme_and_theme_trait(lab):
    page = lab.page
    lab.open("quickstart.ipynb")
    lab.run_all()
    root = page.locator('[data-testid="lw-root"]').first
    root.locator('[data-testid="lw-grid"]').wait_for(state="visible")
    assert root.get_attribute("data-theme") == "light"
    light_bg = root.evaluate("el => getComputedStyle(el).backgroundColor")
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function("(el) => el.dataset.theme === 'dark'", arg=root.element_handle(), timeout=30_000)
    dark_bg = root.evaluate("el => getComputedStyle(el).backgroundColor")
    assert dark_bg != light_bg
    # the theme trait forces a palette whatever the notebook's theme
    lab.python("grid.theme = 'light'")
    page.wait_for_function("(el) => el.dataset.theme === 'light'", arg=root.element_handle())
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
    lab.python("grid.theme = 'auto'")


def test_export_png_and_svg(lab, tmp_path):
    page = lab.page
    lab.open("quickstart.ipynb")
    lab.run_all()
    root = page.locator('[data-testid="lw-root"]').first
    root.locator('[data-testid="lw-grid"]').wait_for(state="visible")
    for item, check in (
        ("lw-export-png", lambda data: data[:8] == b"\x89PNG\r\n\x1a\n"),
        ("lw-export-svg", lambda data: data.lstrip().startswith((b"<svg", b"<?xml")) and b"L1" in data),
    ):
        root.locator('[data-testid="lw-export"]').click()
        with page.expect_download() as info:
            root.locator(f'[data-testid="{item}"]').click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        data = path.read_bytes()
        assert len(data) > 500 and check(data), (item, data[:80])


def test_long_prompt_pooled_grid_focus_fetches_the_full_pattern(lab):
    """A prompt longer than the thumbnails: the grid shows pooled thumbnails; focusing a head asks
    the kernel for its full pattern, drawn with every token; hover numbers equal Python's."""
    page = lab.page
    lab.open("quickstart.ipynb")
    lab.run_all()
    root = page.locator('[data-testid="lw-root"]').first
    root.locator('[data-testid="lw-grid"]').wait_for(state="visible")
    prompt = " ".join(["the cat sat on the mat . the dog ran to the door ."] * 8)
    root.locator('[data-testid="lw-prompt"]').fill(prompt)
    root.locator('[data-testid="lw-run"]').click()
    lab.wait_python("grid.prompt == %r and grid.patterns_meta['pooled']" % prompt, True, timeout=60)
    T = lab.python_json("len(grid.tokens)")
    assert T > 64
    grid = root.locator('[data-testid="lw-grid"]')
    _click_cell(grid, 1, 0)
    focus = root.locator('[data-testid="lw-focus"]')
    focus.wait_for(state="visible", timeout=20_000)
    assert focus.get_attribute("data-head") == "1,0"
    queries = root.locator('[data-testid="lw-query"]')
    assert queries.count() == T  # the full pattern, not the thumbnail
    q = T - 3
    queries.nth(q).hover()
    items = root.locator('[data-testid="lw-attend-item"]')
    items.first.wait_for(state="attached")
    drawn = items.evaluate_all("els => els.map(e => [Number(e.dataset.index), Number(e.dataset.value)])")
    row = lab.python_json(f"grid.pattern(1, 0)[{q}].tolist()")
    for k, value in drawn:
        assert value == pytest.approx(row[k], abs=2e-3)
    assert drawn[0][1] == pytest.approx(max(row), abs=2e-3)


LONG_CELL = """import lenswidget, torch
from lenswidget import models
lens = lenswidget.Lens(models.random_hf("llama", n_layers=2, n_heads=4, n_ctx=1100, seed=1, initializer_range=0.2))
words = "the cat sat on the mat and a dog ran to the door".split()
prompt = " ".join(words[i % len(words)] for i in range(999))
grid = lens.attention(prompt)
grid"""


def test_long_prompt_focus_overview_then_window_numbers_match_python(lab, tmp_path):
    """~1,000 tokens: focusing a head draws its max-pooled overview (no rerun), clicking the
    overview loads a window at full resolution with token labels; the hovered overview cell and
    window cell, and the Find box, agree with Python (TransformerLens's own cached pattern)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nb.cells = [nbformat.v4.new_code_cell(LONG_CELL)]
    nbformat.write(nb, lab.server["root"] / "long_focus.ipynb")
    page = lab.page
    lab.open("long_focus.ipynb")
    lab.run_all()
    T = lab.python_json("len(grid.tokens)")
    assert T == 1000
    root = page.locator('[data-testid="lw-root"]').first
    grid = root.locator('[data-testid="lw-grid"]')
    grid.wait_for(state="visible")
    t0 = time.perf_counter()
    _click_cell(grid, 1, 2)
    panel = root.locator('[data-testid="lw-overview-panel"]')
    panel.wait_for(state="visible", timeout=20_000)
    print(f"focus click -> overview drawn at {T} tokens: {(time.perf_counter() - t0) * 1000:.0f} ms")
    lab.wait_python("grid.focus", [1, 2], timeout=10)
    focus = root.locator('[data-testid="lw-focus"]')
    page.wait_for_function("(el) => el.dataset.window === '0,64,0,64'", arg=focus.element_handle())
    b = int(panel.get_attribute("data-bin"))
    side = int(panel.get_attribute("data-side"))
    assert b > 1 and side == -(-T // b)

    # Python's reference: TransformerLens's cached pattern of L1H2, max-pooled by hand for the overview
    lab.python(
        "_, _c = lens.model.run_with_cache(lens.tokenize(prompt)); ref = _c['blocks.1.attn.hook_pattern'][0, 2].float()\n"
        f"pooled = torch.nn.functional.max_pool2d(torch.nn.functional.pad(ref, (0, {side * b - T}, 0, {side * b - T}))[None, None], {b})[0, 0]"
    )
    over = root.locator('[data-testid="lw-overview"]')
    r, c = 200, 120
    d = over.evaluate("c => ({...c.dataset})")
    cell = float(d["cell"])
    pos = {"x": float(d["originX"]) + c * cell + cell / 2, "y": float(d["originY"]) + r * cell + cell / 2}
    over.hover(position=pos)
    info = root.locator('[data-testid="lw-overview-info"]')
    page.wait_for_function("(el) => el.dataset.value !== undefined && el.dataset.value !== ''", arg=info.element_handle())
    assert "float16" in info.text_content()
    # the cell the view says is hovered (1 px cells: the pointer may land on a neighbour)
    hq0, hq1, hk0, hk1 = map(int, info.get_attribute("data-cell").split(","))
    r, c = hq0 // b, hk0 // b
    assert (hq1, hk1) == (min(T, hq0 + b), min(T, hk0 + b)) and abs(r - 200) <= 1 and abs(c - 120) <= 1
    want = lab.python_json(f"float(pooled[{r}, {c}])")
    assert float(info.get_attribute("data-value")) == pytest.approx(want, abs=1e-3)
    assert want > 0.005  # a weight, not an empty cell

    # click it: a 64 x 64 window centred on those tokens, drawn with their labels
    over.click(position=pos)
    qc, kc = (hq0 + hq1) // 2, (hk0 + hk1) // 2
    q0, k0 = max(0, min(T - 64, qc - 32)), max(0, min(T - 64, kc - 32))
    expected = [q0, q0 + 64, k0, k0 + 64]
    lab.wait_python("grid.focus_window", expected, timeout=20)
    page.wait_for_function("([el, w]) => el.dataset.window === w", arg=[focus.element_handle(), ",".join(map(str, expected))])
    queries = root.locator('[data-testid="lw-query"]')
    assert queries.count() == 64
    tokens = lab.python_json("grid.tokens")
    assert queries.first.get_attribute("title") == f"#{q0} {__import__('json').dumps(tokens[q0])}"
    pat = root.locator('[data-testid="lw-pattern"]')
    d = pat.evaluate("c => ({...c.dataset})")
    cw = float(d["cell"])
    i, j = 40, 10
    pat.hover(position={"x": float(d["originX"]) + j * cw + cw / 2, "y": float(d["originY"]) + i * cw + cw / 2})
    finfo = root.locator('[data-testid="lw-focus-info"]')
    page.wait_for_function("(el) => !!el.dataset.q", arg=finfo.element_handle())
    q, k = int(finfo.get_attribute("data-q")), int(finfo.get_attribute("data-k"))
    assert (q, k) == (q0 + i, k0 + j)
    exact = lab.python_json(f"float(ref[{q}, {k}])")
    assert float(finfo.get_attribute("data-value")) == pytest.approx(exact, abs=1e-6)

    # Find a token outside the window: the window moves to it, its row is locked and listed
    target = next(n for n in range(T) if "door" in tokens[n].lower())
    assert not (q0 <= target < q0 + 64)
    find = root.locator('[data-testid="lw-find"]')
    find.fill("door")
    find.press("Enter")
    assert focus.get_attribute("data-locked") == f"row:{target}"
    page.wait_for_function(
        "([el, t]) => { const [a, b] = el.dataset.window.split(',').map(Number); return a <= t && t < b; }",
        arg=[focus.element_handle(), target],
    )
    items = root.locator('[data-testid="lw-attend-item"]')
    items.first.wait_for(state="attached")
    win = lab.python_json("grid.focus_window")
    row = lab.python_json(f"ref[{target}, {win[2]}:{win[3]}].tolist()")
    top = items.evaluate_all("els => els.map(e => [Number(e.dataset.index), Number(e.dataset.value)])")
    assert top[0][1] == pytest.approx(max(row), abs=1e-6) and top[0][0] == win[2] + row.index(max(row))
