// Painting of the logit-lens table onto a 2D context: one window of cells (fill by the shade
// value, top-1 token text, target underline, changed-cell marks), the selection / hover / cursor
// rings, and the frozen column headers, row labels and corner. The screen draw and the PNG export
// both call it; it reads the view's state (LensPaintState) and touches nothing else.

import type { Palette } from "../lib/theme";
import { displayToken } from "../lib/tokens";
import type { VGrid, VHit, VWindow, Viewport } from "../lib/virtual";
import type { LensColors } from "./colors";
import type { Shade } from "./data";
import { vocabToken } from "./data";
import type { LensData } from "./layout";
import { MONO, fitText } from "./layout";

/** What painting, the tooltip, the legend and the SVG export read from the view. */
export interface LensLook extends LensColors {
  data: LensData;
  grid: VGrid;
  palette: Palette | null;
  shade: Shade;
  rowLabel: (r: number) => string;
}

/** LensLook plus the interactive state and the text caches a screen draw uses. */
export interface LensPaintState extends LensLook {
  hover: VHit | null;
  /** Keyboard cursor (row, pos), or null. */
  cursor: [number, number] | null;
  /** Whether the canvas has keyboard focus (the cursor ring shows only then). */
  focused: boolean;
  /** Fitted top-1 token text by token id, and fitted header text by position. */
  textCache: Map<number, string>;
  headerCache: Map<number, string>;
}

/**
 * Paint the window `win` of the table for viewport `v` into `ctx` (device px = CSS px * dpr).
 * `interactive` adds hover and keyboard-cursor outlines (not in exports). Returns the number of
 * cells painted.
 */
