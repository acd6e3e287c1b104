// The layered circuit drawing (SVG): logits at the top, embed at the bottom, one band per layer
// with its heads in a row and its MLP to the right, a little above them (heads feed the MLP of their
// own layer). Only the nodes of the circuit are drawn; a layer with none collapses to a thin band.
// Edges are cubic curves from the upstream node's top to the downstream input: a head's q, k or v
// port (left, middle, right under the node, lettered), a key/value group's bracket, the MLP's
// bottom, or the logits bar. Width grows with |score|, colour is the sign (blue +, red −), nodes are
// shaded by their score. Every edge is a <g data-edge> and every node a <g data-node>, with
// data-score, for clicks and for browser tests; the strongest edges are drawn last (on top). With
// the weights overlay on, a head -> head edge also carries data-composition(-z, -kind) and a halo.

import type { ColorScale } from "../lib/colors";
import { diverging } from "../lib/colors";
import type { Palette } from "../lib/theme";
import type { Edge } from "./data";
import { parseNode } from "./data";
import type { Overlay } from "./overlay";
import { haloColor, haloStyle } from "./overlay";

export const SVG_NS = "http://www.w3.org/2000/svg";

export interface GraphSpec {
  nLayers: number;
  nHeads: number;
  nKv: number;
  hasMlp: boolean;
  width: number;
  edges: readonly Edge[];
  nodes: readonly string[];
  nodeScores: Map<string, number>;
  removed: ReadonlySet<string>;
  selectedEdge: string | null;
  selectedNode: string | null;
  palette: Palette;
  /** The weights overlay (circuit/overlay.ts): a halo on head -> head edges; null when off. */
  overlay?: Overlay | null;
}

export interface Point {
  x: number;
  y: number;
}

export interface Layout {
  width: number;
  height: number;
  r: number;
  pos: Map<string, Point>;
  bars: { embed: { x: number; y: number; w: number; h: number }; logits: { x: number; y: number; w: number; h: number } };
  rows: Array<{ layer: number; y: number; h: number; active: boolean }>;
}

const ACTIVE_H = 52;
const IDLE_H = 8;
const BAR_H = 22;

/** Positions of every node (drawn or not) for the layers that hold circuit nodes. */
export function layout(spec: Pick<GraphSpec, "nLayers" | "nHeads" | "hasMlp" | "width" | "nodes">): Layout {
  const width = Math.max(320, spec.width);
  const x0 = 44;
  const colW = (width - x0 - 10) / (spec.nHeads + (spec.hasMlp ? 1.4 : 0));
  const r = Math.max(4, Math.min(10, colW * 0.32));
  const active = new Set<number>();
  for (const n of spec.nodes) {
    const p = parseNode(n);
    if (p && (p.kind === "head" || p.kind === "mlp")) active.add(p.layer);
  }
  const pos = new Map<string, Point>();
  const rows: Layout["rows"] = [];
  const barW = Math.min(width - x0 - 10, Math.max(160, 0.7 * (width - x0)));
  const barX = x0 + (width - x0 - 10 - barW) / 2;
  const logits = { x: barX, y: 6, w: barW, h: BAR_H };
  let y = logits.y + BAR_H + 14;
  for (let l = spec.nLayers - 1; l >= 0; l--) {
    const on = active.has(l);
    const h = on ? ACTIVE_H : IDLE_H;
    rows.push({ layer: l, y, h, active: on });
    for (let hd = 0; hd < spec.nHeads; hd++) pos.set(`L${l}H${hd}`, { x: x0 + (hd + 0.5) * colW, y: y + 30 });
    if (spec.hasMlp) pos.set(`mlp${l}`, { x: x0 + (spec.nHeads + 0.9) * colW, y: y + 12 });
    y += h;
  }
  const embed = { x: barX, y: y + 12, w: barW, h: BAR_H };
  pos.set("logits", { x: logits.x + logits.w / 2, y: logits.y + logits.h / 2 });
  pos.set("embed", { x: embed.x + embed.w / 2, y: embed.y + embed.h / 2 });
  return { width, height: embed.y + BAR_H + 8, r, pos, bars: { embed, logits }, rows };
}

const PORT_OFFSET: Record<string, number> = { q: -1, k: 0, v: 1, "": 0 };

function clamp(v: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, v));
}

/** Where edge `e` starts and ends in `lay`. */
export function endpoints(e: Edge, lay: Layout): [Point, Point] {
  const target = lay.pos.get(e.targets[0])!;
  const upP = lay.pos.get(e.up)!;
  let end: Point;
  if (e.down === "logits") {
    const b = lay.bars.logits;
    end = { x: clamp(upP.x, b.x + 6, b.x + b.w - 6), y: b.y + b.h };
  } else if (e.targets.length > 1 || e.down.includes("KV")) {
    const xs = e.targets.map((t) => lay.pos.get(t)!.x);
    const cx = (Math.min(...xs) + Math.max(...xs)) / 2;
    end = { x: cx + PORT_OFFSET[e.port] * 6, y: target.y + lay.r + 5 };
  } else if (e.port) {
    end = { x: target.x + PORT_OFFSET[e.port] * lay.r * 0.8, y: target.y + lay.r };
  } else {
    end = { x: target.x, y: target.y + lay.r };
  }
  let start: Point;
  if (e.up === "embed") {
    const b = lay.bars.embed;
    start = { x: clamp(end.x, b.x + 6, b.x + b.w - 6), y: b.y };
  } else {
    start = { x: upP.x, y: upP.y - lay.r };
  }
  return [start, end];
}

