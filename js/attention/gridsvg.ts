// The SVG export of AttentionGrid's head grid: a self-contained document with the title, the
// L/H labels, each head's frame (tinted by the selected score) as a vector rect with a <title>,
// its thumbnail as an embedded PNG (or, without canvas, one rect per cell for small grids), and
// the score legend. grid.ts hands it the state it draws.

import { pixelsDataUrl } from "../lib/canvas";
import type { ColorScale } from "../lib/colors";
import type { GridLayout } from "../lib/heatmap";
import { cellRect } from "../lib/heatmap";
import { escapeXml, r2, svgDocument, svgLegend } from "../lib/svg";
import type { Palette } from "../lib/theme";
import { fillAtlas } from "./atlas";
import type { GridData } from "./grid";

export interface GridSVGInput {
  data: GridData;
  /** The grid's layout at export size. */
  layout: GridLayout;
  /** Frame width in CSS px around each thumbnail. */
  frame: number;
  palette: Palette | null;
  patternScale: ColorScale;
  /** The frame colours' scale, or null when no score is selected. */
  scoreScale: ColorScale | null;
  /** Index of the selected score in data.scoreNames (-1: none). */
  scoreIndex: number;
  /** Score s for head (l, h), or NaN. */
  score: (s: number, l: number, hd: number) => number;
  doc: Document;
}

/** The head grid as one SVG document under `title`. */
export function headGridSVG(g: GridSVGInput, title: string): string {
  const d = g.data;
  const l = g.layout;
  const pal = g.palette;
  const inset = g.frame;
  const fg = pal?.fg ?? "#1f2328";
  const titleH = 24;
  const legendH = g.scoreScale ? 40 : 0;
  const width = Math.max(l.width, 260);
  const height = titleH + l.height + legendH;
  const body: string[] = [
    `<text x="4" y="16" font-size="13" font-weight="bold" fill="${escapeXml(fg)}">${escapeXml(title)}</text>`,
    `<g transform="translate(0,${titleH})">`,
  ];
  for (let i = 0; i < d.nLayers; i++) {
    const r = cellRect(l, i, 0);
    body.push(`<text x="${r2(l.originX - 6)}" y="${r2(r.y + r.h / 2)}" font-size="11" text-anchor="end" dominant-baseline="central" fill="${escapeXml(fg)}">L${i}</text>`);
  }
  for (let j = 0; j < d.nHeads; j++) {
    const r = cellRect(l, 0, j);
    body.push(`<text x="${r2(r.x + r.w / 2)}" y="${r2(l.originY / 2)}" font-size="11" text-anchor="middle" dominant-baseline="central" fill="${escapeXml(fg)}">H${j}</text>`);
  }
  const si = g.scoreIndex;
  const T = d.T;
  const rectsOk = d.nLayers * d.nHeads * T * T <= 60000;
  for (let i = 0; i < d.nLayers; i++) {
    for (let j = 0; j < d.nHeads; j++) {
      const r = cellRect(l, i, j);
      const v = g.score(si, i, j);
      const frame = g.scoreScale && Number.isFinite(v) ? g.scoreScale.css(v) : pal?.border ?? "#d0d7de";
      const label = `L${i}H${j}` + (si >= 0 && Number.isFinite(v) ? ` ${d.colorBy}=${v.toFixed(3)}` : "");
      body.push(`<g><title>${escapeXml(label)}</title><rect x="${r2(r.x)}" y="${r2(r.y)}" width="${r2(r.w)}" height="${r2(r.h)}" fill="${frame}"/>`);
      const ix = r.x + inset;
      const iy = r.y + inset;
      const iw = r.w - 2 * inset;
      const url = d.patterns ? headDataUrl(g, i, j) : null;
      if (url) {
        body.push(`<image x="${r2(ix)}" y="${r2(iy)}" width="${r2(iw)}" height="${r2(iw)}" preserveAspectRatio="none" style="image-rendering:pixelated" href="${url}" xlink:href="${url}"/>`);
      } else if (d.patterns && rectsOk) {
        const c = iw / T;
        const base = (i * d.nHeads + j) * T * T;
        body.push(`<g shape-rendering="crispEdges">`);
        for (let q = 0; q < T; q++) {
          for (let k = 0; k < T; k++) {
            body.push(`<rect x="${r2(ix + k * c)}" y="${r2(iy + q * c)}" width="${r2(c)}" height="${r2(c)}" fill="${g.patternScale.css(d.patterns[base + q * T + k])}"/>`);
          }
        }
        body.push(`</g>`);
      }
      body.push(`</g>`);
    }
  }
  body.push(`</g>`);
  if (g.scoreScale) body.push(...svgLegend(g.scoreScale, l.originX, titleH + l.height + 6, 200, `frame: ${d.colorBy}`, fg, "score"));
  return svgDocument(width, height, body, pal?.bg ?? "#ffffff");
}

/** One head's thumbnail (T x T pixels) as a PNG data URL, or null without canvas. */
function headDataUrl(g: GridSVGInput, l: number, hd: number): string | null {
  const { patterns, T, nHeads } = g.data;
  if (!patterns) return null;
  const one = fillAtlas(patterns.subarray((l * nHeads + hd) * T * T, (l * nHeads + hd + 1) * T * T), 1, 1, T, T, g.patternScale);
  return pixelsDataUrl(g.doc, one, T, T);
}
