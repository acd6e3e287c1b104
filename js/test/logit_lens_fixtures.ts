// Fake LogitLensTable traits for the vitest units (the shapes of docs/protocol.md).

import { f16Bytes, f32Bytes } from "./helpers";

/** int32 values as little-endian bytes, written explicitly through a DataView. */
export function i32Bytes(values: ArrayLike<number>): DataView {
  const dv = new DataView(new ArrayBuffer(values.length * 4));
  for (let i = 0; i < values.length; i++) dv.setInt32(4 * i, values[i], true);
  return dv;
}

export const XSS = "<img src=x onerror=alert(1)>";

/** A vocabulary of V tokens: id 0 is the XSS string, id 1 " Paris", id 2 "\n", others "tok{id}". */
export function fakeVocab(V: number): Record<string, string> {
  const v: Record<string, string> = {};
  for (let i = 0; i < V; i++) v[String(i)] = i === 0 ? XSS : i === 1 ? " Paris" : i === 2 ? "\n" : ` tok${i}`;
  return v;
}

export interface FakeLens {
  R: number;
  T: number;
  k: number;
  V: number;
  ids: Int32Array;
  probs: Float32Array;
}

/**
 * A deterministic [R, T, k] table: the top-1 id of cell (r, t) is (r * 7 + t * 3) % V, then the next
 * ids; probabilities fall with k and rise with the row (later layers are surer).
 */
export function fakeLens(R: number, T: number, k: number, V = 97): FakeLens {
  const ids = new Int32Array(R * T * k);
  const probs = new Float32Array(R * T * k);
  for (let r = 0; r < R; r++)
    for (let t = 0; t < T; t++) {
      const base = (r * T + t) * k;
      const p0 = 0.1 + (0.85 * r) / Math.max(1, R - 1);
      for (let i = 0; i < k; i++) {
        ids[base + i] = (r * 7 + t * 3 + i) % V;
        probs[base + i] = i === 0 ? p0 : (1 - p0) / (i + 1.5);
      }
    }
  return { R, T, k, V, ids, probs };
}

export function lensTraits(R: number, T: number, k: number, extra: Record<string, unknown> = {}) {
  const f = fakeLens(R, T, k);
  const tokens = Array.from({ length: T }, (_, i) => (i === 0 ? "<bos>" : i === 3 ? XSS : ` w${i}`));
  return {
    prompt: "The capital of France is",
    tokens,
    row_labels: Array.from({ length: R }, (_, r) => (r === R - 1 ? "final" : `L${r}`)),
    row_hooks: Array.from({ length: R }, (_, r) => (r === R - 1 ? `blocks.${R - 2}.hook_resid_post` : `blocks.${r}.hook_resid_pre`)),
    k,
    top_ids: i32Bytes(f.ids),
    top_probs: f16Bytes(f.probs),
    top_meta: { shape: [R, T, k] },
    vocab: fakeVocab(f.V),
    target: -1,
    target_text: "",
    target_stats: {},
    mode: "top",
    selected: [],
    cell_detail: {},
    ablated: [],
    changed: new DataView(new ArrayBuffer(0)),
    error: {},
    busy: "",
    theme: "auto",
    ...extra,
  };
}

/** target_stats for target id 1 (" Paris"): prob rises with the row; rank 0 in the last row. */
export function targetStats(R: number, T: number) {
  const prob = new Float32Array(R * T);
  const rank = new Float32Array(R * T);
  const logit = new Float32Array(R * T);
  for (let r = 0; r < R; r++)
    for (let t = 0; t < T; t++) {
      const i = r * T + t;
      prob[i] = (r + 1) / (R + 1);
      rank[i] = r === R - 1 ? 0 : (R - 1 - r) * 10 + t;
      logit[i] = r - 1.5;
    }
  return { prob: f32Bytes(prob), rank: f32Bytes(rank), logit: f32Bytes(logit), shape: [R, T] };
}

export const DETAIL = {
  row: 2,
  pos: 3,
  row_label: "L2",
  hook: "blocks.2.hook_resid_pre",
  token: XSS,
  top: [
    { token: " Paris", id: 1, prob: 0.3125 },
    { token: XSS, id: 0, prob: 0.125 },
    { token: "\n", id: 2, prob: 0.0625 },
  ],
  target: 1,
  target_text: " Paris",
  target_prob: 0.3125,
  target_rank: 0,
  dla: {
    labels: ["L1H3", "mlp1", "embed", "L0H0", "pos_embed"],
    hooks: ["blocks.1.attn.hook_z", "blocks.1.hook_mlp_out", "hook_embed", "blocks.0.attn.hook_z", "hook_pos_embed"],
    kinds: ["head", "mlp", "embed", "head", "embed"],
    values: [1.2345678, -0.8765432, 0.5, 0.0004999, -0.25],
    logit: 0.7,
    remainder: 0.0914755,
  },
};
