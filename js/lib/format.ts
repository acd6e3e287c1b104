// Numbers, signed bars and top-k tables as DOM, shared by the result/cell/detail panels of the views.
//
// Numbers: an element with data-value = the exact JSON number (String(v)) and text = v.toFixed(3)
// (probabilities: (100 p).toFixed(1) + "%"). Tokens are text (displayToken), never HTML.

import type { ColorScale } from "./colors";
import { h } from "./dom";
import { displayToken } from "./tokens";

export interface TopEntry {
  token: string;
  id?: number;
  prob: number;
}

/** v to 3 decimals, or "–" when v is not a finite number. */
export function fmt3(v: unknown): string {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(3) : "–";
}

/** A probability as a percentage with 1 decimal, or "–". */
export function fmtPct(p: unknown): string {
  return typeof p === "number" && Number.isFinite(p) ? `${(100 * p).toFixed(1)}%` : "–";
}

/** An element showing `text` with data-value = String(v) (the exact number). */
export function numberEl(tag: "span" | "td" | "div", testid: string, v: unknown, text = fmt3(v), cls = "lw-num"): HTMLElement {
  const el = h(tag, { class: cls, testid, text });
  el.dataset.value = String(v);
  return el;
}

/**
 * A signed value as a bar growing left (negative) or right (positive) from a zero line in the
 * middle, |v| / maxAbs of the half width, coloured by `scale` (a .lw-bar-cell element).
 */
export function signedBar(v: number, maxAbs: number, scale: ColorScale): HTMLElement {
  const bar = h("div", { class: "lw-bar" });
  const frac = Number.isFinite(v) ? Math.min(1, Math.abs(v) / maxAbs) : 0;
  bar.style.width = `${(50 * frac).toFixed(2)}%`;
  bar.style.left = v < 0 ? `${(50 - 50 * frac).toFixed(2)}%` : "50%";
  bar.style.background = scale.css(v);
  return h("div", { class: "lw-bar-cell" }, [h("div", { class: "lw-bar-zero" }), bar]);
}

/**
 * A top-k table: rows (data-testid lw-top-row) with rank, token (lw-top-token) and probability
 * (lw-top-prob); each row has data-value = prob, data-rank, data-token.
 */
export function topTable(testid: string, caption: string, entries: readonly TopEntry[] | undefined): HTMLTableElement {
  const body = h("tbody");
  (Array.isArray(entries) ? entries : []).forEach((e, i) => {
    if (!e || typeof e !== "object") return;
    const tr = h("tr", { class: "lw-top-row", testid: "lw-top-row" }, [
      h("td", { class: "lw-rank", text: String(i + 1) }),
      h("td", { class: "lw-tok", testid: "lw-top-token", text: displayToken(e.token) }),
      numberEl("td", "lw-top-prob", e.prob, fmtPct(e.prob)),
    ]);
    tr.dataset.value = String(e.prob);
    tr.dataset.rank = String(i + 1);
    tr.dataset.token = String(e.token);
    tr.title = `${JSON.stringify(e.token)}${e.id !== undefined ? ` (id ${e.id})` : ""}: p = ${e.prob}`;
    body.appendChild(tr);
  });
  return h("table", { class: "lw-top", testid }, [h("caption", { text: caption }), body]);
}
