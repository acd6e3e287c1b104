// The weights overlay of the circuit graph (widgets/_circuit_overlay.py): head -> head q/k/v edges
// carry their composition score from the weights (Q-, K- or V-composition, "A Mathematical Framework
// for Transformer Circuits") and its z-score against the random-matrix baseline, beside the data
// score the edge is drawn with. Drawn as a second encoding: an amber halo behind the edge, its
// opacity growing with the composition score over the baseline (baseline mean -> faint, the model's
// largest score -> full), solid when the score stands out (z >= 2), dashed when it does not.
// Edges from or into embed, an MLP or logits have no composition score and no halo.

import { decodeTensor } from "../lib/buffers";
import { isObject, strings } from "../lib/json";
import type { Palette } from "../lib/theme";

export interface Composition {
  kind: "q" | "k" | "v";
  score: number;
  z: number;
}

export interface Overlay {
  edges: Map<string, Composition>;
  baselineMean: number;
  baselineStd: number;
  /** The largest composition score of any kind: the top of the shading. */
  max: number;
}

/** z at and above which a composition score "stands out" from random matrices (drawn solid). */
export const STANDS_OUT = 2;

/** The `overlay` trait ({} when off): {on, labels, kinds, scores <f32>, z <f32>, n, baseline_mean, baseline_std, max}. */
export function decodeOverlay(x: unknown): Overlay | null {
  if (!isObject(x) || x.on !== true || !Array.isArray(x.labels)) return null;
  const labels = strings(x.labels);
  const kinds = strings(x.kinds);
  const scores = decodeTensor(x.scores, { dtype: "f32", shape: [labels.length] }).data;
  const z = decodeTensor(x.z, { dtype: "f32", shape: [labels.length] }).data;
  const edges = new Map<string, Composition>();
  labels.forEach((l, i) => {
    const kind = kinds[i];
    if (kind !== "q" && kind !== "k" && kind !== "v") throw new Error(`not a composition kind: ${JSON.stringify(kind)}`);
    edges.set(l, { kind, score: scores[i], z: z[i] });
  });
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : NaN);
  return { edges, baselineMean: num(x.baseline_mean), baselineStd: num(x.baseline_std), max: num(x.max) };
}

export function haloColor(p: Palette): string {
  return p.theme === "light" ? "#d97706" : "#fbbf24";
}

/** How an edge's halo is drawn: opacity 0.15 at (or below) the baseline mean to 1 at `max`; solid when z >= 2. */
export function haloStyle(c: Composition, ov: Overlay): { opacity: number; dashed: boolean } {
  const range = ov.max - ov.baselineMean;
  const f = range > 0 && Number.isFinite(range) ? Math.max(0, Math.min(1, (c.score - ov.baselineMean) / range)) : 0;
  return { opacity: Math.round((0.15 + 0.85 * f) * 1000) / 1000, dashed: !(c.z >= STANDS_OUT) };
}

/** The legend line under the graph for the overlay. */
export function overlayLegend(ov: Overlay, method: string): string {
  const b = Number.isFinite(ov.baselineMean) ? `${ov.baselineMean.toFixed(3)} ± ${ov.baselineStd.toFixed(3)}` : "–";
  return (
    `amber halo: the edge's Q/K/V-composition score from the weights (no halo: embed, MLP and logits edges), ` +
    `stronger = higher score, solid = ≥ ${STANDS_OUT}σ above random matrices (${b}), dashed = not; ` +
    `the edge itself: its ${method || "data"} score`
  );
}
