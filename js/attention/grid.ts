// The head grid of AttentionGrid: ONE canvas with n_layers rows x n_heads columns of thumbnails.
// Each thumbnail is its head's [T, T] pattern (downsampled by max-pooling when T is larger than the
// thumbnail in device pixels) inside a frame tinted by the selected head score. Thumbnails come
// from an atlas (one RGBA image of all heads) that is rebuilt only when the patterns, the theme
// or the thumbnail resolution change; a redraw is then n_layers * n_heads drawImage calls.
// This file is the grid's layout and the canvas view (events, tooltip, legend, drawing); the
// atlas pixels live in atlas.ts, the SVG export in gridsvg.ts.

import { canvasToPNG, devicePixelRatioOf, now, pixelCanvas, setupCanvas, snap } from "../lib/canvas";
import type { ColorScale } from "../lib/colors";
import { extent, gradientCss, sequential } from "../lib/colors";
import { h, listen } from "../lib/dom";
import { fmt3 } from "../lib/format";
import type { GridLayout } from "../lib/heatmap";
import { cellRect, exposeLayout, gridLayout, hitTest } from "../lib/heatmap";
import type { Palette } from "../lib/theme";
import { placeTooltip } from "../lib/tooltip";
import { fillAtlas } from "./atlas";
import { headGridSVG } from "./gridsvg";

export type Head = [number, number];

export interface GridData {
  /** [L, H, T, T] row-major, or null before the first run. */
  patterns: Float32Array | null;
  nLayers: number;
  nHeads: number;
  T: number;
  /** [S, L, H] row-major, or null. */
  scores: Float32Array | null;
  scoreNames: string[];
  colorBy: string;
}

/** Space for the row labels (L0..) and column labels (H0..) inside the canvas, and the frame. */
export const GRID_LABEL_W = 34;
export const GRID_LABEL_H = 18;
export const GRID_GAP = 6;
export const GRID_FRAME = 3;
export const GRID_MARGIN = 5;

/** Thumbnail (cell) size in CSS px for a grid of nLayers x nHeads in `width` CSS px (0 = unknown). */
export function gridCellSize(nLayers: number, nHeads: number, width: number): number {
  let cell = nLayers <= 12 ? 56 : nLayers <= 24 ? 44 : 36;
  if (width > 0 && nHeads > 0) {
    const fit = Math.floor((width - GRID_LABEL_W - GRID_MARGIN * 2 - (nHeads - 1) * GRID_GAP) / nHeads);
    cell = Math.min(cell, fit);
  }
  return Math.max(20, cell);
}

/** Layout of the grid canvas: cell (0, 0) starts after the labels. */
export function headGridLayout(nLayers: number, nHeads: number, cell: number): GridLayout {
  return gridLayout(nLayers, nHeads, cell, cell, GRID_GAP, GRID_LABEL_W, GRID_LABEL_H, GRID_MARGIN, GRID_MARGIN);
}

/** Domain for colouring heads by a score: [min(0, lo), hi] (hi > lo). */
export function scoreDomain(values: ArrayLike<number>): [number, number] {
  const [min, max] = extent(values);
  const lo = min < 0 ? min : 0;
  return [lo, max > lo ? max : lo + 1];
}

export interface HeadGridOptions {
  onClick?: (head: Head) => void;
  onHover?: (head: Head | null) => void;
  /** Arrow keys on the focused canvas. */
  onArrow?: (dl: number, dh: number) => void;
}

export class HeadGrid {
  readonly el: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  readonly tooltip: HTMLElement;
  readonly legend: HTMLElement;
  readonly empty: HTMLElement;
  private data: GridData = { patterns: null, nLayers: 0, nHeads: 0, T: 0, scores: null, scoreNames: [], colorBy: "" };
  private cell = 44;
  private palette: Palette | null = null;
  private focus: Head | null = null;
  private hover: Head | null = null;
  private queryMark: number | null = null;
  private atlas: HTMLCanvasElement | null = null;
  private atlasKey = "";
  private patternScale: ColorScale = sequential("light");
  private scoreScale: ColorScale | null = null;
  /** The last draw time in ms (for tests and the perf budget). */
  lastDrawMs = 0;
  private readonly offs: Array<() => void> = [];

