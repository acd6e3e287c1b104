// A canvas heatmap: rows x cols of values -> coloured cells, crisp at any devicePixelRatio, with
// hit-testing (CSS px -> cell), hover/click callbacks, highlighted row/column/cell and PNG/SVG
// export. Used for the attention pattern (query x key) and the patching heatmap (layer x position).
// The grid geometry lives in `GridLayout` and is exposed on the canvas as data attributes so
// browser tests can click a cell: centre of (r, c) = origin + c * (cell + gap) + cell / 2.
// The SVG export is built in heatmap_svg.ts.

import type { GridGeometry, Rect } from "./canvas";
import { canvasToPNG, devicePixelRatioOf, exposeGrid, pixelCanvas, pixelsDataUrl, setupCanvas, snap } from "./canvas";
import type { ColorScale } from "./colors";
import { listen } from "./dom";
import type { HeatmapSvgOptions } from "./heatmap_svg";
import { heatmapSVG } from "./heatmap_svg";

export type { HeatmapSvgOptions } from "./heatmap_svg";

/** Rows x cols cells of cellW x cellH CSS px with cell (0, 0) at (originX, originY) in the canvas. */
export interface GridLayout extends GridGeometry {
  /** Space between cells in CSS px. */
  gap: number;
  /** Canvas size in CSS px. */
  width: number;
  height: number;
}

export interface Cell {
  row: number;
  col: number;
}

export interface Highlight {
  row?: number | null;
  col?: number | null;
  cell?: Cell | null;
}

/** A layout for rows x cols cells with the given margins; width/height include the margins. */
export function gridLayout(
  rows: number,
  cols: number,
  cellW: number,
  cellH = cellW,
  gap = 0,
  originX = 0,
  originY = 0,
  marginRight = 0,
  marginBottom = 0,
): GridLayout {
  const spanW = cols > 0 ? cols * cellW + (cols - 1) * gap : 0;
  const spanH = rows > 0 ? rows * cellH + (rows - 1) * gap : 0;
  return {
    rows,
    cols,
    cellW,
    cellH,
    gap,
    originX,
    originY,
    width: originX + spanW + marginRight,
    height: originY + spanH + marginBottom,
  };
}

/** The cell under (x, y) in CSS px relative to the canvas' top-left corner; null outside or in a gap. */
export function hitTest(l: GridLayout, x: number, y: number): Cell | null {
  const fx = x - l.originX;
  const fy = y - l.originY;
  if (!(fx >= 0 && fy >= 0)) return null;
  const sx = l.cellW + l.gap;
  const sy = l.cellH + l.gap;
  const col = Math.floor(fx / sx);
  const row = Math.floor(fy / sy);
  if (col >= l.cols || row >= l.rows) return null;
  if (fx - col * sx >= l.cellW || fy - row * sy >= l.cellH) return null;
  return { row, col };
}

/** The rectangle of a cell in CSS px. */
export function cellRect(l: GridLayout, row: number, col: number): Rect {
  return { x: l.originX + col * (l.cellW + l.gap), y: l.originY + row * (l.cellH + l.gap), w: l.cellW, h: l.cellH };
}

/** The centre of a cell in CSS px (what a browser test clicks). */
export function cellCenter(l: GridLayout, row: number, col: number): { x: number; y: number } {
  const r = cellRect(l, row, col);
  return { x: r.x + r.w / 2, y: r.y + r.h / 2 };
}

/** Write the layout onto the canvas as data attributes: exposeGrid's, plus data-cell and data-gap. */
export function exposeLayout(canvas: HTMLCanvasElement, l: GridLayout): void {
  exposeGrid(canvas, l);
  canvas.dataset.cell = String(l.cellW);
  canvas.dataset.gap = String(l.gap);
}

/**
 * RGBA pixels, one per value (row-major rows x cols), coloured by `scale`; NaN -> `missing`.
 * `out` may be an ImageData's data of the same size.
 */
export function fillPixels(
  values: ArrayLike<number>,
  scale: ColorScale,
  out: Uint8ClampedArray = new Uint8ClampedArray(values.length * 4),
  outOffset = 0,
  missing: [number, number, number, number] = [128, 128, 128, 255],
): Uint8ClampedArray {
  const lut = scale.lut;
  for (let i = 0, o = outOffset; i < values.length; i++, o += 4) {
    const k = scale.lutIndex(values[i]);
    if (k < 0) {
      out[o] = missing[0];
      out[o + 1] = missing[1];
      out[o + 2] = missing[2];
      out[o + 3] = missing[3];
    } else {
      const j = k * 4;
      out[o] = lut[j];
      out[o + 1] = lut[j + 1];
      out[o + 2] = lut[j + 2];
      out[o + 3] = 255;
    }
  }
  return out;
}

