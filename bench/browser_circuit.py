"""The circuit graph in real JupyterLab + Chromium on SmolLM2 (issue #8's browser targets).

    python bench/browser_circuit.py

Measures, in the page (performance.now), on a notebook written for the run (SmolLM2's factual pair,
EAP, 70,651 edges, the view holding the top 500):
- click an edge -> its exact patch drawn in the panel (a kernel round trip: one patched forward
  pass; target <= 1 s), for several edges; the last drawn value is checked against
  ``analysis.circuits.patch_edge`` run in the kernel;
- a size change to 200 edges -> the graph redrawn (in the browser, from the scores the view holds,
  before Python's exact faithfulness arrives; target <= 100 ms), alternating with 40 edges; and
  the graph's own ``data-draw-ms`` (prune + SVG build, without the frame wait);
and, for scale, one forward pass of the same prompt with TransformerLens in the kernel.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import Lab, chromium, jupyter_lab  # noqa: E402

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPTED = "The Colosseum is located in the city of"

CELLS = [
    """import lenswidget, time, statistics, torch
from lenswidget import models
from lenswidget.analysis import circuits
smol = lenswidget.Lens(models.smollm2())""",
    f"""fact = smol.circuit({CLEAN!r}, {CORRUPTED!r}, " Paris", " Rome", method="eap", size=40)
fact""",
]

EDGE_CLICK = """async ([index, label]) => {
    const node = window.jupyterapp.shell.currentWidget.content.widgets[index].node;
    const hit = node.querySelector(`[data-edge="${label}"] path.lw-ci-hit`);
    if (!hit) throw new Error('edge not drawn: ' + label);
    const t0 = performance.now();
    hit.dispatchEvent(new MouseEvent('click', {bubbles: true}));
    while (true) {
        const t = node.querySelector('[data-testid="lw-ci-edge-label"]');
        const v = node.querySelector('[data-testid="lw-ci-edge-value"]');
        if (t && t.dataset.edge === label && v) return [performance.now() - t0, Number(v.dataset.value)];
        if (performance.now() - t0 > 30000) throw new Error('timeout');
        await new Promise(r => requestAnimationFrame(r));
    }
}"""

SIZE_CHANGE = """async ([index, n]) => {
    const node = window.jupyterapp.shell.currentWidget.content.widgets[index].node;
    const graph = node.querySelector('[data-testid="lw-ci-graph"]');
    const faith = () => node.querySelector('[data-testid="lw-ci-faithfulness"]');
    const size = node.querySelector('[data-testid="lw-ci-size"]');
    const before = Number(graph.dataset.redraws);
    const t0 = performance.now();
    size.value = String(n);
    size.dispatchEvent(new Event('change', {bubbles: true}));
    while (!(Number(graph.dataset.redraws) > before && graph.dataset.size === String(n))) {
        if (performance.now() - t0 > 10000) throw new Error('no redraw');
        await new Promise(r => requestAnimationFrame(r));
    }
    const redrawn = performance.now() - t0;
    const drawMs = Number(graph.dataset.drawMs), edges = Number(graph.dataset.edges);
    while (faith().dataset.pending !== 'false' || faith().dataset.size !== String(n)) {   // Python's exact value
        if (performance.now() - t0 > 120000) throw new Error('no faithfulness');
        await new Promise(r => setTimeout(r, 20));
    }
    return [redrawn, drawMs, edges, performance.now() - t0];
}"""


def _run_cell(lab: Lab, index: int, timeout_ms: int) -> None:
    lab.page.evaluate(
        """async (index) => {
            const panel = window.jupyterapp.shell.currentWidget;
            await panel.sessionContext.ready;
            panel.content.activeCellIndex = index;
            await window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )
    lab.wait_idle(timeout_ms)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, jupyter_lab(Path(tmp)) as server, chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        lab = Lab(page, server)
        lab.open(lab.write_notebook("bench_circuit.ipynb", CELLS))
        _run_cell(lab, 0, 300_000)
        _run_cell(lab, 1, 900_000)
        page.wait_for_selector('[data-testid="lw-ci-graph"] [data-edge]', state="attached", timeout=60_000)
        info = lab.python_json("[fact.n_edges, fact.edges['n'], len(smol.tokenize(%r)[0])]" % CLEAN)
        # edges drawn at size 40, strongest first (as Python holds them)
        drawn = lab.python_json("fact.current['edges']")
        # the kernel's own time per click (the rest is transport, trait sync and drawing)
        lab.python("_kernel_ms = []\n_orig = fact._req_patch_edge\n"
                   "def _timed(edge):\n    t0 = time.perf_counter(); r = _orig(edge); _kernel_ms.append((time.perf_counter() - t0) * 1000); return r\n"
                   "fact._req_patch_edge = _timed")
        clicks = [page.evaluate(EDGE_CLICK, [1, label]) for label in drawn[:6]]
        last_label, last_value = drawn[5], clicks[-1][1]
        kernel_ms = lab.python_json("_kernel_ms")
        exact = lab.python_json(
            f"circuits.patch_edge(smol.model, fact.work.clean, fact.work.corrupted, fact.work.metric, {last_label!r})"
        )
        sizes = []
        for _ in range(5):
            sizes.append(page.evaluate(SIZE_CHANGE, [1, 200]))
            page.evaluate(SIZE_CHANGE, [1, 40])
        drawn_200 = lab.python_json("fact.set_size(200)['edges'].__len__()")
        tl_ms = lab.python_json(
            "statistics.median([(lambda t0: (smol.model(fact.work.corrupted), time.perf_counter() - t0)[1])"
            "(time.perf_counter()) for _ in range(5)]) * 1000"
        )
    med = statistics.median
    click_ms = [c[0] for c in clicks]
    redraw_ms = [s[0] for s in sizes]
    print(f"SmolLM2 factual pair: {info[2]} tokens, {info[0]} edges, the view holds the top {info[1]}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'what':62} {'ms':>8} {'target':>8} ok")
    rows = [
        ("click an edge -> exact patch drawn (median of 6)", med(click_ms), 1000),
        ("  ... slowest of 6", max(click_ms), 1000),
        (f"size 40 -> 200 edges -> graph redrawn ({int(sizes[0][2])} drawn; median of 5)", med(redraw_ms), 100),
        ("  ... slowest of 5", max(redraw_ms), 100),
        ("  ... of which prune + SVG build (data-draw-ms, median)", med(s[1] for s in sizes), None),
        ("  ... then Python's exact faithfulness shown (median)", med(s[3] for s in sizes), None),
        ("TransformerLens: one forward of the prompt in the kernel (median of 5)", tl_ms, None),
    ]
    for what, ms, target in rows:
        ok = "" if target is None else ("yes" if ms <= target else "NO")
        print(f"{what:62} {ms:8.1f} {target or '':>8} {ok}")
    print(f"drawn exact value of {last_label}: {last_value:.6f}; patch_edge in the kernel: {exact:.6f} "
          f"({'equal' if abs(last_value - exact) < 1e-4 else 'DIFFERENT'}); edges drawn at 200: view {int(sizes[0][2])}, Python {drawn_200}")
    print("edge clicks, ms drawn / ms in the kernel's handler: "
          + ", ".join(f"{c:.0f} / {k:.0f} ({label})" for c, k, label in zip(click_ms, kernel_ms, drawn)))
    print(f"click / TL forward: {med(click_ms) / tl_ms:.1f}x (an exact edge patch is one patched forward from the edge's layer)")


if __name__ == "__main__":
    main()