  constructor(private readonly opts: HeadGridOptions = {}) {
    this.canvas = h("canvas", { class: "lw-grid-canvas", testid: "lw-grid" });
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", "Attention heads: layers as rows, heads as columns");
    this.tooltip = h("div", { class: "lw-tooltip", testid: "lw-tooltip", attrs: { role: "tooltip" } });
    this.tooltip.hidden = true;
    this.legend = h("div", { class: "lw-legend", testid: "lw-legend" });
    this.empty = h("div", { class: "lw-empty", testid: "lw-empty", text: "Run a prompt to see its attention patterns." });
    this.el = h("div", { class: "lw-grid-wrap" }, [this.empty, this.canvas, this.tooltip, this.legend]);

    listen(this.offs, this.canvas, "mousemove", (ev) => this.setHover(this.headAt(ev)));
    listen(this.offs, this.canvas, "mouseleave", () => this.setHover(null));
    listen(this.offs, this.canvas, "click", (ev) => {
      const hd = this.headAt(ev);
      if (hd) this.opts.onClick?.(hd);
    });
    listen(this.offs, this.canvas, "keydown", (ev) => {
      const d: Record<string, [number, number]> = {
        ArrowUp: [-1, 0],
        ArrowDown: [1, 0],
        ArrowLeft: [0, -1],
        ArrowRight: [0, 1],
      };
      const m = d[ev.key];
      if (m && this.opts.onArrow) {
        ev.preventDefault();
        this.opts.onArrow(m[0], m[1]);
      }
    });
  }

  get layout(): GridLayout {
    return headGridLayout(this.data.nLayers, this.data.nHeads, this.cell);
  }

  headAt(ev: MouseEvent): Head | null {
    const rect = this.canvas.getBoundingClientRect();
    const c = hitTest(this.layout, ev.clientX - rect.left, ev.clientY - rect.top);
    return c ? [c.row, c.col] : null;
  }

  setData(d: GridData): void {
    this.data = d;
    this.atlasKey = "";
    this.updateScoreScale();
    if (this.hover && (this.hover[0] >= d.nLayers || this.hover[1] >= d.nHeads)) this.hover = null;
  }

  setColorBy(name: string): void {
    this.data = { ...this.data, colorBy: name };
    this.updateScoreScale();
  }

  setPalette(p: Palette): void {
    this.palette = p;
    this.patternScale = sequential(p.theme);
    this.atlasKey = "";
    this.updateScoreScale();
  }

  setCell(cell: number): void {
    this.cell = cell;
  }

  setFocus(f: Head | null): void {
    this.focus = f;
  }

  /** Mark query row `q` inside every thumbnail (token hover elsewhere), or null. */
  setQueryMark(q: number | null): void {
    this.queryMark = q;
    this.canvas.dataset.query = q === null ? "" : String(q);
  }

  getHover(): Head | null {
    return this.hover;
  }

  private scoreIndex(): number {
    return this.data.scoreNames.indexOf(this.data.colorBy);
  }

  /** Score s for head (l, h), or NaN. */
  score(s: number, l: number, hd: number): number {
    const { scores, nLayers, nHeads } = this.data;
    if (!scores || s < 0) return NaN;
    const i = (s * nLayers + l) * nHeads + hd;
    return i < scores.length ? scores[i] : NaN;
  }

  private updateScoreScale(): void {
    const s = this.scoreIndex();
    const { scores, nLayers, nHeads } = this.data;
    const theme = this.palette?.theme ?? "light";
    if (!scores || s < 0 || (s + 1) * nLayers * nHeads > scores.length) {
      this.scoreScale = null;
      this.legend.hidden = true;
      return;
    }
    const vals = scores.subarray(s * nLayers * nHeads, (s + 1) * nLayers * nHeads);
    this.scoreScale = sequential(theme, scoreDomain(vals), "oranges");
    this.renderLegend();
  }