/** A vertical S-curve from a to b whose bounding-box centre lies on it (the midpoint). */
export function curvePath(a: Point, b: Point): string {
  const ym = (a.y + b.y) / 2;
  const f = (v: number) => String(Math.round(v * 10) / 10);
  return `M${f(a.x)},${f(a.y)} C${f(a.x)},${f(ym)} ${f(b.x)},${f(ym)} ${f(b.x)},${f(b.y)}`;
}

function el<K extends keyof SVGElementTagNameMap>(doc: Document, tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const e = doc.createElementNS(SVG_NS, tag) as SVGElementTagNameMap[K];
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function edgeColor(score: number, p: Palette): string {
  const light = p.theme === "light";
  return score >= 0 ? (light ? "#2166ac" : "#7cc0f0") : light ? "#b2182b" : "#f4846a";
}

/** Stroke width of an edge: 1 px up to 7 px at the largest |score| drawn. */
export function edgeWidth(score: number, maxAbs: number): number {
  return 1 + 6 * (maxAbs > 0 ? Math.min(1, Math.abs(score) / maxAbs) : 0);
}

export function isRemoved(e: Edge, removed: ReadonlySet<string>): boolean {
  return removed.has(e.up) || e.targets.every((t) => removed.has(t));
}

/** Replace the contents of `svg` with the drawing of `spec`; returns the layout used. */
export function drawGraph(svg: SVGSVGElement, spec: GraphSpec): Layout {
  const doc = svg.ownerDocument;
  const p = spec.palette;
  const lay = layout(spec);
  svg.setAttribute("width", String(lay.width));
  svg.setAttribute("height", String(lay.height));
  svg.setAttribute("viewBox", `0 0 ${lay.width} ${lay.height}`);
  const frag = doc.createDocumentFragment();
  const txt = (x: number, y: number, s: string, attrs: Record<string, string | number> = {}) =>
    el(doc, "text", { x, y, "font-size": 10, fill: p.muted, "font-family": p.font, ...attrs }, s);

  // layer bands
  for (const row of lay.rows) {
    if (row.active) {
      frag.appendChild(el(doc, "line", { x1: 36, x2: lay.width - 6, y1: row.y + row.h, y2: row.y + row.h, stroke: p.border, "stroke-width": 0.5, "stroke-dasharray": "2 3" }));
      frag.appendChild(txt(4, row.y + 33, `L${row.layer}`, { "data-row": row.layer }));
    } else {
      frag.appendChild(el(doc, "line", { x1: 36, x2: 40, y1: row.y + row.h / 2, y2: row.y + row.h / 2, stroke: p.border, "stroke-width": 1 }));
    }
  }
  // bars
  for (const name of ["logits", "embed"] as const) {
    const b = lay.bars[name];
    if (!spec.nodes.includes(name) && !(name === "logits" && spec.edges.length)) continue;
    const g = el(doc, "g", { "data-node": name, "data-score": spec.nodeScores.get(name) ?? 0, class: "lw-ci-node", cursor: "pointer" });
    g.appendChild(el(doc, "rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 4, fill: p.bg, stroke: spec.selectedNode === name ? p.accent : p.fg, "stroke-width": spec.selectedNode === name ? 2.5 : 1 }));
    g.appendChild(txt(b.x + b.w / 2, b.y + 15, name, { "text-anchor": "middle", fill: p.fg, "font-size": 11 }));
    g.appendChild(el(doc, "title", {}, name));
    frag.appendChild(g);
  }

  // edges, weakest first
  const maxAbs = Math.max(0, ...spec.edges.map((e) => Math.abs(e.score)));
  const order = [...spec.edges].sort((a, b) => Math.abs(a.score) - Math.abs(b.score));
  const ports = new Map<string, Set<string>>();
  const groups = new Set<string>();
  for (const e of order) {
    const [a, b] = endpoints(e, lay);
    const d = curvePath(a, b);
    const w = edgeWidth(e.score, maxAbs);
    const gone = isRemoved(e, spec.removed);
    const comp = spec.overlay?.edges.get(e.label);
    const g = el(doc, "g", {
      "data-edge": e.label, "data-score": e.score, class: "lw-ci-edge", cursor: "pointer",
      ...(comp ? { "data-composition": comp.score, "data-composition-z": comp.z, "data-composition-kind": comp.kind } : {}),
    });
    if (spec.selectedEdge === e.label) g.appendChild(el(doc, "path", { d, fill: "none", stroke: p.accent, "stroke-width": w + 5, "stroke-opacity": 0.6, "data-selected": "true" }));
    if (comp && spec.overlay) {
      const hs = haloStyle(comp, spec.overlay);
      g.appendChild(el(doc, "path", {
        d, fill: "none", stroke: haloColor(p), "stroke-width": w + 6, "stroke-opacity": hs.opacity, "stroke-linecap": "round",
        class: "lw-ci-halo", ...(hs.dashed ? { "stroke-dasharray": "3 3", "data-dashed": "true" } : {}),
      }));
    }
    const frac = maxAbs > 0 ? Math.abs(e.score) / maxAbs : 0;
    g.appendChild(el(doc, "path", {
      d, fill: "none", stroke: gone ? p.muted : edgeColor(e.score, p), "stroke-width": w,
      "stroke-opacity": gone ? 0.3 : 0.35 + 0.6 * frac, ...(gone ? { "stroke-dasharray": "4 3" } : {}),
    }));
    g.appendChild(el(doc, "path", { d, fill: "none", stroke: "transparent", "stroke-width": Math.max(9, w + 6), class: "lw-ci-hit", "pointer-events": "stroke" }));
    const compText = comp ? `; ${comp.kind.toUpperCase()}-composition ${comp.score.toFixed(3)} (z ${comp.z.toFixed(1)})` : "";
    g.appendChild(el(doc, "title", {}, `${e.label}: ${e.score.toPrecision(4)}${compText}`));
    frag.appendChild(g);
    if (e.port && e.targets.length === 1 && !e.down.includes("KV")) {
      if (!ports.has(e.targets[0])) ports.set(e.targets[0], new Set());
      ports.get(e.targets[0])!.add(e.port);
    } else if (e.down.includes("KV")) groups.add(e.down);
  }

  // key/value group brackets
  for (const grp of groups) {
    const m = /^L(\d+)KV(\d+)$/.exec(grp)!;
    const per = Math.max(1, Math.floor(spec.nHeads / Math.max(1, spec.nKv)));
    const xs = [0, per - 1].map((k) => lay.pos.get(`L${m[1]}H${Number(m[2]) * per + k}`)!.x);
    const y = lay.pos.get(`L${m[1]}H0`)!.y + lay.r + 5;
    frag.appendChild(el(doc, "path", { d: `M${xs[0] - lay.r},${y - 3} V${y} H${xs[1] + lay.r} V${y - 3}`, fill: "none", stroke: p.muted, "stroke-width": 1, "data-kv": grp }));
    frag.appendChild(txt(xs[1] + lay.r + 2, y + 3, `KV${m[2]} k·v`, { "font-size": 8 }));
  }

  // nodes
  const nodeMax = Math.max(1e-9, ...spec.nodes.map((n) => Math.abs(spec.nodeScores.get(n) ?? 0)));
  const scale: ColorScale = diverging(p.theme, nodeMax);
  for (const n of spec.nodes) {
    const info = parseNode(n);
    if (!info || info.kind === "embed" || info.kind === "logits") continue;
    const c = lay.pos.get(n)!;
    const score = spec.nodeScores.get(n) ?? 0;
    const gone = spec.removed.has(n);
    const sel = spec.selectedNode === n;
    const g = el(doc, "g", { "data-node": n, "data-score": score, class: "lw-ci-node", cursor: "pointer", ...(gone ? { "data-removed": "true", opacity: 0.4 } : {}) });
    const stroke = { stroke: sel ? p.accent : p.fg, "stroke-width": sel ? 2.5 : 1, ...(gone ? { "stroke-dasharray": "2 2" } : {}) };
    if (info.kind === "head") g.appendChild(el(doc, "circle", { cx: c.x, cy: c.y, r: lay.r, fill: scale.css(score), ...stroke }));
    else g.appendChild(el(doc, "rect", { x: c.x - lay.r, y: c.y - lay.r * 0.8, width: 2 * lay.r, height: 1.6 * lay.r, rx: 2, fill: scale.css(score), ...stroke }));
    const rgb = scale.rgb(score);
    const ink = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 140 ? "#000000" : "#ffffff";
    if (lay.r >= 8) g.appendChild(txt(c.x, c.y + 3, info.kind === "head" ? `H${info.head}` : "MLP", { "text-anchor": "middle", "font-size": info.kind === "head" ? 8 : 7, fill: ink, "pointer-events": "none" }));
    g.appendChild(el(doc, "title", {}, `${n}: node score ${score.toPrecision(4)}`));
    frag.appendChild(g);
    for (const port of ports.get(n) ?? []) {
      frag.appendChild(txt(c.x + PORT_OFFSET[port] * lay.r * 0.8, c.y + lay.r + 8, port, { "text-anchor": "middle", "font-size": 7, "data-port": `${n}.${port}` }));
    }
  }
  svg.replaceChildren(frag);
  return lay;
}
