// CircuitGraph view (widgets/circuit.py; contract in docs/protocol.md).
//
// Header: clean and corrupted prompts, answer and wrong + Apply (set_inputs); the method (EAP /
// EAP-IG), steps and Rescore (score: background, with the shared progress bar + Cancel); the
// circuit size as a number of edges or a percentage (set_size).
// Body: the summary line (size, edges drawn and pruned, exact faithfulness); the layered graph
// (circuit/graph.ts) beside the exact faithfulness curve (circuit/curve.ts) and the detail panel
// of the clicked edge (patch_edge) or node (node, remove_node, restore).
// A size change redraws at once from the top edges this view holds (pruned here exactly as Python
// prunes) and marks the faithfulness as pending until Python's exact value arrives.
// "weights overlay" (weights_overlay {on}) shades head -> head edges by their composition score from
// the weights (circuit/overlay.ts) beside the data score; the legend under the graph says which is which.
// The graph's data-draw-ms is the last redraw's time (prune + SVG build), data-redraws the count.

import type { Circuit, TopEdges } from "./circuit/data";
import { decodeNodeScores, decodeTopEdges, prune, sizeError, sizeFromInput } from "./circuit/data";
import { drawCurve, parseCurve } from "./circuit/curve";
import { circuitSVG } from "./circuit/export";
import { SVG_NS, drawGraph } from "./circuit/graph";
import type { Overlay } from "./circuit/overlay";
import { decodeOverlay, overlayLegend } from "./circuit/overlay";
import { DetailPanel } from "./circuit/panel";
import { button, h } from "./lib/dom";
import { fmt3 } from "./lib/format";
import { onSubmitKey, syncInput } from "./lib/inputs";
import { isObject, numberOr, strings } from "./lib/json";
import { svgToPNG } from "./lib/raster";
import { now } from "./lib/canvas";
import { createRedraw, onWidthChange } from "./lib/redraw";
import type { RenderProps } from "./lib/types";
import { createWidget, svgBlob } from "./lib/widget";

export const METHODS: Array<[string, string]> = [
  ["eap-ig", "EAP-IG (integrated gradients)"],
  ["eap", "EAP (one gradient)"],
  ["exact", "exact (every edge patched)"],
];

type Part = "inputs" | "edges" | "overlay" | "graph" | "curve" | "panel" | "summary" | "theme";
const ALL_PARTS: Part[] = ["inputs", "edges", "overlay", "graph", "curve", "panel", "summary", "theme"];

