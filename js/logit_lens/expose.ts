// The layout a browser test reads off the logit-lens canvas (data-testid lw-lens-table):
//   data-rows, data-cols, data-cell-w, data-cell-h,
//   data-origin-x, data-origin-y   content position of cell (0, 0)'s top-left corner
//   data-scroll-x, data-scroll-y   the scroll offsets of the last draw
//   data-view-w, data-view-h       the canvas (viewport) size in CSS px
//   data-window="r0,r1,c0,c1"      the rows [r0, r1) and columns [c0, c1) drawn
//   data-mode, data-selected="r,p" the shading mode and the selected cell ("" when none)
// Cell (r, p) is at canvas-relative CSS px (originX + p * cellW - scrollX, originY + r * cellH - scrollY).

import { exposeGrid } from "../lib/canvas";
import type { VGrid, VWindow, Viewport } from "../lib/virtual";
import type { LensData } from "./layout";

/** Write the layout of a draw of window `w` of `d` in viewport `v` onto `canvas`'s data attributes. */
export function exposeLens(canvas: HTMLCanvasElement, g: VGrid, v: Viewport, w: VWindow, d: LensData): void {
  exposeGrid(canvas, { rows: g.rows, cols: g.cols, cellW: g.cellW, cellH: g.cellH, originX: g.labelW, originY: g.headerH });
  const ds = canvas.dataset;
  ds.scrollX = String(v.scrollX);
  ds.scrollY = String(v.scrollY);
  ds.viewW = String(v.viewW);
  ds.viewH = String(v.viewH);
  ds.window = `${w.r0},${w.r1},${w.c0},${w.c1}`;
  ds.mode = d.mode;
  ds.selected = d.selected ? d.selected.join(",") : "";
}
