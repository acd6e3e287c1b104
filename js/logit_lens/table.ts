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
// For browser tests the canvas (data-testid lw-lens-table) carries its layout:
//   data-rows, data-cols, data-cell-w, data-cell-h,
//   data-origin-x, data-origin-y   content position of cell (0, 0)'s top-left corner
//   data-scroll-x, data-scroll-y   the scroll offsets of the last draw
//   data-view-w, data-view-h       the canvas (viewport) size in CSS px
//   data-window="r0,r1,c0,c1"      the rows [r0, r1) and columns [c0, c1) drawn
// Cell (r, p) is at canvas-relative CSS px (originX + p * cellW - scrollX, originY + r * cellH - scrollY).
// `canvas.lwScrollToCell(r, p)` scrolls it into view, redraws, and returns its centre in
// canvas-relative CSS px (what Playwright's click(position=...) takes); `canvas.lwCellCenter(r, p)`
// returns the centre without scrolling, or null when the cell is not fully visible.
// Behind the canvas, a visually hidden table of the drawn window's cells (a11y.ts,
// data-testid lw-lens-cells): each cell's token, id, probability and shade value as data attributes.

import type { Rect } from "../lib/canvas";
import { canvasToPNG, devicePixelRatioOf, exposeGrid, get2d, now, setupCanvas } from "../lib/canvas";
import type { ColorScale, RGB } from "../lib/colors";
import { MISSING, contrastText, gradientCss, rgbCss, sequential } from "../lib/colors";
import { h, hasFocus, listen } from "../lib/dom";
import { fmtPct } from "../lib/format";
import { escapeXml, r2, svgDocument, svgLegend } from "../lib/svg";
import type { Palette } from "../lib/theme";
import { displayToken } from "../lib/tokens";
import { placeTooltip } from "../lib/tooltip";
import type { VGrid, VHit, VWindow, Viewport } from "../lib/virtual";
import { cellViewRect, contentSize, hitTestView, maxScroll, scrollToShow, visibleWindow, windowCells } from "../lib/virtual";
import { LensCellTable } from "./a11y";
import type { LensMode, Shade, TargetStats, TopTable } from "./data";
import { cellTop, shadeValues, top1, vocabToken } from "./data";

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
  private scale: ColorScale = sequential("light");
  private fillLut: string[] = [];
  private textLut: string[] = [];
  private missingCss = rgbCss(MISSING.light);
  private hover: VHit | null = null;
  /** Keyboard cursor (row, pos), or null. */
  private cursor: [number, number] | null = null;
  private textCache = new Map<number, string>();
  private headerCache = new Map<number, string>();
  private textKey = "";
  private frame = 0;
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
    const c = contentSize(this.grid);
    const cw = this.scroller.clientWidth;
    const ch = this.scroller.clientHeight;
    const viewW = Math.max(1, Math.min(c.width, cw > 0 ? cw : FALLBACK_VIEW_W));
    const viewH = Math.max(1, Math.min(c.height, ch > 0 ? ch : FALLBACK_VIEW_H));
    const m = maxScroll(this.grid, viewW, viewH);
    return {
      scrollX: Math.min(Math.max(0, this.scroller.scrollLeft || 0), m.x),
      scrollY: Math.min(Math.max(0, this.scroller.scrollTop || 0), m.y),
      viewW,
      viewH,
    };
  }

  private hitAt(ev: MouseEvent): VHit | null {
    if (!this.data.table) return null;
    const rect = this.canvas.getBoundingClientRect();
    const v = this.viewport();
    const x = ev.clientX - rect.left;
    const y = ev.clientY - rect.top;
    if (x >= v.viewW || y >= v.viewH) return null;
    return hitTestView(this.grid, v.scrollX, v.scrollY, x, y);
  }

  /** Centre of cell (r, p) in canvas-relative CSS px, or null when it is not fully in view. */
  cellCenter(row: number, pos: number): { x: number; y: number } | null {
    const g = this.grid;
    if (!(row >= 0 && row < g.rows && pos >= 0 && pos < g.cols)) return null;
    const v = this.viewport();
    const r = cellViewRect(g, v.scrollX, v.scrollY, row, pos);
    if (r.x < g.labelW || r.y < g.headerH || r.x + r.w > v.viewW || r.y + r.h > v.viewH) return null;
    return { x: r.x + r.w / 2, y: r.y + r.h / 2 };
  }

  /** Scroll cell (r, p) into view (least movement), redraw now, and return its centre (canvas CSS px). */
  scrollToCell(row: number, pos: number): { x: number; y: number } | null {
    const g = this.grid;
    if (!(row >= 0 && row < g.rows && pos >= 0 && pos < g.cols)) return null;
    const s = scrollToShow(g, this.viewport(), row, pos);
    if (this.scroller.scrollLeft !== s.x) this.scroller.scrollLeft = s.x;
    if (this.scroller.scrollTop !== s.y) this.scroller.scrollTop = s.y;
    this.draw();
    this.cells.flush();
    const v = this.viewport();
    const r = cellViewRect(g, v.scrollX, v.scrollY, row, pos);
    return { x: r.x + r.w / 2, y: r.y + r.h / 2 };
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
    this.scale = sequential(p.theme, [0, 1], "blues");
    this.fillLut = [];
    this.textLut = [];
    for (let i = 0; i < 256; i++) {
      const rgb: RGB = [this.scale.lut[i * 4], this.scale.lut[i * 4 + 1], this.scale.lut[i * 4 + 2]];
      this.fillLut.push(rgbCss(rgb));
      this.textLut.push(contrastText(rgb));
    }
    this.missingCss = rgbCss(MISSING[p.theme]);
    this.renderLegend();
  }

  /** The colour of the value a cell is shaded by (for tests and the SVG export). */
  cellFill(row: number, pos: number): string {
    const v = this.shade.values[row * this.grid.cols + pos];
    const i = this.scale.lutIndex(v);
    return i < 0 ? this.missingCss : this.fillLut[i] ?? this.scale.css(v);
  }

  // ---- legend, tooltip ------------------------------------------------------------------------

  private renderLegend(): void {
    const d = this.data;
    if (!d.table) {
      this.legend.hidden = true;
      return;
    }
    const bar = h("span", { class: "lw-legend-bar" });
    bar.style.background = gradientCss(this.scale);
    const parts: Node[] = [];
    if (d.mode === "top") {
      parts.push(h("span", { class: "lw-legend-label", text: "top-1 probability" }), h("span", { class: "lw-legend-value", text: "0" }), bar, h("span", { class: "lw-legend-value", text: "1" }));
    } else if (!this.shade.ok) {
      parts.push(h("span", { class: "lw-legend-label", testid: "lw-lens-no-target", text: "Set a target token to shade cells by it." }));
    } else if (d.mode === "target_prob") {
      parts.push(h("span", { class: "lw-legend-label", text: "target probability" }), h("span", { class: "lw-legend-value", text: "0" }), bar, h("span", { class: "lw-legend-value", text: "1" }));
    } else {
      parts.push(
        h("span", { class: "lw-legend-label", text: "target rank (log scale)" }),
        h("span", { class: "lw-legend-value", text: String(this.shade.maxRank) }),
        bar,
        h("span", { class: "lw-legend-value", text: "0" }),
      );
    }
    if (d.changed) {
      const sw = h("span", { class: "lw-ll-changed-swatch", attrs: { "aria-hidden": "true" } });
      parts.push(h("span", { class: "lw-ll-changed-legend", testid: "lw-changed-legend" }, [sw, h("span", { text: "changed vs original" })]));
    }
    parts.push(h("span", { class: "lw-ll-hint", text: "click: details · shift-click or click a column token: set as target" }));
    this.legend.replaceChildren(...parts);
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
    const d = this.data;
    const t = d.table;
    if (!t) return "";
    const lines = [
      `${this.rowLabel(row)}  ${d.rowHooks[row] ?? ""}`.trim(),
      `pos ${pos} ${JSON.stringify(d.tokens[pos] ?? "")}`,
      ...cellTop(t, row, pos, 5).map((e, i) => `${i + 1}. ${JSON.stringify(vocabToken(d.vocab, e.id))} ${fmtPct(e.prob)}`),
    ];
    const st = this.targetAt(row, pos);
    if (st) lines.push(`target ${JSON.stringify(d.targetText)}: ${fmtPct(st.prob)}, rank ${Number.isFinite(st.rank) ? st.rank : "–"}`);
    if (d.changed?.[row * t.T + pos]) lines.push("changed vs original");
    return lines.join("\n");
  }

  rowLabel(r: number): string {
    return this.data.rowLabels[r] ?? defaultRowLabel(r, this.grid.rows);
  }

  private targetAt(row: number, pos: number): { prob: number; rank: number } | null {
    const d = this.data;
    const s = d.stats;
    if (!s || d.target < 0 || !d.table) return null;
    const i = row * d.table.T + pos;
    return { prob: s.prob ? s.prob[i] : NaN, rank: s.rank ? s.rank[i] : NaN };
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
    const g = this.grid;
    let anchor: Rect;
    const children: Node[] = [];
    if (hit.kind === "cell") {
      const { row, col } = hit;
      children.push(
        h("div", { class: "lw-tooltip-title", text: `${this.rowLabel(row)} · pos ${col} “${displayToken(d.tokens[col] ?? "")}”` }),
        h("div", { class: "lw-tooltip-hook", text: d.rowHooks[row] ?? "" }),
      );
      cellTop(t, row, col, 5).forEach((e, i) => {
        const r = h("div", { class: "lw-tooltip-row lw-ll-tip-top" + (e.id === d.target ? " lw-current" : "") }, [
          h("span", { class: "lw-ll-tip-tok", text: `${i + 1}. ${displayToken(vocabToken(d.vocab, e.id))}` }),
          h("span", { class: "lw-tooltip-value", text: fmtPct(e.prob) }),
        ]);
        r.dataset.tokenId = String(e.id);
        r.dataset.value = String(e.prob);
        children.push(r);
      });
      const st = this.targetAt(row, col);
      if (st) {
        const r = h("div", { class: "lw-tooltip-row lw-ll-tip-target", testid: "lw-tooltip-target" }, [
          h("span", { text: `target “${displayToken(d.targetText)}”` }),
          h("span", { class: "lw-tooltip-value", text: `${fmtPct(st.prob)} · rank ${Number.isFinite(st.rank) ? st.rank : "–"}` }),
        ]);
        r.dataset.prob = String(st.prob);
        r.dataset.rank = String(st.rank);
        children.push(r);
      }
      if (d.changed?.[row * t.T + col]) children.push(h("div", { class: "lw-ll-tip-changed", text: "◤ changed vs original" }));
      this.tooltip.dataset.cell = `${row},${col}`;
      anchor = cellViewRect(g, v.scrollX, v.scrollY, row, col);
    } else if (hit.kind === "col-header") {
      const col = hit.col;
      children.push(
        h("div", { class: "lw-tooltip-title", text: `pos ${col} “${displayToken(d.tokens[col] ?? "")}”` }),
        h("div", { class: "lw-ll-tip-hint", text: "click: set this token as the target" }),
      );
      this.tooltip.dataset.cell = `header,${col}`;
      const r = cellViewRect(g, v.scrollX, v.scrollY, 0, col);
      anchor = { x: r.x, y: 0, w: r.w, h: g.headerH };
    } else {
      const row = hit.row;
      children.push(
        h("div", { class: "lw-tooltip-title", text: this.rowLabel(row) }),
        h("div", { class: "lw-tooltip-hook", text: d.rowHooks[row] ?? "" }),
      );
      this.tooltip.dataset.cell = `row,${row}`;
      const r = cellViewRect(g, v.scrollX, v.scrollY, row, 0);
      anchor = { x: 0, y: r.y, w: g.labelW, h: r.h };
    }
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
    const moves: Record<string, [number, number]> = {
      ArrowUp: [-1, 0],
      ArrowDown: [1, 0],
      ArrowLeft: [0, -1],
      ArrowRight: [0, 1],
      Home: [0, -Infinity],
      End: [0, Infinity],
    };
    const m = moves[ev.key];
    const cur = this.cursor ?? this.data.selected ?? [0, 0];
    if (m) {
      ev.preventDefault();
      const r = Math.max(0, Math.min(g.rows - 1, cur[0] + m[0]));
      const c = Math.max(0, Math.min(g.cols - 1, cur[1] + (Number.isFinite(m[1]) ? m[1] : m[1] > 0 ? g.cols : -g.cols)));
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
    if (this.frame) return;
    const win = this.canvas.ownerDocument?.defaultView;
    const raf = win?.requestAnimationFrame?.bind(win);
    const run = () => {
      this.frame = 0;
      this.draw();
    };
    this.frame = raf ? raf(run) : (setTimeout(run, 16) as unknown as number);
  }

  private cancelFrame(): void {
    if (!this.frame) return;
    const win = this.canvas.ownerDocument?.defaultView;
    if (win?.cancelAnimationFrame) win.cancelAnimationFrame(this.frame);
    else clearTimeout(this.frame);
    this.frame = 0;
  }

  /** Draw the visible window now. */
  draw(): void {
    this.cancelFrame();
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
    this.expose(v, win);
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

  private expose(v: Viewport, w: VWindow): void {
    const g = this.grid;
    exposeGrid(this.canvas, { rows: g.rows, cols: g.cols, cellW: g.cellW, cellH: g.cellH, originX: g.labelW, originY: g.headerH });
    const ds = this.canvas.dataset;
    ds.scrollX = String(v.scrollX);
    ds.scrollY = String(v.scrollY);
    ds.viewW = String(v.viewW);
    ds.viewH = String(v.viewH);
    ds.window = `${w.r0},${w.r1},${w.c0},${w.c1}`;
    ds.mode = this.data.mode;
    ds.selected = this.data.selected ? this.data.selected.join(",") : "";
  }

  private measureKey(dpr: number): string {
    return `${dpr}:${CELL_W}:${this.palette?.font ?? ""}`;
  }

  /**
   * Paint the window `win` of the table for viewport `v` into `ctx` (device px = CSS px * dpr).
   * `interactive` adds hover and keyboard-cursor outlines (not in exports).
   */
  private paint(ctx: CanvasRenderingContext2D, dpr: number, v: Viewport, win: VWindow, interactive: boolean): void {
    const d = this.data;
    const t = d.table!;
    const g = this.grid;
    const pal = this.palette;
    const bg = pal?.bg ?? "#ffffff";
    const fg = pal?.fg ?? "#1f2328";
    const muted = pal?.muted ?? "#656d76";
    const accent = pal?.accent ?? "#d4570b";
    const X = (x: number) => Math.round(x * dpr);
    const sx = v.scrollX;
    const sy = v.scrollY;
    const key = this.measureKey(dpr);
    if (key !== this.textKey) {
      this.textKey = key;
      this.textCache.clear();
      this.headerCache.clear();
    }

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
    const vals = this.shade.values;
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
        const li = this.scale.lutIndex(vals[i]);
        ctx.fillStyle = li < 0 ? this.missingCss : this.fillLut[li];
        ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
        const id = t.ids[i * t.k];
        let text = this.textCache.get(id);
        if (text === undefined) {
          text = fitText(displayToken(vocabToken(d.vocab, id)), textW, measure);
          this.textCache.set(id, text);
        }
        ctx.fillStyle = li < 0 ? fg : this.textLut[li];
        ctx.fillText(text, x0 + X(pad), ym);
        if (targetMode && id === d.target) {
          // The top-1 token is the target: underline it.
          ctx.fillRect(x0 + X(pad), y1 - X(3), Math.min(measure(text), x1 - x0 - 2 * X(pad)), Math.max(1, X(1)));
        }
        if (changed && changed[i]) marks.push([x0, y0, x1, y1]);
        n++;
      }
    }
    this.lastDrawnCells = n;

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
      if (this.hover?.kind === "cell") ring([this.hover.row, this.hover.col], fg, 1);
      if (this.cursor && hasFocus(this.canvas)) ring(this.cursor, fg, 1.5);
    }
    // The selection: a thick fg ring (the accent is for the changed-cell marks).
    ring(d.selected, fg, 2.5);

    // Frozen column headers: position (small) and input token.
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, X(v.viewW), X(g.headerH));
    const hoverCol = this.hover && (this.hover.kind === "cell" || this.hover.kind === "col-header") ? this.hover.col : -1;
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
      let text = this.headerCache.get(c);
      if (text === undefined) {
        ctx.font = `${fontPx}px ${MONO}`;
        text = fitText(displayToken(d.tokens[c] ?? ""), textW, measure);
        this.headerCache.set(c, text);
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
    const hoverRow = this.hover && (this.hover.kind === "cell" || this.hover.kind === "row-label") ? this.hover.row : -1;
    for (let r = win.r0; r < win.r1; r++) {
      const y0 = X(g.headerH + r * g.cellH - sy);
      const strong = r === hoverRow || r === selRow;
      ctx.font = `${strong ? "bold " : ""}${fontPx}px ${pal?.font ?? "sans-serif"}`;
      ctx.fillStyle = strong ? fg : muted;
      ctx.fillText(this.rowLabel(r), X(g.labelW - 6), y0 + X(g.cellH) / 2);
    }
    ctx.restore();

    // Corner.
    ctx.textAlign = "left";
    ctx.fillStyle = muted;
    ctx.font = `${Math.round(9 * dpr)}px ${pal?.font ?? "sans-serif"}`;
    ctx.fillText("pos →", X(4), X(9));
    ctx.fillText("layer ↓", X(4), X(23));
  }

  // ---- export ---------------------------------------------------------------------------------

  /** The window an export shows: the whole table when small, else what is on screen. */
  exportWindow(): { v: Viewport; win: VWindow; full: boolean } {
    const g = this.grid;
    if (g.rows * g.cols <= FULL_EXPORT_CELLS) {
      const c = contentSize(g);
      const v = { scrollX: 0, scrollY: 0, viewW: c.width, viewH: c.height };
      return { v, win: visibleWindow(g, v), full: true };
    }
    const v = this.viewport();
    return { v, win: visibleWindow(g, v), full: false };
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
    const d = this.data;
    const t = d.table;
    const g = this.grid;
    const pal = this.palette;
    const fg = pal?.fg ?? "#1f2328";
    const muted = pal?.muted ?? "#656d76";
    const accent = pal?.accent ?? "#d4570b";
    const bg = pal?.bg ?? "#ffffff";
    if (!t) return svgDocument(200, 40, [`<text x="8" y="24" font-size="12" fill="${escapeXml(fg)}">empty</text>`], bg);
    const { win, full } = this.exportWindow();
    const cols = win.c1 - win.c0;
    const rows = win.r1 - win.r0;
    const titleH = 24;
    const ox = g.labelW;
    const oy = titleH + g.headerH;
    const width = Math.max(ox + cols * g.cellW + 8, 280);
    const legendH = 44;
    const height = oy + rows * g.cellH + legendH;
    const charW = 6.6; // 11px monospace advance, for truncation without a canvas
    const fit = (s: string) => fitText(s, g.cellW - 8, (x) => [...x].length * charW);
    const range = full ? "" : ` (rows ${win.r0}–${win.r1 - 1}, positions ${win.c0}–${win.c1 - 1} of ${g.cols})`;
    const body: string[] = [
      `<text x="4" y="16" font-size="13" font-weight="bold" fill="${escapeXml(fg)}">${escapeXml(title + range)}</text>`,
    ];
    // Column headers.
    for (let c = win.c0; c < win.c1; c++) {
      const x = ox + (c - win.c0) * g.cellW + 4;
      body.push(`<text x="${r2(x)}" y="${r2(titleH + 9)}" font-size="9" fill="${escapeXml(muted)}">${c}</text>`);
      body.push(
        `<text x="${r2(x)}" y="${r2(titleH + 24)}" font-size="11" font-family="${escapeXml(MONO)}" fill="${escapeXml(fg)}" xml:space="preserve">` +
          `<title>${escapeXml(`pos ${c} ${JSON.stringify(d.tokens[c] ?? "")}`)}</title>${escapeXml(fit(displayToken(d.tokens[c] ?? "")))}</text>`,
      );
    }
    // Row labels.
    for (let r = win.r0; r < win.r1; r++) {
      const y = oy + (r - win.r0 + 0.5) * g.cellH;
      body.push(
        `<text x="${r2(ox - 6)}" y="${r2(y)}" font-size="11" text-anchor="end" dominant-baseline="central" fill="${escapeXml(muted)}">` +
          `<title>${escapeXml(d.rowHooks[r] ?? "")}</title>${escapeXml(this.rowLabel(r))}</text>`,
      );
    }
    // Cells.
    body.push(`<g font-size="11" font-family="${escapeXml(MONO)}">`);
    const vals = this.shade.values;
    for (let r = win.r0; r < win.r1; r++) {
      for (let c = win.c0; c < win.c1; c++) {
        const x = ox + (c - win.c0) * g.cellW;
        const y = oy + (r - win.r0) * g.cellH;
        const i = r * t.T + c;
        const li = this.scale.lutIndex(vals[i]);
        const fill = li < 0 ? this.missingCss : this.fillLut[li] ?? this.scale.css(vals[i]);
        const textFill = li < 0 ? fg : this.textLut[li] ?? "#000000";
        const tok = displayToken(vocabToken(d.vocab, t.ids[i * t.k]));
        body.push(
          `<g><title>${escapeXml(this.cellSummary(r, c))}</title>` +
            `<rect x="${r2(x)}" y="${r2(y)}" width="${r2(g.cellW - 1)}" height="${r2(g.cellH - 1)}" fill="${fill}"/>` +
            `<text x="${r2(x + 4)}" y="${r2(y + g.cellH / 2)}" dominant-baseline="central" fill="${textFill}" xml:space="preserve">${escapeXml(fit(tok))}</text>`,
        );
        if (d.changed?.[i]) {
          const x1 = x + g.cellW - 1;
          body.push(
            `<polygon points="${r2(x1 - 7)},${r2(y)} ${r2(x1)},${r2(y)} ${r2(x1)},${r2(y + 7)}" fill="${escapeXml(accent)}"/>` +
              `<rect x="${r2(x + 0.75)}" y="${r2(y + 0.75)}" width="${r2(g.cellW - 2.5)}" height="${r2(g.cellH - 2.5)}" fill="none" stroke="${escapeXml(accent)}" stroke-width="1.5"/>`,
          );
        }
        body.push(`</g>`);
      }
    }
    body.push(`</g>`);
    const ly = oy + rows * g.cellH + 10;
    const legend =
      d.mode === "top" ? "top-1 probability" : d.mode === "target_prob" ? `p(${JSON.stringify(d.targetText)})` : `rank of ${JSON.stringify(d.targetText)} (log; right = rank 0)`;
    body.push(...svgLegend(this.scale, ox, ly, 200, legend, fg, "lens"));
    if (d.changed) {
      const x = ox + 220;
      body.push(
        `<polygon points="${r2(x)},${r2(ly)} ${r2(x + 10)},${r2(ly)} ${r2(x + 10)},${r2(ly + 10)}" fill="${escapeXml(accent)}"/>`,
        `<text x="${r2(x + 16)}" y="${r2(ly + 9)}" font-size="10" fill="${escapeXml(fg)}">changed vs original</text>`,
      );
    }
    return svgDocument(width, height, body, bg);
  }

  destroy(): void {
    this.cancelFrame();
    this.cells.cancel();
    this.offs.splice(0).forEach((f) => f());
    this.el.remove();
  }
}
