// The thumbnail pixels of AttentionGrid's head grid: every head's [T, T] pattern max-pooled to
// s x s and coloured, packed into one RGBA atlas (grid.ts draws thumbnails from it, gridsvg.ts
// embeds one head's as a PNG). Pure maths on typed arrays; no DOM.

import type { ColorScale } from "../lib/colors";

/**
 * Source index ranges for max-pooling `n` items into `s` bins: bin i covers [starts[i], ends[i]).
 */
export function poolRanges(n: number, s: number): { starts: Int32Array; ends: Int32Array } {
  const starts = new Int32Array(s);
  const ends = new Int32Array(s);
  for (let i = 0; i < s; i++) {
    starts[i] = Math.floor((i * n) / s);
    ends[i] = Math.max(starts[i] + 1, Math.floor(((i + 1) * n) / s));
  }
  return { starts, ends };
}

/**
 * RGBA atlas of all heads: width nHeads * s, height nLayers * s; head (l, h) at (h * s, l * s),
 * each its [T, T] pattern max-pooled to s x s (s <= T) and coloured by `scale`.
 */
export function fillAtlas(
  patterns: Float32Array,
  nLayers: number,
  nHeads: number,
  T: number,
  s: number,
  scale: ColorScale,
): Uint8ClampedArray {
  const W = nHeads * s;
  const out = new Uint8ClampedArray(W * nLayers * s * 4);
  // 32-bit writes of the LUT colours (RGBA bytes in memory order) and an inlined LUT index:
  // this loop runs once per new set of patterns, mostly before the JIT has warmed up.
  const lut32 = new Uint32Array(scale.lut.buffer.slice(scale.lut.byteOffset, scale.lut.byteOffset + 1024));
  const out32 = new Uint32Array(out.buffer);
  const lo = scale.domain[0];
  const span = scale.domain[1] - lo;
  const inv = span > 0 ? 255 / span : 0;
  const nanColor = lut32[0];
  const color = (v: number): number => {
    if (v !== v) return nanColor;
    const k = (v - lo) * inv + 0.5;
    return lut32[k <= 0 ? 0 : k >= 255 ? 255 : k | 0];
  };
  if (s === T) {
    for (let l = 0; l < nLayers; l++) {
      for (let hd = 0; hd < nHeads; hd++) {
        let src = (l * nHeads + hd) * T * T;
        for (let i = 0; i < T; i++) {
          let o = (l * s + i) * W + hd * s;
          for (let j = 0; j < T; j++) out32[o++] = color(patterns[src++]);
        }
      }
    }
    return out;
  }
  const { starts, ends } = poolRanges(T, s);
  for (let l = 0; l < nLayers; l++) {
    for (let hd = 0; hd < nHeads; hd++) {
      const base = (l * nHeads + hd) * T * T;
      for (let i = 0; i < s; i++) {
        let o = (l * s + i) * W + hd * s;
        const r0 = starts[i];
        const r1 = ends[i];
        for (let j = 0; j < s; j++) {
          let v = -Infinity;
          const c0 = starts[j];
          const c1 = ends[j];
          for (let r = r0; r < r1; r++) {
            const row = base + r * T;
            for (let c = c0; c < c1; c++) {
              const x = patterns[row + c];
              if (x > v) v = x;
            }
          }
          out32[o++] = color(v);
        }
      }
    }
  }
  return out;
}
