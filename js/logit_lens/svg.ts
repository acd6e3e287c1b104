// The logit-lens table as a self-contained SVG document: vector cells with their token text and
// a <title> each, column headers, row labels (with hook names), the colour legend and the
// changed-cell key. Pure string building over the view's state (LensLook).

import { escapeXml, r2, svgDocument, svgLegend } from "../lib/svg";
import { displayToken } from "../lib/tokens";
import type { VWindow } from "../lib/virtual";
import { vocabToken } from "./data";
import { MONO, fitText } from "./layout";
import type { LensLook } from "./paint";

/**
 * A self-contained SVG of window `exp.win` (the whole table when `exp.full`): vector cells, token
 * text, labels, legend. `cellSummary(r, p)` gives each cell's <title>.
 */
export function lensSVG(
  s: LensLook,
  title: string,
  exp: { win: VWindow; full: boolean },
  cellSummary: (row: number, pos: number) => string,
): string {
  const d = s.data;
  const t = d.table;
  const g = s.grid;
  const pal = s.palette;
  const fg = pal?.fg ?? "#1f2328";
  const muted = pal?.muted ?? "#656d76";
  const accent = pal?.accent ?? "#d4570b";
  const bg = pal?.bg ?? "#ffffff";
  if (!t) return svgDocument(200, 40, [`<text x="8" y="24" font-size="12" fill="${escapeXml(fg)}">empty</text>`], bg);
  const { win, full } = exp;
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
        `<title>${escapeXml(d.rowHooks[r] ?? "")}</title>${escapeXml(s.rowLabel(r))}</text>`,
    );
  }
  // Cells.
  body.push(`<g font-size="11" font-family="${escapeXml(MONO)}">`);
  const vals = s.shade.values;
  for (let r = win.r0; r < win.r1; r++) {
    for (let c = win.c0; c < win.c1; c++) {
      const x = ox + (c - win.c0) * g.cellW;
      const y = oy + (r - win.r0) * g.cellH;
      const i = r * t.T + c;
      const li = s.scale.lutIndex(vals[i]);
      const fill = li < 0 ? s.missingCss : s.fillLut[li] ?? s.scale.css(vals[i]);
      const textFill = li < 0 ? fg : s.textLut[li] ?? "#000000";
      const tok = displayToken(vocabToken(d.vocab, t.ids[i * t.k]));
      body.push(
        `<g><title>${escapeXml(cellSummary(r, c))}</title>` +
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
  body.push(...svgLegend(s.scale, ox, ly, 200, legend, fg, "lens"));
  if (d.changed) {
    const x = ox + 220;
    body.push(
      `<polygon points="${r2(x)},${r2(ly)} ${r2(x + 10)},${r2(ly)} ${r2(x + 10)},${r2(ly + 10)}" fill="${escapeXml(accent)}"/>`,
      `<text x="${r2(x + 16)}" y="${r2(ly + 9)}" font-size="10" fill="${escapeXml(fg)}">changed vs original</text>`,
    );
  }
  return svgDocument(width, height, body, bg);
}