export interface HeatmapOptions {
  /** Cell size in CSS px (default 12). */
  cellW?: number;
  cellH?: number;
  gap?: number;
  /** Margin around the cells in CSS px, so highlight outlines are not clipped (default 2). */
  margin?: number;
  testid?: string;
  ariaLabel?: string;
  onHover?: (cell: Cell | null, ev: MouseEvent) => void;
  onClick?: (cell: Cell, ev: MouseEvent) => void;
}

export interface HeatmapColors {
  bg: string;
  accent: string;
  fg: string;
}

/** A rows x cols canvas heatmap. Call `draw()` after changing data, scale, size or highlight. */
export class Heatmap {
  readonly canvas: HTMLCanvasElement;
  private values: ArrayLike<number> = new Float32Array(0);
  private rows = 0;
  private cols = 0;
  private cellW: number;
  private cellH: number;
  private gap: number;
  private margin: number;
  private scale: ColorScale | null = null;
  private colors: HeatmapColors = { bg: "#ffffff", accent: "#e36209", fg: "#1f2328" };
  private highlight: Highlight = {};
  private image: HTMLCanvasElement | null = null;
  private imageDirty = true;
  private hovered: Cell | null = null;
  private readonly offs: Array<() => void> = [];

  constructor(private readonly opts: HeatmapOptions = {}) {
    const doc = typeof document !== "undefined" ? document : null;
    if (!doc) throw new Error("Heatmap needs a DOM");
    this.canvas = doc.createElement("canvas");
    this.canvas.className = "lw-heatmap";
    if (opts.testid) this.canvas.dataset.testid = opts.testid;
    if (opts.ariaLabel) this.canvas.setAttribute("aria-label", opts.ariaLabel);
    this.canvas.setAttribute("role", "img");
    this.cellW = opts.cellW ?? 12;
    this.cellH = opts.cellH ?? this.cellW;
    this.gap = opts.gap ?? 0;
    this.margin = opts.margin ?? 2;
    listen(this.offs, this.canvas, "mousemove", (ev) => {
      const cell = this.cellAt(ev);
      if (cell?.row !== this.hovered?.row || cell?.col !== this.hovered?.col) {
        this.hovered = cell;
        this.opts.onHover?.(cell, ev);
      }
    });
    listen(this.offs, this.canvas, "mouseleave", (ev) => {
      if (this.hovered) {
        this.hovered = null;
        this.opts.onHover?.(null, ev);
      }
    });
    listen(this.offs, this.canvas, "click", (ev) => {
      const cell = this.cellAt(ev);
      if (cell) this.opts.onClick?.(cell, ev);
    });
  }

  get layout(): GridLayout {
    const m = this.margin;
    return gridLayout(this.rows, this.cols, this.cellW, this.cellH, this.gap, m, m, m, m);
  }

  /** Values are row-major, length rows * cols. The array is kept (not copied). */
  setData(values: ArrayLike<number>, rows: number, cols: number): this {
    if (values.length < rows * cols) throw new Error(`Heatmap: ${values.length} values for ${rows}x${cols}`);
    const n = rows * cols;
    const sub = (values as Float32Array).subarray;
    this.values =
      values.length === n ? values : typeof sub === "function" ? (values as Float32Array).subarray(0, n) : Array.prototype.slice.call(values, 0, n);
    this.rows = rows;
    this.cols = cols;
    this.imageDirty = true;
    return this;
  }

  setScale(scale: ColorScale): this {
    this.scale = scale;
    this.imageDirty = true;
    return this;
  }

  setColors(colors: HeatmapColors): this {
    this.colors = colors;
    return this;
  }

  setCellSize(cellW: number, cellH = cellW, gap = this.gap): this {
    this.cellW = cellW;
    this.cellH = cellH;
    this.gap = gap;
    return this;
  }

  setHighlight(h: Highlight): this {
    this.highlight = { ...h };
    return this;
  }

  getHighlight(): Highlight {
    return { ...this.highlight };
  }

