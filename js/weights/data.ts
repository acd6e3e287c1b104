// WeightsView data (widgets/weights.py; docs/protocol.md, WeightsView): the composition matrix of
// the shown kind, pairs of heads from heatmap cells, and the baseline's place on the colour scale.
// Pure functions, tested in js/test/weights.test.ts.

import type { Bytes, TensorMeta } from "../lib/buffers";
import { decodeTensor } from "../lib/buffers";

export const KINDS = ["q", "k", "v"] as const;
export type Kind = (typeof KINDS)[number];

export function normalizeKind(x: unknown): Kind {
  return (KINDS as readonly unknown[]).includes(x) ? (x as Kind) : "k";
}

/** "L{l}H{h}" of flat head index i (layer-major). */
export function headLabel(i: number, nHeads: number): string {
  return `L${Math.floor(i / nHeads)}H${i % nHeads}`;
}

/**
 * The [N, N] composition matrix (row = source head, column = destination head) with NaN where the
 * source is not in an earlier layer (those cells are drawn as missing, not as 0). Throws when the
 * bytes do not hold N x N values, N = nLayers * nHeads.
 */
export function decodeComposition(view: Bytes, meta: TensorMeta, nLayers: number, nHeads: number): Float32Array {
  const n = nLayers * nHeads;
  const t = decodeTensor(view, meta);
  if (t.shape.length !== 2 || t.shape[0] !== n || t.shape[1] !== n) {
    throw new Error(`composition matrix is ${JSON.stringify(t.shape)}, expected [${n}, ${n}]`);
  }
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      out[i * n + j] = Math.floor(i / nHeads) < Math.floor(j / nHeads) ? t.data[i * n + j] : NaN;
    }
  }
  return out;
}

export interface Pair {
  src: [number, number];
  dst: [number, number];
}

/** The (source, destination) heads of heatmap cell (row, col), or null unless source layer < destination layer. */
export function pairOfCell(row: number, col: number, nLayers: number, nHeads: number): Pair | null {
  const n = nLayers * nHeads;
  if (!(row >= 0 && col >= 0 && row < n && col < n)) return null;
  const src: [number, number] = [Math.floor(row / nHeads), row % nHeads];
  const dst: [number, number] = [Math.floor(col / nHeads), col % nHeads];
  return src[0] < dst[0] ? { src, dst } : null;
}

/** Heatmap cell of a selected pair [l1, h1, l2, h2], or null. */
export function cellOfPair(x: unknown, nLayers: number, nHeads: number): { row: number; col: number } | null {
  if (!Array.isArray(x) || x.length !== 4 || !x.every((v) => Number.isInteger(v))) return null;
  const [l1, h1, l2, h2] = x as number[];
  if (!(l1 >= 0 && l1 < l2 && l2 < nLayers && h1 >= 0 && h1 < nHeads && h2 >= 0 && h2 < nHeads)) return null;
  return { row: l1 * nHeads + h1, col: l2 * nHeads + h2 };
}

/** The colour-scale domain [0, hi] for composition scores: the kind's max, never below mean + 3 std. */
export function compDomain(max: unknown, mean: unknown, std: unknown): [number, number] {
  const m = Number(mean);
  const s = Number(std);
  const floor = Number.isFinite(m) && Number.isFinite(s) ? m + 3 * s : 0;
  const hi = Math.max(Number.isFinite(Number(max)) ? Number(max) : 0, floor);
  return [0, hi > 0 ? hi : 1];
}

/** Where value v sits along a [lo, hi] legend, as a fraction clamped to 0..1. */
export function legendFraction(v: number, domain: [number, number]): number {
  const [lo, hi] = domain;
  if (!(hi > lo) || !Number.isFinite(v)) return 0;
  return Math.max(0, Math.min(1, (v - lo) / (hi - lo)));
}

/** A [T, T] attention-like matrix from bytes (f32), NaN above the diagonal when `causal`. */
export function squareMatrix(view: unknown, shape: unknown, causal = false): { data: Float32Array; T: number } {
  const s = Array.isArray(shape) ? shape.map(Number) : [];
  if (s.length !== 2 || s[0] !== s[1]) throw new Error(`expected a square shape, got ${JSON.stringify(shape)}`);
  const T = s[0];
  const t = decodeTensor(view as Bytes, { dtype: "f32", shape: [T, T], scale: 1, offset: 0 });
  const data = Float32Array.from(t.data);
  if (causal) for (let q = 0; q < T; q++) for (let k = q + 1; k < T; k++) data[q * T + k] = NaN;
  return { data, T };
}
