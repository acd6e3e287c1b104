// The logit-lens table's scroll container as a viewport onto the virtualised grid (lib/virtual.ts):
// its client box and scroll offsets clamped to the content (a fallback size before layout), the
// cell or frozen pane under a mouse event on the sticky canvas, a cell's centre in canvas-relative
// CSS px (what the browser tests click), and scrolling a cell into view. table.ts draws.

import type { VGrid, VHit, Viewport } from "../lib/virtual";
import { cellViewRect, contentSize, hitTestView, maxScroll, scrollToShow } from "../lib/virtual";
import { FALLBACK_VIEW_H, FALLBACK_VIEW_W } from "./layout";

/** The viewport: the scroll container's client box (fallback before layout), never past the content. */
export function scrollerViewport(g: VGrid, scroller: HTMLElement): Viewport {
  const c = contentSize(g);
  const cw = scroller.clientWidth;
  const ch = scroller.clientHeight;
  const viewW = Math.max(1, Math.min(c.width, cw > 0 ? cw : FALLBACK_VIEW_W));
  const viewH = Math.max(1, Math.min(c.height, ch > 0 ? ch : FALLBACK_VIEW_H));
  const m = maxScroll(g, viewW, viewH);
  return {
    scrollX: Math.min(Math.max(0, scroller.scrollLeft || 0), m.x),
    scrollY: Math.min(Math.max(0, scroller.scrollTop || 0), m.y),
    viewW,
    viewH,
  };
}

/** What is under the mouse event `ev` on `canvas` (viewport `v`), or null outside the viewport. */
export function hitAtEvent(g: VGrid, v: Viewport, canvas: HTMLElement, ev: MouseEvent): VHit | null {
  const rect = canvas.getBoundingClientRect();
  const x = ev.clientX - rect.left;
  const y = ev.clientY - rect.top;
  if (x >= v.viewW || y >= v.viewH) return null;
  return hitTestView(g, v.scrollX, v.scrollY, x, y);
}

/** Whether (row, pos) is a cell of the table. */
export function inTable(g: VGrid, row: number, pos: number): boolean {
  return row >= 0 && row < g.rows && pos >= 0 && pos < g.cols;
}

/** Centre of cell (r, p) in canvas-relative CSS px; with `whole`, null unless it is fully in view. */
export function cellCenterIn(g: VGrid, v: Viewport, row: number, pos: number, whole: boolean): { x: number; y: number } | null {
  const r = cellViewRect(g, v.scrollX, v.scrollY, row, pos);
  if (whole && (r.x < g.labelW || r.y < g.headerH || r.x + r.w > v.viewW || r.y + r.h > v.viewH)) return null;
  return { x: r.x + r.w / 2, y: r.y + r.h / 2 };
}

/** Scroll `scroller` (viewport `v`) so that cell (r, p) is in view, with the least movement. */
export function scrollCellIntoView(g: VGrid, v: Viewport, scroller: HTMLElement, row: number, pos: number): void {
  const s = scrollToShow(g, v, row, pos);
  if (scroller.scrollLeft !== s.x) scroller.scrollLeft = s.x;
  if (scroller.scrollTop !== s.y) scroller.scrollTop = s.y;
}
