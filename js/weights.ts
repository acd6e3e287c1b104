// WeightsView view (widgets/weights.py; contract in docs/protocol.md, WeightsView).
//
// Header: prompt + Run, the Q / K / V tabs (they set the `kind` trait), the baseline. Body: the
// heads x heads composition heatmap (row = earlier head, column = later head; cells that are not
// earlier -> later are drawn as missing) with a legend marking the random baseline (mean ± 2 std),
// the layers x heads strip of copying scores, and the pair / head panels (weights/panels.ts).
// Clicking a cell sends `pair {src_layer, src_head, dst_layer, dst_head}`; a head of the strip
// sends `head {layer, head}`.
//
// Elements (data-testid): lw-wt-kind-<q|k|v> (aria-pressed), lw-wt-baseline, lw-wt-comp (canvas,
// grid geometry in data attributes), lw-wt-hover, lw-wt-legend (lw-wt-legend-baseline with
// data-value), lw-wt-copying (canvas), plus the panels'.

import { diverging, gradientCss, sequential } from "./lib/colors";
import { button, h } from "./lib/dom";
import { fmt3 } from "./lib/format";
import { Heatmap } from "./lib/heatmap";
import { promptRow } from "./lib/inputs";
import { hasTensor } from "./lib/buffers";
import type { RenderProps } from "./lib/types";
import { decodeTensor } from "./lib/buffers";
import { createWidget, svgBlob } from "./lib/widget";
import type { Kind } from "./weights/data";
import { KINDS, cellOfPair, compDomain, decodeComposition, headLabel, legendFraction, normalizeKind, pairOfCell } from "./weights/data";
import { HeadPanel, PairPanel } from "./weights/panels";

