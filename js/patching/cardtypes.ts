// The shapes one site's card in the PatchingHeatmap view is built from: its cell geometry (CSS px),
// the data it is given (CardData), what its tooltip (CellInfo) and the SVG export (ExportSpec)
// read, the callbacks it reports through, and the labels of its view-mode select. No DOM.

import type { ColorScale } from "../lib/colors";
import type { Cell } from "../lib/heatmap";
import type { SiteEntry, ViewMode } from "./data";
import type { SiteCard } from "./site";

export const GAP = 1;
export const ROW_LABEL_W = 48;

/** Cell size in CSS px for a rows x cols map in `width` CSS px (0 = unknown). */
export function cellSize(rows: number, cols: number, width: number): { w: number; h: number } {
  const avail = width > 0 ? width - ROW_LABEL_W - 24 : 640;
  const w = Math.max(6, Math.min(48, Math.floor(avail / Math.max(1, cols)) - GAP));
  const h = rows <= 4 ? 30 : rows <= 8 ? 24 : rows <= 16 ? 18 : rows <= 32 ? 14 : 10;
  return { w, h };
}

export interface CardData {
  exact: SiteEntry | null;
  attribution: SiteEntry | null;
  /** Decode errors of this site's entries, if any. */
  error: string;
  cleanTokens: string[];
  corruptedTokens: string[];
  /** Positions where the clean and corrupted tokens differ. */
  diff: boolean[];
  /** Legend text, e.g. "logit diff (answer − wrong)". */
  metricLabel: string;
}

export interface InfoRow {
  name: string;
  text: string;
  value?: number;
  testid?: string;
}

export interface CellInfo {
  site: string;
  index: number[];
  title: string;
  hook: string;
  exact: number;
  attribution: number;
  rows: InfoRow[];
}

export interface ExportSpec {
  site: string;
  title: string;
  subtitle: string;
  rows: number;
  cols: number;
  rowLabels: string[];
  colLabels: string[];
  colMarks: boolean[];
  values: Float32Array;
  approx: Float32Array | null;
  scale: ColorScale;
  legend: string;
  agreement: string;
  selected: Cell | null;
}

export interface SiteCardOptions {
  site: string;
  onCellClick: (site: string, index: number[]) => void;
  onHover: (card: SiteCard, cell: Cell | null) => void;
  /** A position label was hovered (null: left), for marking that position everywhere. */
  onPosHover?: (pos: number | null) => void;
  /** The view mode or a slice changed: the view should redraw this card. */
  onChange: () => void;
}

export const MODE_LABELS: Array<[ViewMode, string]> = [
  ["mixed", "exact, else attribution"],
  ["exact", "exact only"],
  ["attribution", "attribution only"],
];

export function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}
