// A heatmap as a self-contained SVG document: its cells as vector rects (or, above `maxRects`, one
// embedded PNG), optional values written in large cells, row and column labels, a title and a
// colour legend. Pure string building over what the Heatmap shows (HeatmapSvgSource).

import type { ColorScale } from "./colors";
import { contrastText } from "./colors";
import { escapeXml, r2, svgDocument, svgLegend } from "./svg";

export interface HeatmapSvgOptions {
  rowLabels?: string[];
  colLabels?: string[];
  title?: string;
  legend?: string;
  /** Values as numbers in each cell when cells are large enough (default false). */
  annotate?: boolean;
  /** Up to this many cells are drawn as vector rects; above, one embedded PNG (default 40000). */
  maxRects?: number;
}

/** What the SVG export reads from a heatmap. */
export interface HeatmapSvgSource {
  scale: ColorScale | null;
  rows: number;
  cols: number;
  /** Cell size in CSS px. */
  cellW: number;
  cellH: number;
  colors: { fg: string; bg: string };
  /** The value of cell (row, col). */
  value(row: number, col: number): number;
  /** All cells as one PNG data URL (one pixel a cell), or null. */
  cellsDataUrl(): string | null;
}

/** A self-contained SVG of `src`: cells (vector rects, or one embedded PNG when large), labels, legend. */
export function heatmapSVG(src: HeatmapSvgSource, o: HeatmapSvgOptions = {}): string {
  const scale = src.scale;
  const rows = src.rows;
  const cols = src.cols;
  const cw = Math.max(src.cellW, 4);
  const ch = Math.max(src.cellH, 4);
  const fontSize = Math.max(6, Math.min(11, ch * 0.8));
  const colFont = Math.max(6, Math.min(11, cw * 0.8));
  const longest = (ls?: string[]) => (ls && ls.length ? Math.max(...ls.map((s) => [...s].length)) : 0);
  const rowLabelW = o.rowLabels ? Math.min(180, longest(o.rowLabels) * fontSize * 0.62 + 8) : 0;
  const colLabelH = o.colLabels ? Math.min(180, longest(o.colLabels) * colFont * 0.62 + 8) : 0;
  const titleH = o.title ? 22 : 0;
  const x0 = 8 + rowLabelW;
  const y0 = 8 + titleH + colLabelH;
  const gw = cols * cw;
  const gh = rows * ch;
  const legendH = scale && o.legend !== undefined ? 36 : 0;
  const width = Math.max(x0 + gw + 8, 200);
  const height = y0 + gh + 8 + legendH;
  const { fg, bg } = src.colors;
  const body: string[] = [];
  if (o.title) {
    body.push(`<text x="8" y="20" font-size="13" font-weight="bold" fill="${escapeXml(fg)}">${escapeXml(o.title)}</text>`);
  }
  if (scale) {
    const maxRects = o.maxRects ?? 40000;
    const png = rows * cols > maxRects ? src.cellsDataUrl() : null;
    if (png) {
      body.push(
        `<image x="${r2(x0)}" y="${r2(y0)}" width="${r2(gw)}" height="${r2(gh)}" preserveAspectRatio="none" ` +
          `style="image-rendering:pixelated" href="${png}" xlink:href="${png}"/>`,
      );
    } else {
      body.push(`<g shape-rendering="crispEdges">`);
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < cols; j++) {
          const v = src.value(i, j);
          body.push(`<rect x="${r2(x0 + j * cw)}" y="${r2(y0 + i * ch)}" width="${r2(cw)}" height="${r2(ch)}" fill="${scale.css(v)}"><title>${escapeXml(String(v))}</title></rect>`);
        }
      }
      body.push(`</g>`);
      if (o.annotate && cw >= 28 && ch >= 12) {
        for (let i = 0; i < rows; i++) {
          for (let j = 0; j < cols; j++) {
            const v = src.value(i, j);
            body.push(
              `<text x="${r2(x0 + (j + 0.5) * cw)}" y="${r2(y0 + (i + 0.5) * ch)}" font-size="${r2(Math.min(10, ch * 0.6))}" ` +
                `text-anchor="middle" dominant-baseline="central" fill="${contrastText(scale.rgb(v))}">${escapeXml(v.toFixed(2))}</text>`,
            );
          }
        }
      }
    }
  }
  if (o.rowLabels) {
    o.rowLabels.slice(0, rows).forEach((s, i) => {
      body.push(
        `<text x="${r2(x0 - 4)}" y="${r2(y0 + (i + 0.5) * ch)}" font-size="${r2(fontSize)}" text-anchor="end" ` +
          `dominant-baseline="central" fill="${escapeXml(fg)}" xml:space="preserve">${escapeXml(s)}</text>`,
      );
    });
  }
  if (o.colLabels) {
    o.colLabels.slice(0, cols).forEach((s, j) => {
      const x = x0 + (j + 0.5) * cw;
      const y = y0 - 4;
      body.push(
        `<text transform="translate(${r2(x)},${r2(y)}) rotate(-90)" font-size="${r2(colFont)}" ` +
          `dominant-baseline="central" fill="${escapeXml(fg)}" xml:space="preserve">${escapeXml(s)}</text>`,
      );
    });
  }
  if (scale && o.legend !== undefined) {
    body.push(...svgLegend(scale, x0, y0 + gh + 12, Math.min(240, Math.max(120, gw)), o.legend, fg, "hm"));
  }
  return svgDocument(width, height, body, bg);
}
