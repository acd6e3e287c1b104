"""The hidden cell tables behind the canvases (js/lib/celltable.ts), in Debian's Chromium.

    python bench/cell_tables.py

Mounts the built logit-lens bundle on a synthetic 514-token x 31-row table (SmolLM2's size in
bench/browser.py; no kernel, no model) and prints: the frame times while scrolling (the table is
rebuilt only once scrolling pauses, so these should stay at a frame, ~16.7 ms at 60 Hz), the canvas
draw time, and the time one rebuild of the table of the drawn window takes (measured as
`lwScrollToCell`, which draws and builds at once, minus the draw).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import chromium  # noqa: E402

JS = """async ([code, css, R, T]) => {
  const st = document.createElement('style'); st.textContent = css; document.head.appendChild(st);
  const mod = (await import(URL.createObjectURL(new Blob([code], {type: 'text/javascript'})))).default;
  const k = 5, V = 997;
  const ids = new DataView(new ArrayBuffer(R * T * k * 4)), probs = new DataView(new ArrayBuffer(R * T * k * 2));
  for (let i = 0; i < R * T * k; i++) { ids.setInt32(4 * i, (i * 7) % V, true); probs.setUint16(2 * i, 0x3800, true); }
  const vocab = {}; for (let i = 0; i < V; i++) vocab[String(i)] = ' tok' + i;
  const attrs = {prompt: 'x', tokens: Array.from({length: T}, (_, i) => ' w' + i), row_labels: [], row_hooks: [], k,
    top_ids: ids, top_probs: probs, top_meta: {shape: [R, T, k]}, vocab, target: -1, target_text: '', target_stats: {},
    mode: 'top', selected: [], cell_detail: {}, ablated: [], changed: new DataView(new ArrayBuffer(0)), error: {},
    busy: '', theme: 'light', ablation_mode: 'zero', resample_prompts: [], ablated_mode: ''};
  const model = {get: (n) => attrs[n], set: (n, v) => { attrs[n] = v; }, save_changes() {}, on() {}, off() {}, send() {}};
  const el = document.createElement('div'); el.style.width = '1100px'; document.body.appendChild(el);
  mod.render({model, el});
  await new Promise(r => requestAnimationFrame(r));
  const box = el.querySelector('[data-testid="lw-lens-scroll"]');
  const canvas = el.querySelector('[data-testid="lw-lens-table"]');
  const frames = [], draws = [], builds = [];
  let last = performance.now();
  for (let i = 0; i < 120; i++) {
    box.scrollLeft = (i * 97) % Math.max(1, box.scrollWidth - box.clientWidth);
    box.scrollTop = (i * 13) % Math.max(1, box.scrollHeight - box.clientHeight + 1);
    await new Promise(r => requestAnimationFrame(r));
    const t = performance.now(); frames.push(t - last); last = t; draws.push(Number(canvas.dataset.drawMs));
  }
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    canvas.lwScrollToCell(R - 1 - (i % R), (i * 37) % T);
    builds.push(performance.now() - t0 - Number(canvas.dataset.drawMs));
  }
  const cells = el.querySelectorAll('[data-testid="lw-lens-cells"] td[data-row]').length;
  return {frames, draws, builds, cells};
}"""


def main() -> None:
    static = REPO / "src" / "lenswidget" / "static"
    code, css = (static / "logit_lens.js").read_text(), (static / "lenswidget.css").read_text()
    R, T = 31, 514
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto("about:blank")
        out = page.evaluate(JS, [code, css, R, T])
    med = statistics.median
    frames = sorted(out["frames"])
    print(f"logit lens {T} tokens x {R} rows, {out['cells']} cells in the drawn window's table")
    print(f"scrolling: median frame {med(frames):.1f} ms, 95th percentile {frames[int(len(frames) * 0.95)]:.1f} ms")
    print(f"canvas draw while scrolling: median {med(out['draws']):.1f} ms")
    print(f"one table rebuild (after scrolling pauses): median {med(out['builds']):.1f} ms")
    print(json.dumps({k: round(med(out[k]), 2) for k in ("frames", "draws", "builds")}))


if __name__ == "__main__":
    main()
