// Data of the PatchingHeatmap view (docs/protocol.md, PatchingHeatmap): result-map entries,
// which two axes a site's heatmap shows, slices, the exact/attribution mix, agreement statistics
// and cell labels. Pure functions, no DOM. Axis geometry and slices live in axes.ts (re-exported
// here).

import { decodeTensor, numel } from "../lib/buffers";
import type { DType } from "../lib/buffers";
import { isObject } from "../lib/json";
import { isPosDim } from "./axes";

export type { Axes } from "./axes";
export { argmaxAbs, cellIndex, chooseAxes, extractSlice, flatIndex, gridSize, isPosDim, maxAbsAlong, strides } from "./axes";

/** One site of a result map (`attribution` or `exact`), decoded. */
export interface SiteEntry {
  /** Row-major values over `shape`, NaN where not computed. */
  data: Float32Array;
  shape: number[];
  /** Axis names, e.g. ["layer", "pos"], ["layer", "head"], ["layer", "pos", "head"]. */
  dims: string[];
  /** Hook name pattern, e.g. "blocks.{layer}.hook_resid_pre". */
  hook: string;
  partial: boolean;
  /** Cells computed / cells in all (from the entry, else counted). */
  done: number;
  total: number;
  /** Optional axis labels from Python, by dim name (e.g. {"head": ["KV0", "KV1"]}). */
  labels: Record<string, string[]>;
}

export function countFinite(values: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) n++;
  return n;
}

/** Decode one result-map entry; throws an Error saying what is wrong. */
export function parseEntry(x: unknown): SiteEntry {
  if (!isObject(x)) throw new Error("entry is not an object");
  const shape = Array.isArray(x.shape) ? x.shape.map(Number) : null;
  if (!shape || shape.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`bad shape ${JSON.stringify(x.shape)}`);
  const dims = Array.isArray(x.dims) ? x.dims.map(String) : [];
  if (dims.length !== shape.length) {
    throw new Error(`dims ${JSON.stringify(x.dims)} do not match shape ${JSON.stringify(shape)}`);
  }
  const dtype: DType = x.dtype === "f16" || x.dtype === "u8" ? x.dtype : "f32";
  const view = x.data;
  const n = numel(shape);
  let data: Float32Array;
  if (n === 0) data = new Float32Array(0);
  else if (!view || typeof (view as { byteLength?: unknown }).byteLength !== "number") throw new Error("no data bytes");
  else data = decodeTensor(view, { dtype, shape, scale: x.scale, offset: x.offset }).data;
  const labels: Record<string, string[]> = {};
  if (isObject(x.labels)) {
    for (const [k, v] of Object.entries(x.labels)) if (Array.isArray(v)) labels[k] = v.map((s) => String(s ?? ""));
  }
  const fin = (v: unknown, fb: number) => (typeof v === "number" && Number.isFinite(v) ? v : fb);
  return {
    data,
    shape,
    dims,
    hook: typeof x.hook === "string" ? x.hook : "",
    partial: x.partial === true,
    done: fin(x.done, countFinite(data)),
    total: fin(x.total, n),
    labels,
  };
}

interface CacheSlot {
  raw: unknown;
  data: unknown;
  key: string;
  entry: SiteEntry | null;
  error: string;
}

/**
 * Decodes a result-map trait, site by site, re-decoding only entries whose bytes or fields
 * changed (a streaming sweep replaces the map many times).
 */
export class ResultMapCache {
  private slots = new Map<string, CacheSlot>();

