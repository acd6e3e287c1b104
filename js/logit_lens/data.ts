// Decoding of the LogitLensTable traits (docs/protocol.md, LogitLensTable) and the numbers the
// table is shaded by. Pure functions over typed arrays: no DOM.
//
//   top_ids      int32   [R, T, k]  little-endian (read through a DataView)
//   top_probs    float16 [R, T, k]  (lib/buffers decodes it)
//   top_meta     {"shape": [R, T, k]}
//   target_stats {"prob": f32 [R, T], "rank": f32 [R, T], "logit": f32 [R, T], "shape": [R, T]} or {}
//   changed      uint8   [R, T]; empty bytes = not ablated
//   vocab        {str(id): token string}

import type { Bytes } from "../lib/buffers";
import { asBytes, decodeTensor } from "../lib/buffers";

export type LensMode = "top" | "target_prob" | "target_rank";

export const MODES: Array<[LensMode, string]> = [
  ["top", "top token"],
  ["target_prob", "target prob"],
  ["target_rank", "target rank"],
];

export function normalizeMode(x: unknown): LensMode {
  return x === "target_prob" || x === "target_rank" ? x : "top";
}

/** The decoded top-k table. Cell (r, t) has its k ids / probs at [(r * T + t) * k, ... + k). */
export interface TopTable {
  R: number;
  T: number;
  k: number;
  ids: Int32Array;
  probs: Float32Array;
}

export interface TargetStats {
  prob: Float32Array | null;
  rank: Float32Array | null;
  logit: Float32Array | null;
}

/** Byte length of a trait value (0 for anything that is not bytes). */
export function byteLength(view: unknown): number {
  return asBytes(view)?.byteLength ?? 0;
}

/** `n` little-endian int32 values. Throws when the byte count is not 4 * n. */
export function decodeInt32LE(view: Bytes, n: number): Int32Array {
  const bytes = asBytes(view);
  if (!bytes) throw new TypeError("decodeInt32LE: expected bytes");
  if (bytes.byteLength !== 4 * n) throw new Error(`int32 x ${n} needs ${4 * n} bytes, got ${bytes.byteLength}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
  return out;
}

function shapeOf(meta: unknown): number[] | null {
  const s = meta && typeof meta === "object" ? (meta as { shape?: unknown }).shape : null;
  if (!Array.isArray(s)) return null;
  const out = s.map(Number);
  return out.every((d) => Number.isInteger(d) && d >= 0) ? out : null;
}

/**
 * The top-k table from `top_ids`, `top_probs` and `top_meta`, or null for the empty initial state.
 * Throws an Error naming the problem when the bytes do not match the shape.
 */
export function decodeTopTable(ids: unknown, probs: unknown, meta: unknown): TopTable | null {
  if (byteLength(ids) === 0 && byteLength(probs) === 0) return null;
  const shape = shapeOf(meta);
  if (!shape || shape.length !== 3) throw new Error(`top_meta.shape must be [R, T, k], got ${JSON.stringify((meta as { shape?: unknown })?.shape)}`);
  const [R, T, k] = shape;
  const n = R * T * k;
  const idArr = decodeInt32LE(ids as Bytes, n);
  const probArr = decodeTensor(probs as Bytes, { dtype: "f16", shape }).data;
  return { R, T, k, ids: idArr, probs: probArr };
}

/** `target_stats` decoded, or null when there is no target ({}), or a field missing / of the wrong size. */
export function decodeTargetStats(x: unknown, R: number, T: number): TargetStats | null {
  if (!x || typeof x !== "object") return null;
  const o = x as Record<string, unknown>;
  const shape = Array.isArray(o.shape) ? o.shape.map(Number) : [R, T];
  if (shape.length !== 2 || shape[0] !== R || shape[1] !== T) {
    throw new Error(`target_stats.shape must be [${R}, ${T}], got ${JSON.stringify(o.shape)}`);
  }
  const one = (name: string): Float32Array | null =>
    byteLength(o[name]) > 0 ? decodeTensor(o[name] as Bytes, { dtype: "f32", shape: [R, T] }).data : null;
  const stats = { prob: one("prob"), rank: one("rank"), logit: one("logit") };
  return stats.prob || stats.rank || stats.logit ? stats : null;
}

/** The `changed` mask [R, T], or null when empty (not ablated). */
export function decodeChanged(view: unknown, R: number, T: number): Uint8Array | null {
  const bytes = asBytes(view);
  if (!bytes || bytes.byteLength === 0) return null;
  if (bytes.byteLength !== R * T) throw new Error(`changed must be uint8 [${R}, ${T}] (${R * T} bytes), got ${bytes.byteLength}`);
  return bytes;
}

export function countChanged(mask: Uint8Array | null): number {
  if (!mask) return 0;
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) n++;
  return n;
}

/** The token string of an id from the `vocab` trait ("#id" when it is not there). */
export function vocabToken(vocab: unknown, id: number): string {
  if (vocab && typeof vocab === "object") {
    const s = (vocab as Record<string, unknown>)[String(id)];
    if (typeof s === "string") return s;
  }
  return `#${id}`;
}

/** Top-1 id of cell (r, t). */
export function top1(t: TopTable, r: number, pos: number): number {
  return t.ids[(r * t.T + pos) * t.k];
}

/** The k (id, prob) pairs of a cell, most likely first. */
export function cellTop(t: TopTable, r: number, pos: number, n = t.k): Array<{ id: number; prob: number }> {
  const base = (r * t.T + pos) * t.k;
  const out: Array<{ id: number; prob: number }> = [];
  for (let i = 0; i < Math.min(n, t.k); i++) out.push({ id: t.ids[base + i], prob: t.probs[base + i] });
  return out;
}

/** Colour strength of a rank: 1 for rank 0, falling as log(1 + rank), 0 at `maxRank`. */
export function rankStrength(rank: number, maxRank: number): number {
  if (!Number.isFinite(rank) || rank < 0) return NaN;
  const m = Math.max(1, maxRank);
  return Math.max(0, 1 - Math.log1p(rank) / Math.log1p(m));
}

export interface Shade {
  /** [R * T] values in [0, 1] (NaN = nothing to show) that the sequential scale colours. */
  values: Float32Array;
  /** target_rank: the largest finite rank in the table (the legend's left end). */
  maxRank: number;
  /** False when a target mode is chosen but there is no target. */
  ok: boolean;
}

/** What each cell is shaded by in `mode`. */
export function shadeValues(t: TopTable, stats: TargetStats | null, mode: LensMode): Shade {
  const n = t.R * t.T;
  const values = new Float32Array(n);
  if (mode === "top") {
    for (let i = 0; i < n; i++) values[i] = t.k > 0 ? t.probs[i * t.k] : NaN;
    return { values, maxRank: 0, ok: true };
  }
  if (mode === "target_prob") {
    if (!stats?.prob) return { values: values.fill(NaN), maxRank: 0, ok: false };
    values.set(stats.prob);
    return { values, maxRank: 0, ok: true };
  }
  if (!stats?.rank) return { values: values.fill(NaN), maxRank: 0, ok: false };
  let maxRank = 1;
  for (let i = 0; i < n; i++) {
    const r = stats.rank[i];
    if (Number.isFinite(r) && r > maxRank) maxRank = r;
  }
  for (let i = 0; i < n; i++) values[i] = rankStrength(stats.rank[i], maxRank);
  return { values, maxRank, ok: true };
}