// Not a named export: anywidget warns ("Direct export of a 'render'") when a module has one.
function render({ model, el }: RenderProps): () => void {
  const w = createWidget(model, el, { name: "circuit" });
  const doc = w.root.ownerDocument;

  // ---- header ---------------------------------------------------------------------------------
  const area = (testid: string, label: string) =>
    h("textarea", { class: "lw-prompt", testid, attrs: { rows: "2", spellcheck: "false", "aria-label": label, placeholder: `${label} (Ctrl+Enter applies)` } });
  const field = (testid: string, label: string, placeholder: string, type = "text") =>
    h("input", { class: "lw-input", testid, attrs: { type, spellcheck: "false", "aria-label": label, placeholder } });
  const cleanIn = area("lw-clean", "Clean prompt");
  const corrIn = area("lw-corrupted", "Corrupted prompt");
  const answerIn = field("lw-answer", "Answer", "answer, e.g. ␣Paris");
  const wrongIn = field("lw-wrong", "Wrong answer", "wrong, e.g. ␣Rome");
  const applyBtn = button("Apply", "lw-apply", "lw-btn lw-btn-primary");
  applyBtn.title = "Tokenize both prompts, score every edge and compute the exact faithfulness curve";
  const method = h("select", { class: "lw-select", testid: "lw-ci-method", attrs: { "aria-label": "Scoring method" } });
  for (const [v, label] of METHODS) method.appendChild(h("option", { text: label, attrs: { value: v } }));
  const steps = field("lw-ci-steps", "EAP-IG steps", "steps", "number");
  steps.min = "1";
  steps.classList.add("lw-ci-narrow");
  const rescoreBtn = button("Rescore", "lw-ci-rescore", "lw-btn");
  rescoreBtn.title = "Score every edge with this method (background; Cancel keeps the old scores)";
  const sizeIn = field("lw-ci-size", "Circuit size", "edges", "number");
  sizeIn.min = "0";
  sizeIn.classList.add("lw-ci-narrow");
  const unit = h("select", { class: "lw-select", testid: "lw-ci-size-unit", attrs: { "aria-label": "Size unit" } });
  for (const u of ["edges", "%"]) unit.appendChild(h("option", { text: u, attrs: { value: u } }));
  const overlayBox = h("input", { testid: "lw-ci-overlay", attrs: { type: "checkbox", "aria-label": "Weights overlay" } });
  const overlayLabel = h("label", { class: "lw-field lw-ci-toggle" }, [overlayBox, h("span", { text: "weights overlay" })]);
  overlayLabel.title = "Shade head → head q/k/v edges by their composition score from the weights (computed once per model)";
  w.header.append(
    h("div", { class: "lw-pt-inputs" }, [
      h("label", { class: "lw-pt-input" }, [h("span", { class: "lw-pt-input-label", text: "clean" }), cleanIn]),
      h("label", { class: "lw-pt-input" }, [h("span", { class: "lw-pt-input-label", text: "corrupted" }), corrIn]),
    ]),
    h("div", { class: "lw-controls" }, [
      h("label", { class: "lw-field" }, [h("span", { text: "answer" }), answerIn]),
      h("label", { class: "lw-field" }, [h("span", { text: "wrong" }), wrongIn]),
      applyBtn,
    ]),
    h("div", { class: "lw-controls" }, [
      h("label", { class: "lw-field" }, [h("span", { text: "method" }), method]),
      h("label", { class: "lw-field" }, [h("span", { text: "steps" }), steps]),
      rescoreBtn,
      h("label", { class: "lw-field" }, [h("span", { text: "circuit size" }), sizeIn, unit]),
      overlayLabel,
    ]),
  );

  // ---- body -----------------------------------------------------------------------------------
  const summary = h("div", { class: "lw-ci-summary", testid: "lw-ci-summary" });
  const faith = h("span", { class: "lw-num", testid: "lw-ci-faithfulness" });
  const summaryText = h("span", { testid: "lw-ci-summary-text" });
  summary.append(summaryText, h("span", { class: "lw-ci-name", text: " faithfulness " }), faith);
  const graphSvg = doc.createElementNS(SVG_NS, "svg") as SVGSVGElement;
  graphSvg.dataset.testid = "lw-ci-graph";
  graphSvg.setAttribute("role", "img");
  const graphBox = h("div", { class: "lw-ci-graph", testid: "lw-ci-graph-box" }, [graphSvg as unknown as HTMLElement]);
  const curveSvg = doc.createElementNS(SVG_NS, "svg") as SVGSVGElement;
  curveSvg.dataset.testid = "lw-ci-curve";
  const panel = new DetailPanel({
    remove: (label) => void w.request("remove_node", { label }),
    restore: () => void w.request("restore", {}),
  });
  const side = h("div", { class: "lw-ci-side" }, [curveSvg as unknown as HTMLElement, panel.el]);
  const legend = h("div", { class: "lw-ci-legend", testid: "lw-ci-legend" });
  const left = h("div", { class: "lw-ci-left" }, [graphBox, legend]);
  w.body.append(summary, h("div", { class: "lw-ci-main" }, [left, side]));

  // ---- state ----------------------------------------------------------------------------------
  let top: TopEdges = { edges: [], nEdges: 0, maxAbs: 0, method: "" };
  let nodeScores = new Map<string, number>();
  let overlay: Overlay | null = null;
  let circuit: Circuit = { edges: [], nodes: [], pruned: 0 };
  /** A size typed here, drawn before Python's `current` has caught up. */
  let localSize: number | null = null;
  let localSel: Record<string, string> | null = null;
  let redraws = 0;
  const nHeads = () => numberOr(model.get("n_heads"), 0);
  const nKv = () => numberOr(model.get("n_kv_heads"), 0) || nHeads();
  const current = () => (isObject(model.get("current")) ? (model.get("current") as Record<string, any>) : {});
  const size = () => localSize ?? numberOr(model.get("size"), 0);
  const removed = () => strings(model.get("removed"));
  const selected = () => localSel ?? (isObject(model.get("selected")) ? model.get("selected") : {});

  // ---- actions --------------------------------------------------------------------------------
  async function apply(): Promise<void> {
    localSize = null;
    await w.request("set_inputs", { clean: cleanIn.value, corrupted: corrIn.value, answer: answerIn.value, wrong: wrongIn.value });
  }

  function setSize(): void {
    const nEdges = numberOr(model.get("n_edges"), 0);
    const n = sizeFromInput(Number(sizeIn.value), unit.value === "%" ? "%" : "edges", nEdges);
    const err = sizeError(n, nEdges);
    if (err) {
      w.showError({ kind: "input", message: err, details: { size: sizeIn.value, unit: unit.value, n_edges: nEdges } });
      return;
    }
    if (n === size()) return; // e.g. the change a blur fires after Enter: redrawing would eat the next click
    localSize = n;
    invalidate("graph", "summary", "curve");
    void w.request("set_size", { size: n }).then((r) => {
      if (!r && localSize === n) {
        localSize = null; // refused: back to what Python shows
        invalidate("graph", "summary", "curve", "inputs");
      }
    });
  }

  function rescore(): void {
    const s = Number(steps.value);
    void w.request("score", { method: method.value, steps: Number.isInteger(s) ? s : Math.round(s) || 0 });
  }

  function click(ev: Event): void {
    const t = ev.target as Element | null;
    const edge = t?.closest?.("[data-edge]")?.getAttribute("data-edge");
    const node = t?.closest?.("[data-node]")?.getAttribute("data-node");
    if (node) {
      localSel = { node };
      void w.request("node", { label: node });
    } else if (edge) {
      localSel = { edge };
      void w.request("patch_edge", { edge });
    } else return;
    invalidate("graph", "panel");
  }

  w.listen(applyBtn, "click", () => void apply());
  for (const t of [cleanIn, corrIn, answerIn, wrongIn]) onSubmitKey(w, t, () => void apply());
  w.listen(rescoreBtn, "click", rescore);
  w.listen(sizeIn, "change", setSize);
  w.listen(unit, "change", () => {
    const nEdges = numberOr(model.get("n_edges"), 0);
    const s = size();
    sizeIn.value = unit.value === "%" ? String(Math.round((1e4 * s) / Math.max(1, nEdges)) / 100) : String(s);
  });
  w.listen(graphBox, "click", click);
  w.listen(overlayBox, "change", () => {
    const on = overlayBox.checked;
    void w.request("weights_overlay", { on }).then((r) => {
      if (!r) overlayBox.checked = overlay !== null; // refused: back to what Python shows
    });
  });
  w.onPending((open) => {
    const busy = open.length > 0;
    applyBtn.disabled = rescoreBtn.disabled = busy && open.some((o) => o.kind === "score" || o.kind === "set_inputs");
  });

  // ---- drawing --------------------------------------------------------------------------------
  const redraw = createRedraw<Part>(draw, { timing: "frame", win: doc.defaultView });
  const invalidate = redraw.invalidate;
  const width = () => graphBox.clientWidth || w.root.clientWidth || el.clientWidth || 640;

  function renderInputs(): void {
    syncInput(cleanIn, String(model.get("clean_prompt") ?? ""));
    syncInput(corrIn, String(model.get("corrupted_prompt") ?? ""));
    syncInput(answerIn, String(model.get("answer") ?? ""));
    syncInput(wrongIn, String(model.get("wrong") ?? ""));
    const m = String(model.get("method") ?? "eap-ig");
    if ([...method.options].some((o) => o.value === m)) method.value = m;
    syncInput(steps, String(model.get("steps") ?? 5));
    const s = size();
    const nEdges = numberOr(model.get("n_edges"), 0);
    syncInput(sizeIn, unit.value === "%" ? String(Math.round((1e4 * s) / Math.max(1, nEdges)) / 100) : String(s));
    sizeIn.max = unit.value === "%" ? "100" : String(nEdges);
  }

  function renderGraph(): void {
    const t0 = now();
    const n = Math.min(size(), top.edges.length);
    circuit = prune(top.edges.slice(0, n));
    const sel = selected() as Record<string, unknown>;
    drawGraph(graphSvg, {
      nLayers: numberOr(model.get("n_layers"), 0),
      nHeads: nHeads(),
      nKv: nKv(),
      hasMlp: !!model.get("has_mlp"),
      width: Math.max(320, width()),
      edges: circuit.edges,
      nodes: circuit.nodes,
      nodeScores,
      removed: new Set(removed()),
      selectedEdge: typeof sel.edge === "string" ? sel.edge : null,
      selectedNode: typeof sel.node === "string" ? sel.node : null,
      palette: w.palette(),
      overlay,
    });
    redraws++;
    const d = graphSvg.dataset;
    d.size = String(size());
    d.edges = String(circuit.edges.length);
    d.nodes = String(circuit.nodes.length);
    d.redraws = String(redraws);
    d.drawMs = (now() - t0).toFixed(2);
    d.overlay = String(overlay !== null);
  }

  function renderLegend(): void {
    const data = `edges: width ∝ |${top.method || "data"} score| from the prompt pair, blue = carries the clean behaviour, red = against it; q/k/v = the input it feeds`;
    legend.replaceChildren(h("div", { testid: "lw-ci-legend-data", text: data }));
    if (overlay) {
      const swatch = h("span", { class: "lw-ci-halo-swatch" });
      legend.append(h("div", { testid: "lw-ci-legend-overlay" }, [swatch, h("span", { text: overlayLegend(overlay, top.method) })]));
    }
    overlayBox.checked = overlay !== null;
  }

  function pendingFaith(): boolean {
    const c = current();
    return localSize !== null && c.size !== localSize;
  }

  function renderSummary(): void {
    const c = current();
    const s = size();
    const nEdges = numberOr(model.get("n_edges"), 0);
    const pct = nEdges ? ((100 * s) / nEdges).toFixed(s / Math.max(1, nEdges) < 0.01 ? 2 : 1) : "0";
    let text = `top ${s} of ${nEdges} edges (${pct}%) by |${top.method || "score"}|: ${circuit.edges.length} drawn, ${circuit.pruned} pruned (not on a path from embed to logits)`;
    if (s > top.edges.length) text += `; drawing the top ${top.edges.length}`;
    const rm = removed();
    const pending = pendingFaith();
    if (rm.length && !pending) text += `; without ${rm.join(", ")} (${c.removed_edges} edges): metric ${fmt3(c.metric)} (full circuit ${fmt3(c.metric_full)}).`;
    else text += ".";
    summaryText.textContent = text;
    faith.textContent = pending ? "computing…" : fmt3(c.faithfulness);
    faith.dataset.value = pending ? "" : String(c.faithfulness);
    faith.dataset.size = pending ? "" : String(c.size);
    faith.dataset.pending = String(pending);
    faith.title = pending ? "" : `metric ${c.metric} (corrupted ${c.corrupted_value}, clean ${c.clean_value})`;
  }

  function renderCurve(): void {
    const c = current();
    const pending = pendingFaith();
    drawCurve(curveSvg, parseCurve(model.get("curve")), {
      size: size(),
      nEdges: numberOr(model.get("n_edges"), 0),
      faithfulness: pending || removed().length ? NaN : numberOr(c.faithfulness),
    }, w.palette());
  }

  function draw(d: Set<Part>): void {
    if (d.has("edges")) {
      const decoded = w.decode("edge scores", () => decodeTopEdges(model.get("edges"), nHeads(), nKv()));
      top = decoded ?? { edges: [], nEdges: 0, maxAbs: 0, method: "" };
      nodeScores = w.decode("node scores", () => decodeNodeScores(model.get("node_scores"))) ?? new Map();
    }
    if (d.has("overlay")) overlay = w.decode("weights overlay", () => decodeOverlay(model.get("overlay"))) ?? null;
    if (d.has("overlay") || d.has("edges")) renderLegend();
    if (d.has("inputs")) renderInputs();
    if (d.has("edges") || d.has("overlay") || d.has("graph") || d.has("theme")) renderGraph();
    if (d.has("edges") || d.has("graph") || d.has("summary")) renderSummary();
    if (d.has("curve") || d.has("theme") || d.has("summary")) renderCurve();
    if (d.has("panel") || d.has("graph")) {
      const nodes = new Set(circuit.nodes);
      panel.render(selected(), model.get("edge_result"), model.get("node_result"), removed(), (n) => nodes.has(n), overlay !== null);
    }
  }

  // ---- traits ---------------------------------------------------------------------------------
  w.onChange(["clean_prompt", "corrupted_prompt", "answer", "wrong", "method", "steps", "n_edges"], () => invalidate("inputs"));
  w.onChange(["edges", "node_scores", "n_heads", "n_kv_heads", "n_layers", "has_mlp"], () => invalidate("edges", "summary"));
  w.onChange(["size", "current", "removed"], () => {
    const c = current();
    if (localSize !== null && c.size === localSize) localSize = null;
    invalidate("graph", "summary", "curve", "inputs", "panel");
  });
  w.onChange(["curve"], () => invalidate("curve"));
  w.onChange(["overlay"], () => invalidate("overlay", "panel"));
  w.onChange(["selected", "edge_result", "node_result"], () => {
    localSel = null;
    invalidate("graph", "panel");
  });
  w.onTheme(() => invalidate("theme"));

  // ---- export ---------------------------------------------------------------------------------
  const exportSvg = () => {
    const c = current();
    return circuitSVG(graphSvg, curveSvg, [
      `Circuit: top ${size()} of ${numberOr(model.get("n_edges"), 0)} edges (${top.method}) — faithfulness ${fmt3(c.faithfulness)}`,
      `clean: ${JSON.stringify(String(model.get("clean_prompt") ?? ""))}; corrupted: ${JSON.stringify(String(model.get("corrupted_prompt") ?? ""))}`,
      `metric: logit(${JSON.stringify(String(model.get("answer") ?? ""))}) − logit(${JSON.stringify(String(model.get("wrong") ?? ""))}); edges blue +, red −; width ∝ |score|`,
      ...(overlay ? [overlayLegend(overlay, top.method)] : []),
    ], w.palette());
  };
  w.setExports(() =>
    top.edges.length
      ? [
          { id: "png", label: "Circuit (PNG)", filename: "circuit.png", make: () => svgToPNG(exportSvg(), 2, 10_000, doc) },
          { id: "svg", label: "Circuit (SVG)", filename: "circuit.svg", make: () => svgBlob(exportSvg()) },
        ]
      : [],
  );

  onWidthChange(w, graphBox, width, () => invalidate("graph"));
  redraw.flush(...ALL_PARTS);

  return () => {
    redraw.dispose();
    w.dispose();
  };
}

export default { render };