  /** Entries by site, and the error of each site that failed to decode. */
  update(map: unknown): { entries: Map<string, SiteEntry>; errors: Map<string, string>; changed: Set<string> } {
    const entries = new Map<string, SiteEntry>();
    const errors = new Map<string, string>();
    const changed = new Set<string>();
    const next = new Map<string, CacheSlot>();
    if (isObject(map)) {
      for (const [site, raw] of Object.entries(map)) {
        const old = this.slots.get(site);
        const r = raw as Record<string, unknown> | null;
        const key = isObject(r) ? JSON.stringify({ ...r, data: undefined }) : String(r);
        const data = isObject(r) ? r.data : undefined;
        let slot: CacheSlot;
        if (old && old.raw === raw) slot = old;
        else if (old && old.data === data && old.key === key) slot = { ...old, raw };
        else {
          slot = { raw, data, key, entry: null, error: "" };
          try {
            slot.entry = parseEntry(raw);
          } catch (e) {
            slot.error = (e as Error).message;
          }
          changed.add(site);
        }
        next.set(site, slot);
        if (slot.entry) entries.set(site, slot.entry);
        else errors.set(site, slot.error);
      }
    }
    for (const site of this.slots.keys()) if (!next.has(site)) changed.add(site);
    this.slots = next;
    return { entries, errors, changed };
  }
}

// ---- exact vs attribution --------------------------------------------------------------------

export type ViewMode = "mixed" | "exact" | "attribution";
export type Source = "exact" | "attribution" | "mixed" | "none";

export interface Combined {
  values: Float32Array;
  /** 1 where the value shown is the attribution estimate inside a map that also has exact values. */
  approx: Uint8Array | null;
  /** What the map shows as a whole. */
  source: Source;
  /** Cells with an exact value, cells filled in from attribution. */
  exactCells: number;
  approxCells: number;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * The values a site's heatmap shows. `mixed`: the exact value where computed, else the
 * attribution estimate (flagged in `approx`); `exact` / `attribution`: that map only (NaN where
 * it has no value).
 */
export function combine(exact: SiteEntry | null, attr: SiteEntry | null, mode: ViewMode): Combined {
  const usable = exact && attr && sameShape(exact.shape, attr.shape) ? attr : exact ? null : attr;
  if (mode === "attribution" && usable) {
    return { values: usable.data, approx: null, source: "attribution", exactCells: 0, approxCells: countFinite(usable.data) };
  }
  if (!exact) {
    if (!usable) return { values: new Float32Array(0), approx: null, source: "none", exactCells: 0, approxCells: 0 };
    return { values: usable.data, approx: null, source: "attribution", exactCells: 0, approxCells: countFinite(usable.data) };
  }
  const exactCells = countFinite(exact.data);
  if (mode === "exact" || !usable || exactCells === exact.data.length) {
    return { values: exact.data, approx: null, source: "exact", exactCells, approxCells: 0 };
  }
  const n = exact.data.length;
  const values = new Float32Array(n);
  const approx = new Uint8Array(n);
  let approxCells = 0;
  for (let i = 0; i < n; i++) {
    const e = exact.data[i];
    if (Number.isFinite(e)) values[i] = e;
    else {
      const a = usable.data[i];
      values[i] = a;
      if (Number.isFinite(a)) {
        approx[i] = 1;
        approxCells++;
      }
    }
  }
  if (exactCells === 0) return { values: usable.data, approx: null, source: "attribution", exactCells: 0, approxCells };
  return { values, approx, source: approxCells ? "mixed" : "exact", exactCells, approxCells };
}

export interface Agreement {
  /** Cells where both maps have a finite value. */
  n: number;
  /** Pearson correlation over those cells (NaN when n < 2 or a map is constant there). */
  r: number;
  /** max |attribution - exact| over those cells (NaN when n = 0). */
  maxAbsDiff: number;
  /** mean |attribution - exact|. */
  meanAbsDiff: number;
}

/** How close attribution is to exact, over the cells where both are finite. */
export function agreement(exact: ArrayLike<number>, attr: ArrayLike<number>): Agreement {
  const len = Math.min(exact.length, attr.length);
  let n = 0;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < len; i++) {
    const x = exact[i];
    const y = attr[i];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    n++;
    sx += x;
    sy += y;
  }
  if (n === 0) return { n: 0, r: NaN, maxAbsDiff: NaN, meanAbsDiff: NaN };
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let syy = 0;
  let sxy = 0;
  let maxD = 0;
  let sumD = 0;
  for (let i = 0; i < len; i++) {
    const x = exact[i];
    const y = attr[i];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    const dx = x - mx;
    const dy = y - my;
    sxx += dx * dx;
    syy += dy * dy;
    sxy += dx * dy;
    const d = Math.abs(y - x);
    if (d > maxD) maxD = d;
    sumD += d;
  }
  const r = n >= 2 && sxx > 0 && syy > 0 ? Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy))) : NaN;
  return { n, r, maxAbsDiff: maxD, meanAbsDiff: sumD / n };
}

