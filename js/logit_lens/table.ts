// The logit-lens table of LogitLensTable: rows = the residual stream before each layer (L0..) and
// "final", columns = positions. ONE canvas the size of the viewport, sticky inside a scroll
// container whose inner box has the size of the whole table; only the visible window of cells is
// drawn (lib/virtual.ts), again on scroll (one requestAnimationFrame per frame). Row labels and
// column headers (the input tokens) are frozen panes painted on the same canvas.
//
// Each cell: its top-1 token as text (fillText: canvas text cannot inject HTML; whitespace made
// visible like the token strip), shaded by the top-1 probability (mode "top"), the target's
// probability ("target_prob") or its rank on a log scale ("target_rank", rank 0 strongest).
// Cells whose top-1 token changed under an ablation get an accent corner and outline.
//
// For browser tests the canvas (data-testid lw-lens-table) carries its layout (expose.ts).
// `canvas.lwScrollToCell(r, p)` scrolls it into view, redraws, and returns its centre in
// canvas-relative CSS px (what Playwright's click(position=...) takes); `canvas.lwCellCenter(r, p)`
// returns the centre without scrolling, or null when the cell is not fully visible.
// Behind the canvas, a visually hidden table of the drawn window's cells (a11y.ts,
// data-testid lw-lens-cells): each cell's token, id, probability and shade value as data attributes.
//
// This file is the view itself (DOM, pointer and keyboard events, drawing, exports); its parts live
// beside it: layout.ts (geometry, data shape, key moves), scroll.ts (the scroll container as a
// viewport: hit tests, cell centres), frame.ts (the coalesced animation-frame redraw), colors.ts,
// paint.ts (the canvas painting), tooltip.ts, legend.ts, svg.ts (the SVG export), expose.ts (the
// test attributes), a11y.ts (the hidden cell table).

import { canvasToPNG, devicePixelRatioOf, get2d, now, setupCanvas } from "../lib/canvas";
import { h, hasFocus, listen } from "../lib/dom";
import type { Palette } from "../lib/theme";
import { placeTooltip } from "../lib/tooltip";
import type { VGrid, VHit, VWindow, Viewport } from "../lib/virtual";
import { contentSize, visibleWindow, windowCells } from "../lib/virtual";
import { LensCellTable } from "./a11y";
import type { LensColors } from "./colors";
import { defaultLensColors, lensCellFill, lensColors } from "./colors";
import type { Shade } from "./data";
import { shadeValues, top1, vocabToken } from "./data";
import { exposeLens } from "./expose";
import type { LensCanvas, LensData, LensTableOptions } from "./layout";
import { CELL_H, CELL_W, EMPTY_DATA, HEADER_H, LABEL_W, defaultRowLabel, exportView, keyMove } from "./layout";
import { lensLegend } from "./legend";
import type { LensLook } from "./paint";
import { paintLens } from "./paint";
import { FrameTimer } from "./frame";
import { cellCenterIn, hitAtEvent, inTable, scrollCellIntoView, scrollerViewport } from "./scroll";
import { lensSVG } from "./svg";
import { lensCellSummary, lensTooltip } from "./tooltip";

export type { LensCanvas, LensData, LensTableOptions } from "./layout";
export { CELL_H, CELL_W, EMPTY_DATA, FALLBACK_VIEW_H, FALLBACK_VIEW_W, FULL_EXPORT_CELLS, HEADER_H, LABEL_W, MONO, defaultRowLabel, fitText } from "./layout";

export class LensTableView {
  readonly el: HTMLElement;
  readonly scroller: HTMLElement;
  readonly inner: HTMLElement;
  readonly canvas: LensCanvas;
  readonly tooltip: HTMLElement;
  readonly legend: HTMLElement;
  readonly empty: HTMLElement;
  readonly cells = new LensCellTable();
  private data: LensData = EMPTY_DATA;
  private shade: Shade = { values: new Float32Array(0), maxRank: 0, ok: true };
  private palette: Palette | null = null;
  private colors: LensColors = defaultLensColors();
  private hover: VHit | null = null;
  /** Keyboard cursor (row, pos), or null. */
  private cursor: [number, number] | null = null;
  private textCache = new Map<number, string>();
  private headerCache = new Map<number, string>();
  private textKey = "";
  private readonly frame = new FrameTimer(() => this.canvas.ownerDocument?.defaultView, () => this.draw());
  private readonly offs: Array<() => void> = [];
  /** The last draw: time in ms and number of cells painted (for tests and the perf budget). */
  lastDrawMs = 0;
  lastDrawnCells = 0;
  lastWindow: VWindow = { r0: 0, r1: 0, c0: 0, c1: 0 };

