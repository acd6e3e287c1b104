// Export of the PatchingHeatmap view: one self-contained SVG with every site's heatmap (cells as
// vector rects, empty NaN cells, hatched attribution estimates, row and column labels, the colour
// legend and the agreement line), under a title naming the prompts, metric and direction. The PNG
// is this SVG rasterised (lib/raster.ts), so both show the same thing.

import { contrastText } from "../lib/colors";
import { escapeXml, r2, svgDocument, svgLegend } from "../lib/svg";
import type { ExportSpec } from "./site";
import { fmtCell } from "./site";

export interface ExportColors {
  bg: string;
  fg: string;
  muted: string;
  border: string;
  accent: string;
}

/** Approximate text width in px (no font metrics in an SVG string). */
function textW(s: string, size: number): number {
  return [...s].length * size * 0.6;
}

/** The heatmaps of `specs`, stacked, as one SVG document. */
export function heatmapsSVG(specs: ExportSpec[], header: string[], colors: ExportColors): string {
  const { fg, muted, bg, border, accent } = colors;
  const body: string[] = [
    `<defs><pattern id="lw-pt-hatch" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
      `<rect width="1.5" height="4" fill="${escapeXml(bg)}" fill-opacity="0.6"/></pattern></defs>`,
  ];
  let y = 8;
  let width = 320;
  for (const line of header) {
    y += 16;
    body.push(`<text x="8" y="${r2(y)}" font-size="${y <= 24 ? 14 : 11}" ${y <= 24 ? 'font-weight="bold" ' : ""}fill="${escapeXml(y <= 24 ? fg : muted)}" xml:space="preserve">${escapeXml(line)}</text>`);
    width = Math.max(width, 16 + textW(line, y <= 24 ? 14 : 11));
  }
  y += 10;
  specs.forEach((s, n) => {
    const cw = Math.max(12, Math.min(48, s.cols ? 720 / s.cols : 12));
    const ch = Math.max(12, Math.min(30, s.rows ? 480 / s.rows : 12));
    const rowFont = Math.min(11, ch * 0.8);
    const colFont = Math.min(11, cw * 0.8);
    const rowLabelW = Math.min(160, Math.max(0, ...s.rowLabels.map((t) => textW(t, rowFont))) + 8);
    const colLabelH = Math.min(120, Math.max(0, ...s.colLabels.map((t) => textW(t, colFont))) + 8);
    y += 16;
    body.push(`<text x="8" y="${r2(y)}" font-size="13" font-weight="bold" fill="${escapeXml(fg)}" xml:space="preserve">${escapeXml(s.title)}</text>`);
    y += 14;
    body.push(`<text x="8" y="${r2(y)}" font-size="10" fill="${escapeXml(muted)}" xml:space="preserve">${escapeXml(s.subtitle)}</text>`);
    width = Math.max(width, 16 + textW(s.title, 13), 16 + textW(s.subtitle, 10));
    const x0 = 8 + rowLabelW;
    const y0 = y + 6 + colLabelH;
    s.colLabels.slice(0, s.cols).forEach((t, j) => {
      const x = x0 + (j + 0.5) * cw;
      const mark = s.colMarks[j];
      body.push(
        `<text transform="translate(${r2(x)},${r2(y0 - 4)}) rotate(-90)" font-size="${r2(colFont)}" dominant-baseline="central" ` +
          `fill="${escapeXml(mark ? accent : fg)}"${mark ? ' font-weight="bold"' : ""} xml:space="preserve">${escapeXml(t)}</text>`,
      );
    });
    s.rowLabels.slice(0, s.rows).forEach((t, i) => {
      body.push(
        `<text x="${r2(x0 - 4)}" y="${r2(y0 + (i + 0.5) * ch)}" font-size="${r2(rowFont)}" text-anchor="end" dominant-baseline="central" ` +
          `fill="${escapeXml(fg)}" xml:space="preserve">${escapeXml(t)}</text>`,
      );
    });
    body.push(`<g shape-rendering="crispEdges">`);
    const annotate = cw >= 30 && ch >= 14;
    for (let i = 0; i < s.rows; i++) {
      for (let j = 0; j < s.cols; j++) {
        const v = s.values[i * s.cols + j];
        const x = r2(x0 + j * cw);
        const yy = r2(y0 + i * ch);
        const tip = `${s.rowLabels[i] ?? i} × ${s.colLabels[j] ?? j}: ${Number.isFinite(v) ? v : "not computed"}`;
        if (!Number.isFinite(v)) {
          body.push(`<rect x="${x}" y="${yy}" width="${r2(cw)}" height="${r2(ch)}" fill="${escapeXml(bg)}" stroke="${escapeXml(border)}" stroke-width="0.75"><title>${escapeXml(tip)}</title></rect>`);
          continue;
        }
        const approx = !!s.approx && s.approx[i * s.cols + j] > 0;
        body.push(`<rect x="${x}" y="${yy}" width="${r2(cw)}" height="${r2(ch)}" fill="${s.scale.css(v)}"><title>${escapeXml(tip + (approx ? " (attribution)" : ""))}</title></rect>`);
        if (approx) body.push(`<rect x="${x}" y="${yy}" width="${r2(cw)}" height="${r2(ch)}" fill="url(#lw-pt-hatch)"/>`);
        if (annotate) {
          body.push(
            `<text x="${r2(x0 + (j + 0.5) * cw)}" y="${r2(y0 + (i + 0.5) * ch)}" font-size="${r2(Math.min(10, ch * 0.6))}" text-anchor="middle" ` +
              `dominant-baseline="central" fill="${contrastText(s.scale.rgb(v))}">${escapeXml(fmtCell(v))}</text>`,
          );
        }
      }
    }
    body.push(`</g>`);
    if (s.selected) {
      body.push(
        `<rect x="${r2(x0 + s.selected.col * cw - 1)}" y="${r2(y0 + s.selected.row * ch - 1)}" width="${r2(cw + 2)}" height="${r2(ch + 2)}" ` +
          `fill="none" stroke="${escapeXml(accent)}" stroke-width="2"/>`,
      );
    }
    const gw = s.cols * cw;
    width = Math.max(width, x0 + gw + 8);
    y = y0 + s.rows * ch + 12;
    const lw = Math.min(240, Math.max(140, gw));
    body.push(...svgLegend(s.scale, x0, y, lw, s.legend, fg, `pt${n}`));
    let lx = x0 + lw + 16;
    if (s.approx) {
      body.push(`<rect x="${r2(lx)}" y="${r2(y)}" width="10" height="10" fill="${escapeXml(muted)}"/><rect x="${r2(lx)}" y="${r2(y)}" width="10" height="10" fill="url(#lw-pt-hatch)"/>`);
      body.push(`<text x="${r2(lx + 14)}" y="${r2(y + 9)}" font-size="10" fill="${escapeXml(fg)}">attribution (approx.)</text>`);
      lx += 130;
    }
    if (Array.from(s.values).some((v) => !Number.isFinite(v))) {
      body.push(`<rect x="${r2(lx)}" y="${r2(y)}" width="10" height="10" fill="${escapeXml(bg)}" stroke="${escapeXml(border)}"/>`);
      body.push(`<text x="${r2(lx + 14)}" y="${r2(y + 9)}" font-size="10" fill="${escapeXml(fg)}">not computed</text>`);
      lx += 100;
    }
    width = Math.max(width, lx + 8);
    y += 30;
    if (s.agreement) {
      y += 12;
      body.push(`<text x="${r2(x0)}" y="${r2(y)}" font-size="10" fill="${escapeXml(muted)}" xml:space="preserve">${escapeXml(s.agreement)}</text>`);
      width = Math.max(width, x0 + textW(s.agreement, 10) + 8);
    }
    y += 14;
  });
  return svgDocument(Math.ceil(width), Math.ceil(y + 4), body, bg);
}