// Not a named export: anywidget warns ("Direct export of a 'render'") when a module has one.
function render({ model, el }: RenderProps): () => void {
  const w = createWidget(model, el, { name: "weights" });
  const nL = () => Number(model.get("n_layers")) || 0;
  const nH = () => Number(model.get("n_heads")) || 0;

  // ---- header -------------------------------------------------------------------------------
  const prompt = promptRow(w);
  const tabs = h("div", { class: "lw-wt-tabs", attrs: { role: "tablist", "aria-label": "Composition kind" } });
  const tabBtns = new Map<Kind, HTMLButtonElement>();
  for (const k of KINDS) {
    const b = button(`${k.toUpperCase()}-composition`, `lw-wt-kind-${k}`, "lw-btn lw-btn-small lw-wt-tab");
    b.setAttribute("role", "tab");
    w.listen(b, "click", () => {
      model.set("kind", k);
      model.save_changes();
    });
    tabBtns.set(k, b);
    tabs.append(b);
  }
  const baselineText = h("span", { class: "lw-wt-muted", testid: "lw-wt-baseline" });
  w.header.append(prompt.el, h("div", { class: "lw-controls" }, [tabs, baselineText]));

  // ---- body ---------------------------------------------------------------------------------
  const hover = h("div", { class: "lw-wt-hover", testid: "lw-wt-hover", text: "Click a cell: an earlier head (row) into a later head (column)." });
  const comp = new Heatmap({
    testid: "lw-wt-comp",
    ariaLabel: "Composition scores",
    onHover: (cell) => {
      const pair = cell ? pairOfCell(cell.row, cell.col, nL(), nH()) : null;
      hover.textContent = pair && cell ? `${headLabel(cell.row, nH())} → ${headLabel(cell.col, nH())}: ${fmt3(comp.value(cell.row, cell.col))}` : "";
    },
    onClick: (cell) => {
      const pair = pairOfCell(cell.row, cell.col, nL(), nH());
      if (!pair) return;
      void w.request("pair", { src_layer: pair.src[0], src_head: pair.src[1], dst_layer: pair.dst[0], dst_head: pair.dst[1] });
    },
  });
  const legendBar = h("div", { class: "lw-wt-legend-bar" });
  const legendMark = h("div", { class: "lw-wt-legend-baseline", testid: "lw-wt-legend-baseline" });
  const legendBand = h("div", { class: "lw-wt-legend-band" });
  const legendLo = h("span", { text: "0" });
  const legendHi = h("span");
  const legend = h("div", { class: "lw-wt-legend", testid: "lw-wt-legend" }, [
    h("div", { class: "lw-wt-legend-track" }, [legendBar, legendBand, legendMark]),
    h("div", { class: "lw-wt-legend-labels" }, [legendLo, h("span", { class: "lw-wt-muted", text: "▲ random baseline (mean ± 2 std)" }), legendHi]),
  ]);
  const copyHover = h("div", { class: "lw-wt-hover", testid: "lw-wt-copy-hover", text: "Copying score of each head (layer row, head column): click one." });
  const copying = new Heatmap({
    testid: "lw-wt-copying",
    ariaLabel: "Copying scores",
    gap: 2,
    onHover: (cell) => {
      copyHover.textContent = cell ? `L${cell.row}H${cell.col}: copying ${fmt3(copying.value(cell.row, cell.col))}` : "";
    },
    onClick: (cell) => void w.request("head", { layer: cell.row, head: cell.col }),
  });
  const pairPanel = new PairPanel();
  const headPanel = new HeadPanel();
  const left = h("div", { class: "lw-wt-col" }, [h("div", { class: "lw-wt-title", text: "Composition scores" }), comp.canvas, hover, legend]);
  const mid = h("div", { class: "lw-wt-col" }, [h("div", { class: "lw-wt-title", text: "Copying scores (OV eigenvalues)" }), copying.canvas, copyHover]);
  w.body.append(h("div", { class: "lw-wt-main" }, [left, mid]), pairPanel.el, headPanel.el);

  // ---- drawing ------------------------------------------------------------------------------
  let domain: [number, number] = [0, 1];

  function drawComp(): void {
    const L = nL();
    const H = nH();
    const kind = normalizeKind(model.get("kind"));
    for (const [k, b] of tabBtns) b.setAttribute("aria-pressed", String(k === kind));
    const base = model.get("baseline") ?? {};
    baselineText.textContent = Number.isFinite(base.mean) ? `random baseline ${fmt3(base.mean)} ± ${fmt3(base.std)}` : "";
    if (!hasTensor(model.get("comp"), model.get("comp_meta")) || L * H === 0) return;
    const values = w.decode("composition scores", () => decodeComposition(model.get("comp"), model.get("comp_meta"), L, H));
    if (!values) return;
    const p = w.palette();
    domain = compDomain(base.max?.[kind], base.mean, base.std);
    const scale = sequential(p.theme, domain, "blues");
    const n = L * H;
    const cell = Math.max(1, Math.min(24, Math.floor(540 / n)));
    comp.setCellSize(cell).setData(values, n, n).setScale(scale).setColors({ bg: p.bg, accent: p.accent, fg: p.fg });
    const sel = cellOfPair(model.get("selected_pair"), L, H);
    comp.setHighlight({ cell: sel });
    comp.draw();
    legendBar.style.background = gradientCss(scale);
    const mean = Number(base.mean);
    const std = Number(base.std);
    legendMark.style.left = `${(100 * legendFraction(mean, domain)).toFixed(2)}%`;
    legendMark.dataset.value = String(mean);
    const lo = legendFraction(mean - 2 * std, domain);
    legendBand.style.left = `${(100 * lo).toFixed(2)}%`;
    legendBand.style.width = `${(100 * (legendFraction(mean + 2 * std, domain) - lo)).toFixed(2)}%`;
    legendHi.textContent = domain[1].toFixed(3);
  }

  function drawCopying(): void {
    const L = nL();
    const H = nH();
    if (!hasTensor(model.get("copying"), model.get("copying_meta")) || L * H === 0) return;
    const t = w.decode("copying scores", () => decodeTensor(model.get("copying"), model.get("copying_meta")));
    if (!t) return;
    const p = w.palette();
    const cell = Math.max(6, Math.min(28, Math.floor(320 / H)));
    copying.setCellSize(cell, Math.max(6, Math.min(28, Math.floor(480 / L))), 2).setData(t.data, L, H);
    copying.setScale(diverging(p.theme, 1)).setColors({ bg: p.bg, accent: p.accent, fg: p.fg });
    const s = model.get("selected_head");
    copying.setHighlight({ cell: Array.isArray(s) && s.length === 2 ? { row: s[0], col: s[1] } : null });
    copying.draw();
  }

  const drawPair = () => w.decode("pair result", () => pairPanel.render(model.get("pair_result"), w.palette()));
  const drawHead = () => w.decode("head result", () => headPanel.render(model.get("head_result"), w.palette()));

  w.onChange(["comp", "comp_meta", "kind", "baseline", "n_layers", "n_heads", "selected_pair"], drawComp);
  w.onChange(["copying", "copying_meta", "selected_head"], drawCopying);
  w.onChange(["pair_result"], drawPair);
  w.onChange(["head_result"], drawHead);
  w.onChange(["prompt"], () => prompt.sync());
  w.onTheme(() => {
    drawComp();
    drawCopying();
    drawPair();
    drawHead();
  });

  w.setExports(() => {
    const kind = normalizeKind(model.get("kind")).toUpperCase();
    const labels = Array.from({ length: nL() * nH() }, (_, i) => headLabel(i, nH()));
    return [
      { id: "png", label: "Composition (PNG)", filename: `composition-${kind}.png`, make: () => comp.toPNG() },
      {
        id: "svg",
        label: "Composition (SVG)",
        filename: `composition-${kind}.svg`,
        make: () => svgBlob(comp.toSVG({ rowLabels: labels, colLabels: labels, title: `${kind}-composition scores`, legend: "composition score" })),
      },
      { id: "copying-png", label: "Copying scores (PNG)", filename: "copying.png", make: () => copying.toPNG() },
      {
        id: "copying-svg",
        label: "Copying scores (SVG)",
        filename: "copying.svg",
        make: () => svgBlob(copying.toSVG({ title: "Copying scores", legend: "Σλ/Σ|λ|", annotate: true })),
      },
    ];
  });

  drawComp();
  drawCopying();
  drawPair();
  drawHead();
  return () => {
    pairPanel.destroyMaps();
    headPanel.qk?.destroy();
    comp.destroy();
    copying.destroy();
    w.dispose();
  };
}

export default { render };
