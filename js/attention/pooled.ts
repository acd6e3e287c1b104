// Thumbnails and patterns as they travel (widgets/attention.py, encode.encode_tril): the lower
// triangle of square matrices, row by row, and for long prompts every head max-pooled to a
// fixed side with `bin` tokens per cell. The full pattern of a pooled head comes by request.

import type { Bytes, Tensor, TensorMeta } from "../lib/buffers";
import { decodeTensor } from "../lib/buffers";

export interface PatternMeta extends TensorMeta {
  layout?: string;
  /** side of each square matrix */
  size?: number;
  /** prompt length in tokens (thumbnails: may exceed `size`) */
  pos?: number;
  pooled?: boolean;
  /** tokens per thumbnail cell */
  bin?: number;
  /** a focused head is drawn whole up to this many tokens, else as an overview and a window */
  window_max?: number;
}

/** Decode a `layout: "tril"` tensor [..., n(n+1)/2] into [..., n, n] (zeros above the diagonal);
 * any other layout decodes as is. */
export function decodePatternTensor(view: Bytes, meta: PatternMeta): Tensor {
  const flat = decodeTensor(view, meta);
  if (meta.layout !== "tril") return flat;
  const n = Number(meta.size);
  const lead = flat.shape.slice(0, -1);
  const tri = flat.shape[flat.shape.length - 1] ?? 0;
  if (!Number.isInteger(n) || n < 0 || tri !== (n * (n + 1)) / 2) {
    throw new Error(`tril tensor: ${tri} values do not make a ${n} x ${n} triangle`);
  }
  const count = lead.reduce((a, b) => a * b, 1);
  const out = new Float32Array(count * n * n);
  const src = flat.data;
  let s = 0;
  for (let m = 0; m < count; m++) {
    const base = m * n * n;
    for (let q = 0; q < n; q++) {
      out.set(src.subarray(s, s + q + 1), base + q * n);
      s += q + 1;
    }
  }
  return { data: out, shape: [...lead, n, n] };
}

/** Tokens per thumbnail cell (1 when the thumbnails are the patterns). */
export function binOf(meta: PatternMeta | null | undefined): number {
  const b = Number(meta?.bin);
  return meta?.pooled && Number.isInteger(b) && b > 1 ? b : 1;
}