  private renderLegend(): void {
    const sc = this.scoreScale;
    if (!sc) return;
    const fmt = (v: number) => v.toFixed(2);
    this.legend.replaceChildren(
      h("span", { class: "lw-legend-label", text: `frame: ${this.data.colorBy}` }),
      h("span", { class: "lw-legend-value", text: fmt(sc.domain[0]) }),
      (() => {
        const bar = h("span", { class: "lw-legend-bar" });
        bar.style.background = gradientCss(sc);
        return bar;
      })(),
      h("span", { class: "lw-legend-value", text: fmt(sc.domain[1]) }),
    );
    this.legend.hidden = false;
  }

  private setHover(hd: Head | null): void {
    if (hd?.[0] === this.hover?.[0] && hd?.[1] === this.hover?.[1]) return;
    this.hover = hd;
    this.renderTooltip();
    this.draw();
    this.opts.onHover?.(hd);
  }

  /** Thumbnail resolution in atlas pixels: T, or fewer when the thumbnail is smaller than T device px. */
  private thumbPixels(): number {
    const dpr = devicePixelRatioOf(this.canvas);
    const inner = Math.max(1, Math.round((this.cell - 2 * GRID_FRAME) * dpr));
    return Math.max(1, Math.min(this.data.T, inner));
  }

  private ensureAtlas(): void {
    const { patterns, nLayers, nHeads, T } = this.data;
    if (!patterns || !T) {
      this.atlas = null;
      return;
    }
    const s = this.thumbPixels();
    const key = `${s}:${this.patternScale.theme}`;
    if (key === this.atlasKey) return;
    this.atlasKey = key;
    const px = fillAtlas(patterns, nLayers, nHeads, T, s, this.patternScale);
    this.atlas = pixelCanvas(this.canvas.ownerDocument, px, nHeads * s, nLayers * s);
  }

  private renderTooltip(): void {
    const hd = this.hover;
    if (!hd) {
      this.tooltip.hidden = true;
      return;
    }
    const [l, k] = hd;
    const rows = this.data.scoreNames.map((name, s) => {
      const v = this.score(s, l, k);
      const row = h("div", { class: "lw-tooltip-row" + (name === this.data.colorBy ? " lw-current" : "") }, [
        h("span", { class: "lw-tooltip-name", text: name }),
        h("span", { class: "lw-tooltip-value", text: fmt3(v) }),
      ]);
      row.dataset.score = name;
      row.dataset.value = String(v);
      return row;
    });
    this.tooltip.replaceChildren(
      h("div", { class: "lw-tooltip-title", text: `L${l}H${k}` }),
      h("div", { class: "lw-tooltip-hook", text: `blocks.${l}.attn.hook_pattern` }),
      ...rows,
    );
    this.tooltip.dataset.head = `${l},${k}`;
    this.tooltip.hidden = false;
    const r = cellRect(this.layout, l, k);
    const x0 = this.canvas.offsetLeft;
    const y0 = this.canvas.offsetTop;
    placeTooltip(this.tooltip, { x: x0 + r.x, y: y0 + r.y, w: r.w, h: r.h }, this.el.clientWidth || Infinity, 8, 160);
  }

  draw(): void {
    const t0 = now();
    const d = this.data;
    const has = !!d.patterns && d.nLayers > 0 && d.nHeads > 0;
    this.empty.hidden = has;
    this.canvas.hidden = !has;
    if (!has) {
      this.tooltip.hidden = true;
      this.legend.hidden = true;
      return;
    }
    const l = this.layout;
    exposeLayout(this.canvas, l);
    const ctx = setupCanvas(this.canvas, l.width, l.height);
    if (!ctx) {
      this.lastDrawMs = now() - t0;
      return;
    }
    this.ensureAtlas();
    const dpr = devicePixelRatioOf(this.canvas);
    const pal = this.palette;
    const bg = pal?.bg ?? "#ffffff";
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);

