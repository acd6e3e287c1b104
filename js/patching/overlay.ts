// What a patching site card paints over its heatmap's coloured cells: empty cells (NaN: not
// computed yet) with a thin outline, hatching over attribution estimates in a map that also has
// exact values, the value in each cell when the cells are big enough, and the hover ring.

import { devicePixelRatioOf, get2d, snap } from "../lib/canvas";
import type { ColorScale } from "../lib/colors";
import { contrastText } from "../lib/colors";
import type { Cell, GridLayout } from "../lib/heatmap";
import { cellRect } from "../lib/heatmap";
import type { Palette } from "../lib/theme";

/** Cells at least this big (CSS px) get their value written in them. */
export const TEXT_MIN_W = 30;
export const TEXT_MIN_H = 14;

/** A value short enough for a cell: 2 decimals, 1 from 10, none from 100. */
export function fmtCell(v: number): string {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export interface OverlaySpec {
  layout: GridLayout;
  rows: number;
  cols: number;
  /** rows x cols values, row-major; NaN = not computed. */
  slice: Float32Array;
  /** rows x cols, nonzero where the value is an attribution estimate (hatched), or null. */
  approxSlice: Float32Array | null;
  scale: ColorScale;
  palette: Palette | null;
  cellW: number;
  cellH: number;
  hover: Cell | null;
}

/** Paint the overlay onto `canvas` (already drawn by the Heatmap with `layout`). */
export function drawOverlay(canvas: HTMLCanvasElement, o: OverlaySpec): void {
  const ctx = get2d(canvas);
  const { rows, cols, slice, approxSlice, layout: l } = o;
  if (!ctx || !rows || !cols) return;
  const dpr = devicePixelRatioOf(canvas);
  const pal = o.palette;
  const bg = pal?.bg ?? "#ffffff";
  const border = pal?.border ?? "#d0d7de";
  const lw = Math.max(1, Math.round(dpr));

  // Empty cells.
  ctx.save();
  ctx.strokeStyle = border;
  ctx.lineWidth = lw;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      if (slice[r * cols + c] === slice[r * cols + c]) continue;
      const b = snap(cellRect(l, r, c), dpr);
      ctx.fillStyle = bg;
      ctx.fillRect(b.x, b.y, b.w, b.h);
      if (b.w > 2 * lw && b.h > 2 * lw) ctx.strokeRect(b.x + lw / 2, b.y + lw / 2, b.w - lw, b.h - lw);
    }
  }
  ctx.restore();

  // Hatching over attribution estimates in a map that also has exact values.
  if (approxSlice) {
    ctx.save();
    ctx.beginPath();
    let any = false;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        if (!approxSlice[r * cols + c]) continue;
        const b = snap(cellRect(l, r, c), dpr);
        ctx.rect(b.x, b.y, b.w, b.h);
        any = true;
      }
    }
    if (any) {
      ctx.clip();
      ctx.beginPath();
      const W = canvas.width;
      const H = canvas.height;
      const step = Math.max(3, Math.round(4 * dpr));
      for (let k = -H; k < W; k += step) {
        ctx.moveTo(k, H);
        ctx.lineTo(k + H, 0);
      }
      ctx.strokeStyle = bg;
      ctx.globalAlpha = 0.6;
      ctx.lineWidth = lw;
      ctx.stroke();
    }
    ctx.restore();
  }

  // Values in the cells when they fit.
  if (o.cellW >= TEXT_MIN_W && o.cellH >= TEXT_MIN_H) {
    ctx.save();
    ctx.font = `${Math.round(Math.min(11, o.cellH * 0.6) * dpr)}px ${pal?.font ?? "sans-serif"}`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = slice[r * cols + c];
        if (!Number.isFinite(v)) continue;
        const cr = cellRect(l, r, c);
        ctx.fillStyle = contrastText(o.scale.rgb(v));
        ctx.fillText(fmtCell(v), (cr.x + cr.w / 2) * dpr, (cr.y + cr.h / 2) * dpr);
      }
    }
    ctx.restore();
  }

  // Hover ring.
  const hv = o.hover;
  if (hv && hv.row < rows && hv.col < cols) {
    const b = snap(cellRect(l, hv.row, hv.col), dpr);
    ctx.save();
    ctx.strokeStyle = pal?.fg ?? "#1f2328";
    ctx.lineWidth = lw;
    ctx.strokeRect(b.x - lw / 2, b.y - lw / 2, b.w + lw, b.h + lw);
    ctx.restore();
  }
}
