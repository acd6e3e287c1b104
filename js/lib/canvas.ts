// Canvas plumbing shared by every canvas view (lib/heatmap, the attention head grid, the logit-lens
// table, the patching maps): sizing for the device pixel ratio, a 2D context where there is one,
// pixel-snapped rectangles, RGBA pixel canvases and their PNG forms, the layout data attributes
// browser tests read, and the clock draw timings use.

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** The geometry of a grid of cells drawn on a canvas (CSS px). */
export interface GridGeometry {
  rows: number;
  cols: number;
  cellW: number;
  cellH: number;
  /** Position of cell (0, 0)'s top-left corner. */
  originX: number;
  originY: number;
}

/**
 * Write a grid's geometry onto its canvas as data attributes (data-rows, data-cols, data-cell-w,
 * data-cell-h, data-origin-x, data-origin-y): what a browser test computes a cell's position from.
 */
export function exposeGrid(canvas: HTMLCanvasElement, g: GridGeometry): void {
  const d = canvas.dataset;
  d.rows = String(g.rows);
  d.cols = String(g.cols);
  d.cellW = String(g.cellW);
  d.cellH = String(g.cellH);
  d.originX = String(g.originX);
  d.originY = String(g.originY);
}

export function devicePixelRatioOf(el: Element): number {
  const r = el.ownerDocument?.defaultView?.devicePixelRatio;
  return typeof r === "number" && r > 0 ? r : 1;
}

/**
 * Size a canvas for `cssW` x `cssH` CSS px at the device pixel ratio and return its 2D context
 * with an identity transform (callers draw in device px), or null where there is no 2D canvas
 * (e.g. happy-dom in tests).
 */
export function setupCanvas(canvas: HTMLCanvasElement, cssW: number, cssH: number): CanvasRenderingContext2D | null {
  const dpr = devicePixelRatioOf(canvas);
  const w = Math.max(1, Math.round(cssW * dpr));
  const h = Math.max(1, Math.round(cssH * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  const ctx = get2d(canvas);
  if (ctx) ctx.setTransform(1, 0, 0, 1, 0, 0);
  return ctx;
}

export function get2d(canvas: HTMLCanvasElement): CanvasRenderingContext2D | null {
  try {
    const ctx = canvas.getContext("2d");
    return ctx && typeof (ctx as CanvasRenderingContext2D).fillRect === "function" ? (ctx as CanvasRenderingContext2D) : null;
  } catch {
    return null;
  }
}

/** Device-pixel rectangle of a CSS rectangle, snapped so that neighbouring cells share edges. */
export function snap(r: Rect, dpr: number): Rect {
  const x0 = Math.round(r.x * dpr);
  const y0 = Math.round(r.y * dpr);
  const x1 = Math.round((r.x + r.w) * dpr);
  const y1 = Math.round((r.y + r.h) * dpr);
  return { x: x0, y: y0, w: Math.max(1, x1 - x0), h: Math.max(1, y1 - y0) };
}

/** An offscreen canvas holding `pixels` (w x h RGBA), or null without a 2D canvas. */
export function pixelCanvas(doc: Document, pixels: Uint8ClampedArray, w: number, h: number): HTMLCanvasElement | null {
  if (w <= 0 || h <= 0) return null;
  const c = doc.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = get2d(c);
  if (!ctx || typeof ctx.createImageData !== "function") return null;
  const img = ctx.createImageData(w, h);
  img.data.set(pixels);
  ctx.putImageData(img, 0, 0);
  return c;
}

/** `pixels` (w x h RGBA) as a PNG data URL (for SVG export), or null without a 2D canvas. */
export function pixelsDataUrl(doc: Document, pixels: Uint8ClampedArray, w: number, h: number): string | null {
  const c = pixelCanvas(doc, pixels, w, h);
  try {
    return c ? c.toDataURL("image/png") : null;
  } catch {
    return null;
  }
}

/** The canvas as a PNG blob, or null where canvas export is unavailable. */
export function canvasToPNG(canvas: HTMLCanvasElement): Promise<Blob | null> {
  return new Promise((resolve) => {
    try {
      if (typeof canvas.toBlob !== "function") return resolve(null);
      canvas.toBlob((b) => resolve(b), "image/png");
    } catch {
      resolve(null);
    }
  });
}

/** Milliseconds from a monotonic clock where there is one (draw timings). */
export function now(): number {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}