  constructor(private readonly opts: LensTableOptions) {
    this.canvas = h("canvas", { class: "lw-ll-canvas", testid: "lw-lens-table" }) as LensCanvas;
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute(
      "aria-label",
      "Logit lens: rows are the residual stream before each layer, columns are positions; each cell shows the top predicted token. Arrow keys move, Enter selects.",
    );
    this.inner = h("div", { class: "lw-ll-inner" }, [this.canvas]);
    this.scroller = h("div", { class: "lw-ll-scroll", testid: "lw-lens-scroll" }, [this.inner]);
    this.tooltip = h("div", { class: "lw-tooltip lw-ll-tooltip", testid: "lw-tooltip", attrs: { role: "tooltip" } });
    this.tooltip.hidden = true;
    this.legend = h("div", { class: "lw-legend lw-ll-legend", testid: "lw-lens-legend" });
    this.empty = h("div", { class: "lw-empty", testid: "lw-empty", text: "Run a prompt to see what each layer predicts." });
    this.el = h("div", { class: "lw-ll-wrap" }, [this.empty, this.scroller, this.tooltip, this.legend, this.cells.el]);
    this.canvas.setAttribute("aria-details", this.cells.table.id);

    this.canvas.lwScrollToCell = (r, p) => this.scrollToCell(r, p);
    this.canvas.lwCellCenter = (r, p) => this.cellCenter(r, p);

    listen(this.offs, this.scroller, "scroll", () => {
      // What is under the pointer moved: forget the hover until the next mousemove.
      this.hover = null;
      this.hideTooltip();
      this.schedule();
    }, { passive: true });
    listen(this.offs, this.canvas, "focus", () => this.schedule());
    listen(this.offs, this.canvas, "blur", () => this.schedule());
    listen(this.offs, this.canvas, "mousemove", (ev) => this.setHover(this.hitAt(ev)));
    listen(this.offs, this.canvas, "mouseleave", () => this.setHover(null));
    listen(this.offs, this.canvas, "click", (ev) => {
      const hit = this.hitAt(ev);
      if (!hit) return;
      if (hit.kind === "cell") {
        if (ev.shiftKey || ev.altKey) {
          const t = this.data.table;
          if (t) {
            const id = top1(t, hit.row, hit.col);
            this.opts.onTarget(vocabToken(this.data.vocab, id), id);
          }
        } else {
          this.cursor = [hit.row, hit.col];
          this.opts.onSelect(hit.row, hit.col);
        }
      } else if (hit.kind === "col-header") {
        const tok = this.data.tokens[hit.col];
        if (tok !== undefined) this.opts.onTarget(tok);
      }
    });
    listen(this.offs, this.canvas, "keydown", (ev) => this.onKey(ev));
  }

  // ---- geometry -------------------------------------------------------------------------------

  get grid(): VGrid {
    const t = this.data.table;
    return { rows: t?.R ?? 0, cols: t?.T ?? 0, cellW: CELL_W, cellH: CELL_H, labelW: LABEL_W, headerH: HEADER_H };
  }

  /** The viewport: the scroll container's client box (fallback before layout), never past the content. */
  viewport(): Viewport {
    return scrollerViewport(this.grid, this.scroller);
  }

  private hitAt(ev: MouseEvent): VHit | null {
    if (!this.data.table) return null;
    return hitAtEvent(this.grid, this.viewport(), this.canvas, ev);
  }

  /** Centre of cell (r, p) in canvas-relative CSS px, or null when it is not fully in view. */
  cellCenter(row: number, pos: number): { x: number; y: number } | null {
    const g = this.grid;
    return inTable(g, row, pos) ? cellCenterIn(g, this.viewport(), row, pos, true) : null;
  }