  value(row: number, col: number): number {
    return this.values[row * this.cols + col];
  }

  /** The cell under a mouse event, or null. */
  cellAt(ev: MouseEvent): Cell | null {
    const rect = this.canvas.getBoundingClientRect();
    return hitTest(this.layout, ev.clientX - rect.left, ev.clientY - rect.top);
  }

  draw(): void {
    const l = this.layout;
    exposeLayout(this.canvas, l);
    const ctx = setupCanvas(this.canvas, l.width, l.height);
    if (!ctx) return;
    const dpr = devicePixelRatioOf(this.canvas);
    ctx.fillStyle = this.colors.bg;
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.scale || this.rows === 0 || this.cols === 0) return;
    if (this.gap === 0) {
      if (this.imageDirty || !this.image) {
        const px = fillPixels(this.values, this.scale);
        this.image = pixelCanvas(this.canvas.ownerDocument, px, this.cols, this.rows);
        this.imageDirty = false;
      }
      const r = snap({ x: l.originX, y: l.originY, w: this.cols * l.cellW, h: this.rows * l.cellH }, dpr);
      if (this.image) {
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(this.image, 0, 0, this.cols, this.rows, r.x, r.y, r.w, r.h);
      }
    } else {
      for (let i = 0; i < this.rows; i++) {
        for (let j = 0; j < this.cols; j++) {
          const r = snap(cellRect(l, i, j), dpr);
          ctx.fillStyle = this.scale.css(this.value(i, j));
          ctx.fillRect(r.x, r.y, r.w, r.h);
        }
      }
    }
    this.drawHighlight(ctx, l, dpr);
  }

  private drawHighlight(ctx: CanvasRenderingContext2D, l: GridLayout, dpr: number): void {
    const { row, col, cell } = this.highlight;
    const full = { x: l.originX, y: l.originY, w: l.width - l.originX * 2, h: l.height - l.originY * 2 };
    const band = (r: Rect) => {
      // Dim everything outside the band, then outline it.
      ctx.save();
      ctx.globalAlpha = 0.55;
      ctx.fillStyle = this.colors.bg;
      const f = snap(full, dpr);
      const b = snap(r, dpr);
      ctx.beginPath();
      ctx.rect(f.x, f.y, f.w, f.h);
      ctx.rect(b.x, b.y, b.w, b.h);
      ctx.fill("evenodd");
      ctx.restore();
      outline(b);
    };
    const outline = (b: Rect) => {
      ctx.save();
      ctx.strokeStyle = this.colors.accent;
      ctx.lineWidth = Math.max(1, Math.round(1.5 * dpr));
      ctx.strokeRect(b.x - ctx.lineWidth / 2, b.y - ctx.lineWidth / 2, b.w + ctx.lineWidth, b.h + ctx.lineWidth);
      ctx.restore();
    };
    if (row != null && row >= 0 && row < l.rows) {
      const r = cellRect(l, row, 0);
      band({ x: r.x, y: r.y, w: full.w, h: r.h });
    } else if (col != null && col >= 0 && col < l.cols) {
      const r = cellRect(l, 0, col);
      band({ x: r.x, y: r.y, w: r.w, h: full.h });
    }
    if (cell && cell.row >= 0 && cell.row < l.rows && cell.col >= 0 && cell.col < l.cols) {
      outline(snap(cellRect(l, cell.row, cell.col), dpr));
    }
  }

  /** The canvas as a PNG blob (device resolution), or null where canvas export is unavailable. */
  toPNG(): Promise<Blob | null> {
    return canvasToPNG(this.canvas);
  }

  /** A self-contained SVG: cells (vector rects, or one embedded PNG when large), labels, legend. */
  toSVG(o: HeatmapSvgOptions = {}): string {
    return heatmapSVG(
      {
        scale: this.scale,
        rows: this.rows,
        cols: this.cols,
        cellW: this.cellW,
        cellH: this.cellH,
        colors: this.colors,
        value: (r, c) => this.value(r, c),
        cellsDataUrl: () => this.cellsDataUrl(),
      },
      o,
    );
  }

  private cellsDataUrl(): string | null {
    if (!this.scale) return null;
    return pixelsDataUrl(this.canvas.ownerDocument, fillPixels(this.values, this.scale), this.cols, this.rows);
  }

  destroy(): void {
    this.offs.splice(0).forEach((f) => f());
    this.canvas.remove();
    this.image = null;
  }
}
