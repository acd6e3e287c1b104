// Reading untyped JSON (trait values from model.get, messages and result objects from Python):
// the type guards and coercions the views share.

/** A JSON object: not null, not an array. */
export function isObject(x: unknown): x is Record<string, any> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** `x` when it is a number (NaN and ±Infinity included), else `fallback`. */
export function numberOr(x: unknown, fallback = NaN): number {
  return typeof x === "number" ? x : fallback;
}

/** A list of strings (null / missing items become ""), or [] when `x` is not an array. */
export function strings(x: unknown): string[] {
  return Array.isArray(x) ? x.map((s) => (typeof s === "string" ? s : String(s ?? ""))) : [];
}

/** [i, j] with integers 0 <= i < n0 and 0 <= j < n1 (e.g. a cell of an n0 x n1 grid), or null. */
export function indexPair(x: unknown, n0: number, n1: number): [number, number] | null {
  if (!Array.isArray(x) || x.length !== 2) return null;
  const [i, j] = x.map(Number);
  if (!Number.isInteger(i) || !Number.isInteger(j)) return null;
  if (i < 0 || j < 0 || i >= n0 || j >= n1) return null;
  return [i, j];
}
