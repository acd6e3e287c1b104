// The exact faithfulness curve beside the graph (SVG): normalized faithfulness
// f = (m(C) − m(∅)) / (m(all) − m(∅)) of the top-scoring edges at the MIB edge fractions (log x
// axis, % of edges) and of random edge sets of the same sizes (dashed), with the current circuit
// marked (a vertical line at its size, a dot at its exact faithfulness once Python has it).

import { isObject } from "../lib/json";
import type { Palette } from "../lib/theme";
import { SVG_NS } from "./graph";

export interface Curve {
  fractions: number[];
  sizes: number[];
  faithfulness: number[];
  random: number[];
  auc: number;
  aucRandom: number;
}

export interface CurrentPoint {
  size: number;
  nEdges: number;
  /** NaN while Python computes it. */
  faithfulness: number;
}

const nums = (x: unknown): number[] => (Array.isArray(x) ? x.map((v) => (typeof v === "number" ? v : NaN)) : []);

/** The `curve` trait, or null when there is none. */
export function parseCurve(x: unknown): Curve | null {
  if (!isObject(x) || !Array.isArray(x.sizes)) return null;
  return {
    fractions: nums(x.fractions),
    sizes: nums(x.sizes),
    faithfulness: nums(x.faithfulness),
    random: nums(x.random),
    auc: typeof x.auc === "number" ? x.auc : NaN,
    aucRandom: typeof x.auc_random === "number" ? x.auc_random : NaN,
  };
}

export const CURVE_W = 300;
export const CURVE_H = 190;
const M = { l: 38, r: 10, t: 22, b: 34 };

/** Draw the curve into `svg` (replacing what was there). */
export function drawCurve(svg: SVGSVGElement, curve: Curve | null, cur: CurrentPoint | null, p: Palette): void {
  const doc = svg.ownerDocument;
  const mk = (tag: string, attrs: Record<string, string | number>, text?: string) => {
    const e = doc.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  svg.setAttribute("width", String(CURVE_W));
  svg.setAttribute("height", String(CURVE_H));
  svg.setAttribute("viewBox", `0 0 ${CURVE_W} ${CURVE_H}`);
  const frag = doc.createDocumentFragment();
  const text = (x: number, y: number, s: string, attrs: Record<string, string | number> = {}) =>
    mk("text", { x, y, "font-size": 10, fill: p.muted, "font-family": p.font, ...attrs }, s);
  frag.appendChild(text(M.l, 12, "exact faithfulness vs % of edges", { fill: p.fg, "font-size": 11 }));
  if (!curve || !curve.sizes.length) {
    svg.replaceChildren(frag);
    return;
  }
  const n = cur?.nEdges || curve.sizes[curve.sizes.length - 1] || 1;
  const pct = (size: number) => (100 * size) / n;
  const xs = curve.sizes.map(pct);
  const lo = Math.log10(Math.max(1e-3, Math.min(...xs, 0.1)));
  const hi = Math.log10(100);
  const vals = [...curve.faithfulness, ...curve.random, cur?.faithfulness ?? 0].filter(Number.isFinite);
  const y0 = Math.min(0, ...vals);
  const y1 = Math.max(1, ...vals);
  const W = CURVE_W - M.l - M.r;
  const H = CURVE_H - M.t - M.b;
  const X = (pc: number) => M.l + (W * (Math.log10(Math.max(pc, 10 ** lo)) - lo)) / (hi - lo);
  const Y = (f: number) => M.t + H * (1 - (f - y0) / (y1 - y0 || 1));
  // axes and grid
  frag.appendChild(mk("rect", { x: M.l, y: M.t, width: W, height: H, fill: "none", stroke: p.border }));
  for (const f of [0, 1]) {
    frag.appendChild(mk("line", { x1: M.l, x2: M.l + W, y1: Y(f), y2: Y(f), stroke: p.border, "stroke-dasharray": "3 3" }));
    frag.appendChild(text(M.l - 4, Y(f) + 3, String(f), { "text-anchor": "end" }));
  }
  for (const pc of [0.1, 1, 10, 100]) {
    if (Math.log10(pc) < lo - 1e-9) continue;
    frag.appendChild(text(X(pc), M.t + H + 12, `${pc}%`, { "text-anchor": "middle" }));
  }
  frag.appendChild(text(M.l + W / 2, CURVE_H - 6, `circuit size (% of ${n} edges)`, { "text-anchor": "middle" }));
  const line = (ys: number[], attrs: Record<string, string | number>, testid: string) => {
    const pts = xs.map((x, i) => [X(x), Y(ys[i])]).filter(([, y]) => Number.isFinite(y));
    frag.appendChild(mk("polyline", { points: pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "), fill: "none", "data-testid": testid, ...attrs }));
    return pts;
  };
  line(curve.random, { stroke: p.muted, "stroke-width": 1.5, "stroke-dasharray": "4 3" }, "lw-ci-curve-random");
  const pts = line(curve.faithfulness, { stroke: p.fg, "stroke-width": 1.8 }, "lw-ci-curve-top");
  pts.forEach(([x, y], i) => frag.appendChild(mk("circle", { cx: x, cy: y, r: 2.5, fill: p.fg, "data-size": curve.sizes[i], "data-value": curve.faithfulness[i] })));
  // legend
  frag.appendChild(mk("line", { x1: M.l + 6, x2: M.l + 22, y1: M.t + 10, y2: M.t + 10, stroke: p.fg, "stroke-width": 1.8 }));
  frag.appendChild(text(M.l + 26, M.t + 13, `top edges (AUC ${curve.auc.toFixed(2)})`, { fill: p.fg }));
  frag.appendChild(mk("line", { x1: M.l + 6, x2: M.l + 22, y1: M.t + 24, y2: M.t + 24, stroke: p.muted, "stroke-dasharray": "4 3", "stroke-width": 1.5 }));
  frag.appendChild(text(M.l + 26, M.t + 27, `random (AUC ${curve.aucRandom.toFixed(2)})`));
  // current size
  if (cur && cur.size > 0) {
    const x = X(pct(cur.size));
    frag.appendChild(mk("line", { x1: x, x2: x, y1: M.t, y2: M.t + H, stroke: p.accent, "stroke-width": 1.5, "data-testid": "lw-ci-curve-size", "data-size": cur.size }));
    if (Number.isFinite(cur.faithfulness)) {
      frag.appendChild(mk("circle", { cx: x, cy: Y(cur.faithfulness), r: 4.5, fill: p.accent, stroke: p.bg, "data-testid": "lw-ci-curve-current", "data-value": cur.faithfulness, "data-size": cur.size }));
    }
  }
  svg.replaceChildren(frag);
}
