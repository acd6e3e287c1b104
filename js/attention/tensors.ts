// The tensors of AttentionGrid's traits, decoded only when their bytes or meta change: the
// patterns ([L, H, T, T], possibly pooled or stored as a lower triangle, see pooled.ts) and the
// head scores ([S, L, H]; without `scores_meta`, f32 of that shape). A decode error goes to the
// widget's banner (`decode`) and leaves the tensor null.

import type { Bytes, Tensor, TensorMeta } from "../lib/buffers";
import { decodeTensor, hasTensor } from "../lib/buffers";
import type { Widget } from "../lib/widget";
import type { PatternMeta } from "./pooled";
import { decodePatternTensor } from "./pooled";

interface Decoded {
  key: unknown;
  meta: string;
  tensor: Tensor | null;
}

export class GridTensors {
  private p: Decoded = { key: null, meta: "", tensor: null };
  private s: Decoded = { key: null, meta: "", tensor: null };

  constructor(private readonly decode: Widget["decode"]) {}

  /** [L, H, T, T], or null. */
  get patterns(): Tensor | null {
    return this.p.tensor;
  }

  /** [S, L, H], or null. */
  get scores(): Tensor | null {
    return this.s.tensor;
  }

  /** The `patterns` / `patterns_meta` traits; returns true when they changed (decoded anew). */
  updatePatterns(view: unknown, meta: unknown): boolean {
    const metaKey = JSON.stringify(meta ?? null);
    if (view === this.p.key && metaKey === this.p.meta) return false;
    this.p = { key: view, meta: metaKey, tensor: null };
    if (!hasTensor(view, meta)) return true;
    this.p.tensor = this.decode("attention patterns", () => {
      const t = decodePatternTensor(view, meta as PatternMeta);
      if (t.shape.length !== 4 || t.shape[2] !== t.shape[3]) {
        throw new Error(`patterns must have shape [L, H, T, T], got ${JSON.stringify(t.shape)}`);
      }
      return t;
    });
    return true;
  }

  /** The `scores` / `scores_meta` traits for a grid of L layers x H heads. */
  updateScores(view: unknown, metaTrait: unknown, L: number, H: number): void {
    const metaKey = JSON.stringify(metaTrait ?? null);
    if (view === this.s.key && metaKey === this.s.meta) return;
    this.s = { key: view, meta: metaKey, tensor: null };
    const len = (view as { byteLength?: number } | null)?.byteLength ?? 0;
    if (!len) return;
    const meta =
      metaTrait && typeof metaTrait === "object" && "dtype" in metaTrait
        ? (metaTrait as TensorMeta)
        : { dtype: "f32" as const, shape: [L * H > 0 ? len / 4 / (L * H) : 0, L, H] };
    this.s.tensor = this.decode("head scores", () => decodeTensor(view as Bytes, meta));
  }
}