  /** Scroll cell (r, p) into view (least movement), redraw now, and return its centre (canvas CSS px). */
  scrollToCell(row: number, pos: number): { x: number; y: number } | null {
    const g = this.grid;
    if (!inTable(g, row, pos)) return null;
    scrollCellIntoView(g, this.viewport(), this.scroller, row, pos);
    this.draw();
    this.cells.flush();
    return cellCenterIn(g, this.viewport(), row, pos, false);
  }

  // ---- data -----------------------------------------------------------------------------------

  setData(d: LensData): void {
    const t = d.table;
    const tableChanged = t !== this.data.table;
    if (tableChanged || d.vocab !== this.data.vocab) this.textCache.clear();
    if (tableChanged || d.tokens !== this.data.tokens) this.headerCache.clear();
    this.data = d;
    this.shade = t ? shadeValues(t, d.stats, d.mode) : { values: new Float32Array(0), maxRank: 0, ok: true };
    if (tableChanged) {
      this.hover = null;
      this.cursor = null;
      this.hideTooltip();
    }
    const c = contentSize(this.grid);
    this.inner.style.width = `${c.width}px`;
    this.inner.style.height = `${c.height}px`;
    this.renderLegend();
  }

  getData(): LensData {
    return this.data;
  }

  setPalette(p: Palette): void {
    this.palette = p;
    this.colors = lensColors(p);
    this.renderLegend();
  }

  /** The colour of the value a cell is shaded by (for tests and the SVG export). */
  cellFill(row: number, pos: number): string {
    return lensCellFill(this.colors, this.shade.values[row * this.grid.cols + pos]);
  }

  private renderLegend(): void {
    const d = this.data;
    if (!d.table) {
      this.legend.hidden = true;
      return;
    }
    this.legend.replaceChildren(...lensLegend(this.look()));
    this.legend.dataset.mode = d.mode;
    this.legend.hidden = false;
  }

  private hideTooltip(): void {
    this.tooltip.hidden = true;
  }

  private setHover(hit: VHit | null): void {
    const same = JSON.stringify(hit) === JSON.stringify(this.hover);
    if (same) return;
    this.hover = hit;
    this.renderTooltip();
    this.schedule();
  }

  /** Tooltip text lines for cell (r, p) (also used as the SVG <title>). */
  cellSummary(row: number, pos: number): string {
    return lensCellSummary(this.look(), row, pos);
  }

  rowLabel(r: number): string {
    return this.data.rowLabels[r] ?? defaultRowLabel(r, this.grid.rows);
  }

  /** What painting, the tooltip, the legend and the SVG export read. */
  private look(): LensLook {
    return {
      data: this.data,
      grid: this.grid,
      palette: this.palette,
      shade: this.shade,
      ...this.colors,
      rowLabel: (r) => this.rowLabel(r),
    };
  }

  private renderTooltip(): void {
    const hit = this.hover;
    const d = this.data;
    const t = d.table;
    if (!hit || !t || hit.kind === "corner") {
      this.hideTooltip();
      return;
    }
    const v = this.viewport();
    const { children, cell, anchor } = lensTooltip(this.look(), hit, v);
    this.tooltip.dataset.cell = cell;
    this.tooltip.replaceChildren(...children);
    this.tooltip.hidden = false;
    const x0 = this.scroller.offsetLeft + this.canvasOffset().x;
    const y0 = this.scroller.offsetTop + this.canvasOffset().y;
    placeTooltip(this.tooltip, { x: x0 + anchor.x, y: y0 + anchor.y, w: anchor.w, h: anchor.h }, this.el.clientWidth || Infinity, 8, 200);
  }

  /** The canvas' offset inside the scroller box (sticky: 0, 0 plus the border). */
  private canvasOffset(): { x: number; y: number } {
    return { x: this.scroller.clientLeft || 0, y: this.scroller.clientTop || 0 };
  }

  // ---- keyboard -------------------------------------------------------------------------------

