// The shapes the logit-lens table is built from: its cell geometry (CSS px), the data it draws
// (LensData), the callbacks it reports clicks through, the test hooks on its canvas, and the two
// text helpers every part of it uses (row labels, fitting a token into a cell), the window an export
// shows and where an arrow key moves the cursor. No DOM, no drawing.

import type { VGrid, VWindow, Viewport } from "../lib/virtual";
import { contentSize, visibleWindow } from "../lib/virtual";
import type { LensMode, TargetStats, TopTable } from "./data";

export const CELL_W = 64;
export const CELL_H = 20;
export const LABEL_W = 48;
export const HEADER_H = 34;
/** Viewport size used before the scroll container has been laid out (e.g. not yet attached). */
export const FALLBACK_VIEW_W = 960;
export const FALLBACK_VIEW_H = 720;
/** Exports draw the whole table up to this many cells, else the visible window. */
export const FULL_EXPORT_CELLS = 4096;

export const MONO = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';

export interface LensData {
  table: TopTable | null;
  tokens: string[];
  rowLabels: string[];
  rowHooks: string[];
  vocab: Record<string, string>;
  stats: TargetStats | null;
  target: number;
  targetText: string;
  mode: LensMode;
  changed: Uint8Array | null;
  selected: [number, number] | null;
}

export const EMPTY_DATA: LensData = {
  table: null,
  tokens: [],
  rowLabels: [],
  rowHooks: [],
  vocab: {},
  stats: null,
  target: -1,
  targetText: "",
  mode: "top",
  changed: null,
  selected: null,
};

export interface LensTableOptions {
  /** A click on cell (row, pos) (Enter on the keyboard cursor too). */
  onSelect: (row: number, pos: number) => void;
  /** Set a token as target: shift/alt-click on a cell (its top-1 token), or a click on a column header. */
  onTarget: (token: string, id?: number) => void;
}

/** The methods a browser test can call on the canvas element. */
export interface LensCanvas extends HTMLCanvasElement {
  lwScrollToCell(row: number, pos: number): { x: number; y: number } | null;
  lwCellCenter(row: number, pos: number): { x: number; y: number } | null;
}

/** Row label of row r ("L{r}", "final" last) when the trait has none. */
export function defaultRowLabel(r: number, R: number): string {
  return r === R - 1 ? "final" : `L${r}`;
}

/**
 * `text` cut to fit `maxW` (in the units `measure` returns) with an ellipsis; whole code points.
 * Returns "" when not even the ellipsis fits.
 */
export function fitText(text: string, maxW: number, measure: (s: string) => number): string {
  if (measure(text) <= maxW) return text;
  const chars = [...text];
  let lo = 0;
  let hi = chars.length - 1;
  if (measure("…") > maxW) return "";
  // Largest n with measure(prefix(n) + "…") <= maxW.
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (measure(chars.slice(0, mid).join("") + "…") <= maxW) lo = mid;
    else hi = mid - 1;
  }
  return chars.slice(0, lo).join("") + "…";
}

/**
 * Where key `key` moves the keyboard cursor from `cur` in a rows x cols table (arrows one cell,
 * Home / End to the row's ends, clamped), or null for any other key.
 */
export function keyMove(key: string, cur: [number, number], rows: number, cols: number): [number, number] | null {
  const moves: Record<string, [number, number]> = {
    ArrowUp: [-1, 0],
    ArrowDown: [1, 0],
    ArrowLeft: [0, -1],
    ArrowRight: [0, 1],
    Home: [0, -Infinity],
    End: [0, Infinity],
  };
  const m = moves[key];
  if (!m) return null;
  const r = Math.max(0, Math.min(rows - 1, cur[0] + m[0]));
  const c = Math.max(0, Math.min(cols - 1, cur[1] + (Number.isFinite(m[1]) ? m[1] : m[1] > 0 ? cols : -cols)));
  return [r, c];
}

/** The window an export shows: the whole table when small, else what is on screen (`current()`). */
export function exportView(g: VGrid, current: () => Viewport): { v: Viewport; win: VWindow; full: boolean } {
  if (g.rows * g.cols <= FULL_EXPORT_CELLS) {
    const c = contentSize(g);
    const v = { scrollX: 0, scrollY: 0, viewW: c.width, viewH: c.height };
    return { v, win: visibleWindow(g, v), full: true };
  }
  const v = current();
  return { v, win: visibleWindow(g, v), full: false };
}