export function paintLens(ctx: CanvasRenderingContext2D, dpr: number, v: Viewport, win: VWindow, interactive: boolean, s: LensPaintState): number {
  const d = s.data;
  const t = d.table!;
  const g = s.grid;
  const pal = s.palette;
  const bg = pal?.bg ?? "#ffffff";
  const fg = pal?.fg ?? "#1f2328";
  const muted = pal?.muted ?? "#656d76";
  const accent = pal?.accent ?? "#d4570b";
  const X = (x: number) => Math.round(x * dpr);
  const sx = v.scrollX;
  const sy = v.scrollY;

  ctx.fillStyle = bg;
  ctx.fillRect(0, 0, X(v.viewW), X(v.viewH));

  // Cells.
  const fontPx = Math.round(11 * dpr);
  ctx.font = `${fontPx}px ${MONO}`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  const pad = 4;
  const textW = (g.cellW - 2 * pad) * dpr;
  const gapPx = Math.max(1, Math.round(dpr));
  const measure = (s: string) => ctx.measureText(s).width;
  const targetMode = d.mode !== "top" && d.target >= 0;
  const vals = s.shade.values;
  const changed = d.changed;
  const marks: Array<[number, number, number, number]> = [];
  let n = 0;
  for (let r = win.r0; r < win.r1; r++) {
    const y0 = X(g.headerH + r * g.cellH - sy);
    const y1 = X(g.headerH + (r + 1) * g.cellH - sy) - gapPx;
    const ym = (y0 + y1) / 2;
    for (let c = win.c0; c < win.c1; c++) {
      const x0 = X(g.labelW + c * g.cellW - sx);
      const x1 = X(g.labelW + (c + 1) * g.cellW - sx) - gapPx;
      const i = r * t.T + c;
      const li = s.scale.lutIndex(vals[i]);
      ctx.fillStyle = li < 0 ? s.missingCss : s.fillLut[li];
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
      const id = t.ids[i * t.k];
      let text = s.textCache.get(id);
      if (text === undefined) {
        text = fitText(displayToken(vocabToken(d.vocab, id)), textW, measure);
        s.textCache.set(id, text);
      }
      ctx.fillStyle = li < 0 ? fg : s.textLut[li];
      ctx.fillText(text, x0 + X(pad), ym);
      if (targetMode && id === d.target) {
        // The top-1 token is the target: underline it.
        ctx.fillRect(x0 + X(pad), y1 - X(3), Math.min(measure(text), x1 - x0 - 2 * X(pad)), Math.max(1, X(1)));
      }
      if (changed && changed[i]) marks.push([x0, y0, x1, y1]);
      n++;
    }
  }
  const drawn = n;

  // Changed-vs-original markers: an accent corner triangle and an inset outline.
  if (marks.length) {
    const tri = X(7);
    const lw = Math.max(1, X(1.5));
    ctx.fillStyle = accent;
    ctx.strokeStyle = accent;
    ctx.lineWidth = lw;
    for (const [x0, y0, x1, y1] of marks) {
      ctx.beginPath();
      ctx.moveTo(x1 - tri, y0);
      ctx.lineTo(x1, y0);
      ctx.lineTo(x1, y0 + tri);
      ctx.closePath();
      ctx.fill();
      ctx.strokeRect(x0 + lw / 2, y0 + lw / 2, x1 - x0 - lw, y1 - y0 - lw);
    }
  }

  // Outlines: selection (fg, thick), keyboard cursor and hover (fg, thin).
  const ring = (cell: [number, number] | null, color: string, width: number) => {
    if (!cell) return;
    const [r, c] = cell;
    if (r < win.r0 || r >= win.r1 || c < win.c0 || c >= win.c1) return;
    const x0 = X(g.labelW + c * g.cellW - sx);
    const y0 = X(g.headerH + r * g.cellH - sy);
    const lw = Math.max(1, Math.round(width * dpr));
    ctx.strokeStyle = color;
    ctx.lineWidth = lw;
    ctx.strokeRect(x0 - lw / 2, y0 - lw / 2, X(g.cellW) - gapPx + lw, X(g.cellH) - gapPx + lw);
  };
  if (interactive) {
    if (s.hover?.kind === "cell") ring([s.hover.row, s.hover.col], fg, 1);
    if (s.cursor && s.focused) ring(s.cursor, fg, 1.5);
  }
  // The selection: a thick fg ring (the accent is for the changed-cell marks).
  ring(d.selected, fg, 2.5);

  // Frozen column headers: position (small) and input token.
  ctx.fillStyle = bg;
  ctx.fillRect(0, 0, X(v.viewW), X(g.headerH));
  const hoverCol = s.hover && (s.hover.kind === "cell" || s.hover.kind === "col-header") ? s.hover.col : -1;
  const selCol = d.selected ? d.selected[1] : -1;
  const selRow = d.selected ? d.selected[0] : -1;
  ctx.save();
  ctx.beginPath();
  ctx.rect(X(g.labelW), 0, X(v.viewW - g.labelW), X(g.headerH));
  ctx.clip();
  for (let c = win.c0; c < win.c1; c++) {
    const x0 = X(g.labelW + c * g.cellW - sx);
    const strong = c === hoverCol || c === selCol;
    ctx.fillStyle = muted;
    ctx.font = `${Math.round(9 * dpr)}px ${MONO}`;
    ctx.fillText(String(c), x0 + X(pad), X(9));
    let text = s.headerCache.get(c);
    if (text === undefined) {
      ctx.font = `${fontPx}px ${MONO}`;
      text = fitText(displayToken(d.tokens[c] ?? ""), textW, measure);
      s.headerCache.set(c, text);
    }
    ctx.font = `${strong ? "bold " : ""}${fontPx}px ${MONO}`;
    ctx.fillStyle = fg;
    ctx.fillText(text, x0 + X(pad), X(23));
  }
  ctx.restore();
  ctx.fillStyle = pal?.border ?? "#d0d7de";
  ctx.fillRect(X(g.labelW), X(g.headerH) - gapPx, X(v.viewW - g.labelW), gapPx);

  // Frozen row labels.
  ctx.fillStyle = bg;
  ctx.fillRect(0, X(g.headerH), X(g.labelW), X(v.viewH - g.headerH));
  ctx.save();
  ctx.beginPath();
  ctx.rect(0, X(g.headerH), X(g.labelW), X(v.viewH - g.headerH));
  ctx.clip();
  ctx.textAlign = "right";
  const hoverRow = s.hover && (s.hover.kind === "cell" || s.hover.kind === "row-label") ? s.hover.row : -1;
  for (let r = win.r0; r < win.r1; r++) {
    const y0 = X(g.headerH + r * g.cellH - sy);
    const strong = r === hoverRow || r === selRow;
    ctx.font = `${strong ? "bold " : ""}${fontPx}px ${pal?.font ?? "sans-serif"}`;
    ctx.fillStyle = strong ? fg : muted;
    ctx.fillText(s.rowLabel(r), X(g.labelW - 6), y0 + X(g.cellH) / 2);
  }
  ctx.restore();

  // Corner.
  ctx.textAlign = "left";
  ctx.fillStyle = muted;
  ctx.font = `${Math.round(9 * dpr)}px ${pal?.font ?? "sans-serif"}`;
  ctx.fillText("pos →", X(4), X(9));
  ctx.fillText("layer ↓", X(4), X(23));
  return drawn;
}