    // Labels.
    ctx.fillStyle = pal?.muted ?? "#656d76";
    ctx.font = `${Math.round(11 * dpr)}px ${pal?.font ?? "sans-serif"}`;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i < d.nLayers; i++) {
      const r = cellRect(l, i, 0);
      ctx.fillText(`L${i}`, (l.originX - 6) * dpr, (r.y + r.h / 2) * dpr);
    }
    ctx.textAlign = "center";
    for (let j = 0; j < d.nHeads; j++) {
      const r = cellRect(l, 0, j);
      ctx.fillText(`H${j}`, (r.x + r.w / 2) * dpr, (l.originY / 2) * dpr);
    }

    // Thumbnails.
    const s = this.thumbPixels();
    const si = this.scoreIndex();
    const neutral = pal?.border ?? "#d0d7de";
    ctx.imageSmoothingEnabled = false;
    for (let i = 0; i < d.nLayers; i++) {
      for (let j = 0; j < d.nHeads; j++) {
        const cr = cellRect(l, i, j);
        const outer = snap(cr, dpr);
        const v = this.score(si, i, j);
        ctx.fillStyle = this.scoreScale && Number.isFinite(v) ? this.scoreScale.css(v) : neutral;
        ctx.fillRect(outer.x, outer.y, outer.w, outer.h);
        const inner = snap({ x: cr.x + GRID_FRAME, y: cr.y + GRID_FRAME, w: cr.w - 2 * GRID_FRAME, h: cr.h - 2 * GRID_FRAME }, dpr);
        if (this.atlas) ctx.drawImage(this.atlas, j * s, i * s, s, s, inner.x, inner.y, inner.w, inner.h);
        else {
          ctx.fillStyle = bg;
          ctx.fillRect(inner.x, inner.y, inner.w, inner.h);
        }
      }
    }

    // Query row marker (a token hovered in the prompt strip or the focus panel).
    const qm = this.queryMark;
    if (qm !== null && qm >= 0 && qm < d.T) {
      ctx.fillStyle = pal?.accent ?? "#e36209";
      ctx.globalAlpha = 0.85;
      for (let i = 0; i < d.nLayers; i++) {
        for (let j = 0; j < d.nHeads; j++) {
          const cr = cellRect(l, i, j);
          const inner = cr.h - 2 * GRID_FRAME;
          const y0 = Math.round((cr.y + GRID_FRAME + (inner * qm) / d.T) * dpr);
          const y1 = Math.round((cr.y + GRID_FRAME + (inner * (qm + 1)) / d.T) * dpr);
          const x0 = Math.round((cr.x + GRID_FRAME) * dpr);
          ctx.fillRect(x0, y0, Math.round(inner * dpr), Math.max(1, y1 - y0));
        }
      }
      ctx.globalAlpha = 1;
    }

    // Focus and hover outlines.
    const ring = (hd: Head | null, color: string, width: number) => {
      if (!hd || hd[0] >= d.nLayers || hd[1] >= d.nHeads) return;
      const b = snap(cellRect(l, hd[0], hd[1]), dpr);
      const lw = Math.max(1, Math.round(width * dpr));
      ctx.strokeStyle = color;
      ctx.lineWidth = lw;
      ctx.strokeRect(b.x - lw / 2 - lw, b.y - lw / 2 - lw, b.w + 3 * lw, b.h + 3 * lw);
    };
    ring(this.hover, pal?.fg ?? "#1f2328", 1);
    ring(this.focus, pal?.accent ?? "#e36209", 2);
    this.lastDrawMs = now() - t0;
    this.canvas.dataset.drawMs = this.lastDrawMs.toFixed(2);
  }

  toPNG(): Promise<Blob | null> {
    return canvasToPNG(this.canvas);
  }

  /** A self-contained SVG: frames as vector rects, each thumbnail an embedded PNG (or rects without canvas). */
  toSVG(title: string): string {
    const d = this.data;
    return headGridSVG(
      {
        data: d,
        layout: headGridLayout(d.nLayers, d.nHeads, Math.max(this.cell, 40)),
        frame: GRID_FRAME,
        palette: this.palette,
        patternScale: this.patternScale,
        scoreScale: this.scoreScale,
        scoreIndex: this.scoreIndex(),
        score: (s, l, hd) => this.score(s, l, hd),
        doc: this.canvas.ownerDocument,
      },
      title,
    );
  }

  destroy(): void {
    this.offs.splice(0).forEach((f) => f());
    this.atlas = null;
    this.el.remove();
  }
}
