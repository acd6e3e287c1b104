// The focused head's window on long prompts (widgets/attention.py `window` request): queries
// q0 <= q < q1 x keys k0 <= k < k1 at full resolution, at most `window_max` tokens a side. Pure
// functions: where a window lies, how it moves, and whether two are the same.

/** [q0, q1, k0, k1], half-open token ranges. */
export type Bounds = [number, number, number, number];

/** Window sides the view offers (tokens), capped by the kernel's `window_max`. */
export const WINDOW_SIDES = [32, 64, 128, 256];

function clampRange(start: number, side: number, pos: number): [number, number] {
  const n = Math.max(1, Math.min(side, pos));
  const s = Math.max(0, Math.min(pos - n, Math.round(start)));
  return [s, s + n];
}

/** A window of `side` tokens a side (fewer on a short prompt) centred near query `q`, key `k`,
 * kept inside the `pos`-token pattern. */
export function windowAround(q: number, k: number, side: number, pos: number): Bounds {
  const [q0, q1] = clampRange(q - Math.floor(side / 2), side, pos);
  const [k0, k1] = clampRange(k - Math.floor(side / 2), side, pos);
  return [q0, q1, k0, k1];
}

/** The default window: the first `side` tokens (queries and keys: the diagonal and BOS column). */
export function defaultWindow(side: number, pos: number): Bounds {
  return windowAround(0, 0, side, pos);
}

/** `b` moved by `dq` queries and `dk` keys, same size, kept inside the pattern. */
export function panWindow(b: Bounds, dq: number, dk: number, pos: number): Bounds {
  const [q0, q1] = clampRange(b[0] + dq, b[1] - b[0], pos);
  const [k0, k1] = clampRange(b[2] + dk, b[3] - b[2], pos);
  return [q0, q1, k0, k1];
}

/** `b` resized to `side` tokens a side around its centre. */
export function resizeWindow(b: Bounds, side: number, pos: number): Bounds {
  return windowAround((b[0] + b[1]) / 2, (b[2] + b[3]) / 2, side, pos);
}

/** A valid window of a `pos`-token pattern (at most `max` a side) from a trait value, or null. */
export function parseBounds(x: unknown, pos: number, max: number): Bounds | null {
  if (!Array.isArray(x) || x.length !== 4 || !x.every((v) => Number.isInteger(v))) return null;
  const [q0, q1, k0, k1] = x as number[];
  const ok = 0 <= q0 && q0 < q1 && q1 <= pos && 0 <= k0 && k0 < k1 && k1 <= pos && q1 - q0 <= max && k1 - k0 <= max;
  return ok ? [q0, q1, k0, k1] : null;
}

export function sameBounds(a: Bounds | null, b: Bounds | null): boolean {
  return !!a && !!b && a.every((v, i) => v === b[i]);
}

/** The window that shows token `i` as a query (row), keeping the keys when they already cover it. */
export function windowShowing(b: Bounds | null, i: number, side: number, pos: number): Bounds {
  if (b && i >= b[0] && i < b[1]) return b;
  const keys = b && i >= b[2] && i < b[3] ? (b[2] + b[3]) / 2 : i;
  return windowAround(i, keys, b ? b[1] - b[0] : side, pos);
}
