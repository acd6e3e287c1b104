// Geometry of a virtualised grid with frozen panes: rows x cols cells of cellW x cellH CSS px, a
// frozen column of row labels (labelW wide) on the left and a frozen band of column headers
// (headerH high) on top. The scrolled content is labelW + cols * cellW wide and
// headerH + rows * cellH high; cell (r, c) sits at (labelW + c * cellW, headerH + r * cellH) in
// content coordinates. A viewport of viewW x viewH CSS px scrolled to (scrollX, scrollY) shows the
// cells whose content rectangle, shifted by -scroll, falls right of labelW and below headerH.
// Nothing here touches the DOM: the canvas view (logit lens table) and its tests share it.

export interface VGrid {
  rows: number;
  cols: number;
  cellW: number;
  cellH: number;
  /** Width of the frozen row-label column (CSS px); also the content x of column 0. */
  labelW: number;
  /** Height of the frozen column-header band (CSS px); also the content y of row 0. */
  headerH: number;
}

/** Visible cells: rows [r0, r1) and columns [c0, c1) (empty when r0 >= r1 or c0 >= c1). */
export interface VWindow {
  r0: number;
  r1: number;
  c0: number;
  c1: number;
}

export interface Viewport {
  scrollX: number;
  scrollY: number;
  viewW: number;
  viewH: number;
}

export type VHit =
  | { kind: "cell"; row: number; col: number }
  | { kind: "row-label"; row: number }
  | { kind: "col-header"; col: number }
  | { kind: "corner" };

const clamp = (x: number, lo: number, hi: number) => (x < lo ? lo : x > hi ? hi : x);

export function contentSize(g: VGrid): { width: number; height: number } {
  return { width: g.labelW + g.cols * g.cellW, height: g.headerH + g.rows * g.cellH };
}

/** The largest scroll offsets of a viewport of this size. */
export function maxScroll(g: VGrid, viewW: number, viewH: number): { x: number; y: number } {
  const c = contentSize(g);
  return { x: Math.max(0, c.width - viewW), y: Math.max(0, c.height - viewH) };
}

/** Which cells a viewport shows (partly visible ones included). */
export function visibleWindow(g: VGrid, v: Viewport): VWindow {
  const sx = Math.max(0, v.scrollX);
  const sy = Math.max(0, v.scrollY);
  const c0 = clamp(Math.floor(sx / g.cellW), 0, g.cols);
  const c1 = clamp(Math.ceil((sx + v.viewW - g.labelW) / g.cellW), c0, g.cols);
  const r0 = clamp(Math.floor(sy / g.cellH), 0, g.rows);
  const r1 = clamp(Math.ceil((sy + v.viewH - g.headerH) / g.cellH), r0, g.rows);
  return { r0, r1, c0, c1 };
}

export function windowCells(w: VWindow): number {
  return Math.max(0, w.r1 - w.r0) * Math.max(0, w.c1 - w.c0);
}

/** Cell (r, c)'s rectangle in viewport (canvas) CSS px for the given scroll offsets. */
export function cellViewRect(g: VGrid, scrollX: number, scrollY: number, row: number, col: number) {
  return { x: g.labelW + col * g.cellW - scrollX, y: g.headerH + row * g.cellH - scrollY, w: g.cellW, h: g.cellH };
}

/** What is under viewport point (x, y): a cell, a row label, a column header, the corner, or null. */
export function hitTestView(g: VGrid, scrollX: number, scrollY: number, x: number, y: number): VHit | null {
  if (!(x >= 0 && y >= 0)) return null;
  const inLabels = x < g.labelW;
  const inHeader = y < g.headerH;
  if (inLabels && inHeader) return { kind: "corner" };
  const col = Math.floor((x - g.labelW + scrollX) / g.cellW);
  const row = Math.floor((y - g.headerH + scrollY) / g.cellH);
  if (inHeader) return col >= 0 && col < g.cols ? { kind: "col-header", col } : null;
  if (inLabels) return row >= 0 && row < g.rows ? { kind: "row-label", row } : null;
  if (col < 0 || col >= g.cols || row < 0 || row >= g.rows) return null;
  return { kind: "cell", row, col };
}

/**
 * The scroll offsets that bring cell (r, c) fully into the unfrozen part of the viewport with the
 * least movement (unchanged when it already is), clamped to the scrollable range.
 */
export function scrollToShow(g: VGrid, v: Viewport, row: number, col: number): { x: number; y: number } {
  const max = maxScroll(g, v.viewW, v.viewH);
  const axis = (scroll: number, start: number, size: number, frozen: number, view: number, limit: number) => {
    const avail = view - frozen;
    let s = scroll;
    if (start < s) s = start; // content offset of the cell past the frozen pane
    else if (start + size > s + avail) s = start + size - avail;
    return clamp(s, 0, limit);
  };
  return {
    x: axis(v.scrollX, col * g.cellW, g.cellW, g.labelW, v.viewW, max.x),
    y: axis(v.scrollY, row * g.cellH, g.cellH, g.headerH, v.viewH, max.y),
  };
}