  private onKey(ev: KeyboardEvent): void {
    const g = this.grid;
    if (!g.rows || !g.cols) return;
    const cur = this.cursor ?? this.data.selected ?? [0, 0];
    const next = keyMove(ev.key, cur, g.rows, g.cols);
    if (next) {
      ev.preventDefault();
      const [r, c] = next;
      this.cursor = [r, c];
      this.canvas.dataset.cursor = `${r},${c}`;
      this.scrollToCell(r, c);
    } else if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      this.cursor = cur;
      this.opts.onSelect(cur[0], cur[1]);
    }
  }

  // ---- drawing --------------------------------------------------------------------------------

  /** Redraw on the next animation frame (coalesced). */
  schedule(): void {
    this.frame.schedule();
  }

  /** Draw the visible window now. */
  draw(): void {
    this.frame.cancel();
    const t0 = now();
    const d = this.data;
    const has = !!d.table && d.table.R > 0 && d.table.T > 0;
    this.empty.hidden = has;
    this.scroller.hidden = !has;
    if (!has) {
      this.hideTooltip();
      this.legend.hidden = true;
      this.lastDrawnCells = 0;
      this.cells.update(d, this.shade, { r0: 0, r1: 0, c0: 0, c1: 0 }, (r) => this.rowLabel(r));
      return;
    }
    const g = this.grid;
    const v = this.viewport();
    const win = visibleWindow(g, v);
    this.lastWindow = win;
    exposeLens(this.canvas, g, v, win, d);
    this.cells.update(d, this.shade, win, (r) => this.rowLabel(r));
    const ctx = setupCanvas(this.canvas, v.viewW, v.viewH);
    if (!ctx) {
      this.lastDrawnCells = windowCells(win);
      this.finishDraw(t0);
      return;
    }
    this.paint(ctx, devicePixelRatioOf(this.canvas), v, win, true);
    this.finishDraw(t0);
  }

  private finishDraw(t0: number): void {
    this.lastDrawMs = now() - t0;
    this.canvas.dataset.drawMs = this.lastDrawMs.toFixed(2);
    this.canvas.dataset.drawnCells = String(this.lastDrawnCells);
  }

  private measureKey(dpr: number): string {
    return `${dpr}:${CELL_W}:${this.palette?.font ?? ""}`;
  }

  /**
   * Paint the window `win` of the table for viewport `v` into `ctx` (device px = CSS px * dpr).
   * `interactive` adds hover and keyboard-cursor outlines (not in exports).
   */
  private paint(ctx: CanvasRenderingContext2D, dpr: number, v: Viewport, win: VWindow, interactive: boolean): void {
    const key = this.measureKey(dpr);
    if (key !== this.textKey) {
      this.textKey = key;
      this.textCache.clear();
      this.headerCache.clear();
    }
    this.lastDrawnCells = paintLens(ctx, dpr, v, win, interactive, {
      ...this.look(),
      hover: this.hover,
      cursor: this.cursor,
      focused: hasFocus(this.canvas),
      textCache: this.textCache,
      headerCache: this.headerCache,
    });
  }

  // ---- export ---------------------------------------------------------------------------------

  /** The window an export shows: the whole table when small, else what is on screen. */
  exportWindow(): { v: Viewport; win: VWindow; full: boolean } {
    return exportView(this.grid, () => this.viewport());
  }

  /**
   * PNG of the export window (without hover or cursor outlines) at up to 2x, or null where canvas
   * export is unavailable. The scale drops for a big window so the image stays under ~16 M pixels.
   */
  toPNG(): Promise<Blob | null> {
    if (!this.data.table) return Promise.resolve(null);
    const { v, win } = this.exportWindow();
    const dpr = Math.max(1, Math.min(2, Math.sqrt(16e6 / Math.max(1, v.viewW * v.viewH))));
    const c = this.canvas.ownerDocument.createElement("canvas");
    c.width = Math.round(v.viewW * dpr);
    c.height = Math.round(v.viewH * dpr);
    const ctx = get2d(c);
    if (!ctx) return Promise.resolve(null);
    // (paint re-measures token text at the export's scale; the next screen draw re-measures again.)
    this.paint(ctx, dpr, v, win, false);
    return canvasToPNG(c);
  }

  /** A self-contained SVG of the export window: vector cells, token text, labels, legend. */
  toSVG(title: string): string {
    return lensSVG(this.look(), title, this.exportWindow(), (r, c) => this.cellSummary(r, c));
  }

  destroy(): void {
    this.frame.cancel();
    this.cells.cancel();
    this.offs.splice(0).forEach((f) => f());
    this.el.remove();
  }
}
