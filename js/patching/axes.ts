// The geometry of one site's result map in the PatchingHeatmap view: which two axes the heatmap
// shows (rows, columns) and which are chosen by selectors, row-major strides and flat indices,
// the slice shown, and where the effect is largest (overall and along one axis). Pure, no DOM.

import { numel } from "../lib/buffers";

const POS_DIMS = ["pos", "dest_pos", "src_pos"];

export function isPosDim(d: string): boolean {
  return POS_DIMS.includes(d);
}

/** Which axes of a site are the heatmap's rows and columns; the others are chosen by selectors. */
export interface Axes {
  /** Index into dims of the row axis, or -1 (a 0-d result: one row). */
  row: number;
  /** Index into dims of the column axis, or -1 (one column). */
  col: number;
  /** The remaining axes, in dims order. */
  extra: number[];
}

/**
 * Rows are layers; columns are the first position axis (pos, dest_pos, src_pos), else head,
 * else the last other axis. So [layer, pos] and [layer, head] show as they are, and
 * [layer, pos, head] shows layer x pos for one head at a time.
 */
export function chooseAxes(dims: readonly string[]): Axes {
  if (dims.length === 0) return { row: -1, col: -1, extra: [] };
  let row = dims.indexOf("layer");
  if (row < 0) row = dims.indexOf("patch_type") >= 0 && dims.length > 1 ? dims.findIndex((d) => d !== "patch_type") : 0;
  const others = dims.map((_, i) => i).filter((i) => i !== row);
  let col = others.find((i) => isPosDim(dims[i])) ?? others.find((i) => dims[i] === "head") ?? -1;
  if (col < 0 && others.length) col = others[others.length - 1];
  return { row, col, extra: others.filter((i) => i !== col) };
}

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function flatIndex(shape: readonly number[], index: readonly number[]): number {
  const st = strides(shape);
  let k = 0;
  for (let i = 0; i < shape.length; i++) k += index[i] * st[i];
  return k;
}

/** Rows and columns of the heatmap of a site with these axes. */
export function gridSize(shape: readonly number[], axes: Axes): { rows: number; cols: number } {
  return { rows: axes.row >= 0 ? shape[axes.row] : 1, cols: axes.col >= 0 ? shape[axes.col] : 1 };
}

/** The full index (dims order) of heatmap cell (r, c) with the extra axes at `fixed[dim]`. */
export function cellIndex(shape: readonly number[], axes: Axes, fixed: readonly number[], r: number, c: number): number[] {
  const idx = shape.map((_, i) => fixed[i] ?? 0);
  if (axes.row >= 0) idx[axes.row] = r;
  if (axes.col >= 0) idx[axes.col] = c;
  return idx;
}

/** The heatmap (rows x cols, row-major) of `values` over `shape` with the extra axes at `fixed`. */
export function extractSlice(values: ArrayLike<number>, shape: readonly number[], axes: Axes, fixed: readonly number[]): Float32Array {
  const { rows, cols } = gridSize(shape, axes);
  const out = new Float32Array(rows * cols);
  if (numel(shape) === 0 || values.length < numel(shape)) return out.fill(NaN);
  const st = strides(shape);
  let base = 0;
  for (const i of axes.extra) base += (fixed[i] ?? 0) * st[i];
  const sr = axes.row >= 0 ? st[axes.row] : 0;
  const sc = axes.col >= 0 ? st[axes.col] : 0;
  for (let r = 0; r < rows; r++) {
    const rb = base + r * sr;
    for (let c = 0; c < cols; c++) out[r * cols + c] = values[rb + c * sc];
  }
  return out;
}

/** The index (dims order) of the largest finite |value|, or zeros. */
export function argmaxAbs(values: ArrayLike<number>, shape: readonly number[]): number[] {
  let best = -1;
  let bestV = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  const idx = shape.map(() => 0);
  if (best < 0) return idx;
  const st = strides(shape);
  for (let d = 0; d < shape.length; d++) {
    idx[d] = Math.floor(best / st[d]) % Math.max(1, shape[d]);
  }
  return idx;
}

/** Largest finite |value| of each index along axis `axis` (for slice menus). */
export function maxAbsAlong(values: ArrayLike<number>, shape: readonly number[], axis: number): Float64Array {
  const out = new Float64Array(shape[axis] ?? 0).fill(NaN);
  const st = strides(shape);
  const n = Math.min(values.length, numel(shape));
  for (let i = 0; i < n; i++) {
    const v = Math.abs(values[i]);
    if (!Number.isFinite(v)) continue;
    const k = Math.floor(i / st[axis]) % shape[axis];
    if (!(out[k] >= v)) out[k] = v;
  }
  return out;
}