/**
 * Cells done and in all over `sites` (for the partial badge). A site the sweep has not reached
 * (no exact entry) counts 0 done of its attribution map's size, so "N of M" covers every site shown.
 */
export function sweepCounts(
  exact: Map<string, SiteEntry>,
  sites: readonly string[],
  attribution: Map<string, SiteEntry> = new Map(),
): { done: number; total: number; partial: boolean } {
  let done = 0;
  let total = 0;
  let partial = false;
  for (const s of sites) {
    const e = exact.get(s);
    if (!e) {
      total += attribution.get(s)?.data.length ?? 0;
      continue;
    }
    done += e.done;
    total += e.total;
    partial ||= e.partial;
  }
  return { done, total, partial };
}

// ---- labels ----------------------------------------------------------------------------------

/** Labels of the `n` entries of axis `dim`. Position axes use the clean tokens (raw strings). */
export function axisLabels(dim: string, n: number, entry: SiteEntry | null, tokens: readonly string[]): string[] {
  const given = entry?.labels[dim];
  if (given && given.length === n) return [...given];
  return Array.from({ length: n }, (_, i) => {
    if (dim === "layer") return `L${i}`;
    if (isPosDim(dim)) return i < tokens.length ? tokens[i] : `#${i}`;
    if (dim === "head") return `H${i}`;
    return `${dim} ${i}`;
  });
}

/** The hook name of one cell: the pattern with {layer} (and {head}, {pos}) filled in. */
export function cellHook(pattern: string, dims: readonly string[], index: readonly number[]): string {
  return pattern.replace(/\{(\w+)\}/g, (m, name: string) => {
    const i = dims.indexOf(name);
    return i >= 0 && index[i] !== undefined ? String(index[i]) : m;
  });
}

/** "L3H2", "L3", "H2", ... for the layer/head part of a cell. */
export function componentLabel(dims: readonly string[], index: readonly number[], entry: SiteEntry | null): string {
  const li = dims.indexOf("layer");
  const hi = dims.indexOf("head");
  const headLabel = hi >= 0 ? entry?.labels.head?.[index[hi]] : undefined;
  if (li >= 0 && hi >= 0) return headLabel ? `L${index[li]}${headLabel.replace(/^L\d+/, "")}` : `L${index[li]}H${index[hi]}`;
  if (li >= 0) return `L${index[li]}`;
  if (hi >= 0) return headLabel ?? `H${index[hi]}`;
  return "";
}

/** Token diff between two tokenizations: same length -> per position; else the middle that differs. */
export function diffMasks(a: readonly string[], b: readonly string[]): [boolean[], boolean[]] {
  if (a.length === b.length) {
    const m = a.map((t, i) => t !== b[i]);
    return [m, [...m]];
  }
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  return [a.map((_, i) => i >= pre && i < a.length - suf), b.map((_, i) => i >= pre && i < b.length - suf)];
}

/** Position of `v` on the corrupted (0) -> clean (1) axis, or NaN. */
export function recovered(v: number, clean: number, corrupted: number): number {
  const gap = clean - corrupted;
  if (!Number.isFinite(v) || !Number.isFinite(gap) || gap === 0) return NaN;
  return (v - corrupted) / gap;
}
