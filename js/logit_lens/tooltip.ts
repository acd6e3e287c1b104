// What the logit-lens table's tooltip says: for a cell, its row and hook, the position's input
// token, the top 5 predictions with probabilities, the target's probability and rank and the
// changed mark; for a column header or row label, what it names. Also the plain-text summary of
// a cell (the SVG export's <title>). Builds DOM nodes (text only, never HTML); placing is the view's.

import type { Rect } from "../lib/canvas";
import { h } from "../lib/dom";
import { fmtPct } from "../lib/format";
import { displayToken } from "../lib/tokens";
import type { VHit, Viewport } from "../lib/virtual";
import { cellViewRect } from "../lib/virtual";
import { cellTop, vocabToken } from "./data";
import type { LensData } from "./layout";
import type { LensLook } from "./paint";

/** Tooltip text lines for cell (r, p) (also used as the SVG <title>). */
export function lensCellSummary(s: LensLook, row: number, pos: number): string {
  const d = s.data;
  const t = d.table;
  if (!t) return "";
  const lines = [
    `${s.rowLabel(row)}  ${d.rowHooks[row] ?? ""}`.trim(),
    `pos ${pos} ${JSON.stringify(d.tokens[pos] ?? "")}`,
    ...cellTop(t, row, pos, 5).map((e, i) => `${i + 1}. ${JSON.stringify(vocabToken(d.vocab, e.id))} ${fmtPct(e.prob)}`),
  ];
  const st = targetAt(s.data, row, pos);
  if (st) lines.push(`target ${JSON.stringify(d.targetText)}: ${fmtPct(st.prob)}, rank ${Number.isFinite(st.rank) ? st.rank : "–"}`);
  if (d.changed?.[row * t.T + pos]) lines.push("changed vs original");
  return lines.join("\n");
}

/** The target's probability and rank at cell (row, pos), or null when no target is set. */
export function targetAt(d: LensData, row: number, pos: number): { prob: number; rank: number } | null {
  const s = d.stats;
  if (!s || d.target < 0 || !d.table) return null;
  const i = row * d.table.T + pos;
  return { prob: s.prob ? s.prob[i] : NaN, rank: s.rank ? s.rank[i] : NaN };
}

/**
 * The tooltip for `hit` (not the corner) in viewport `v`: its child nodes, its data-cell value
 * ("r,p", "header,p" or "row,r") and the anchor rectangle in canvas CSS px.
 */
export function lensTooltip(
  s: LensLook,
  hit: Exclude<VHit, { kind: "corner" }>,
  v: Viewport,
): { children: Node[]; cell: string; anchor: Rect } {
  const d = s.data;
  const t = d.table!;
  const g = s.grid;
  let anchor: Rect;
  let cell: string;
  const children: Node[] = [];
  if (hit.kind === "cell") {
    const { row, col } = hit;
    children.push(
      h("div", { class: "lw-tooltip-title", text: `${s.rowLabel(row)} · pos ${col} “${displayToken(d.tokens[col] ?? "")}”` }),
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
    const st = targetAt(s.data, row, col);
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
    cell = `${row},${col}`;
    anchor = cellViewRect(g, v.scrollX, v.scrollY, row, col);
  } else if (hit.kind === "col-header") {
    const col = hit.col;
    children.push(
      h("div", { class: "lw-tooltip-title", text: `pos ${col} “${displayToken(d.tokens[col] ?? "")}”` }),
      h("div", { class: "lw-ll-tip-hint", text: "click: set this token as the target" }),
    );
    cell = `header,${col}`;
    const r = cellViewRect(g, v.scrollX, v.scrollY, 0, col);
    anchor = { x: r.x, y: 0, w: r.w, h: g.headerH };
  } else {
    const row = hit.row;
    children.push(
      h("div", { class: "lw-tooltip-title", text: s.rowLabel(row) }),
      h("div", { class: "lw-tooltip-hook", text: d.rowHooks[row] ?? "" }),
    );
    cell = `row,${row}`;
    const r = cellViewRect(g, v.scrollX, v.scrollY, row, 0);
    anchor = { x: 0, y: r.y, w: g.labelW, h: r.h };
  }
  return { children, cell, anchor };
}
