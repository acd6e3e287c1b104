// The info line under AttentionGrid's focus pattern: for the hovered or locked query (key) token,
// the keys it attends to most (the queries attending to it most), with their weights; for a
// hovered cell its value; otherwise a hint. focus.ts owns the state and calls it on every update.

import { h } from "../lib/dom";
import { fmt3 } from "../lib/format";
import type { Cell } from "../lib/heatmap";
import type { Mark, WindowSpec } from "./focus";

/** The k largest entries of `values` as [index, value], largest first (ties: lower index first). */
export function topK(values: ArrayLike<number>, k: number): Array<[number, number]> {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) idx.push(i);
  idx.sort((a, b) => values[b] - values[a] || a - b);
  return idx.slice(0, k).map((i) => [i, values[i]]);
}

/** What the info line reads from the focus panel. Indices are the prompt's (global). */
export interface InfoSource {
  /** The part of the pattern shown. */
  win: WindowSpec;
  /** Whether that is a window of a longer pattern. */
  partial: boolean;
  /** Whether the mark is locked (a click) rather than hovered. */
  locked: boolean;
  /** The value at (query q, key k), or NaN outside the window. */
  value: (q: number, k: number) => number;
  /** Token i as displayed. */
  tok: (i: number) => string;
}

/** Fill `info` for `mark` (a hovered or locked token) or else the hovered `cell`. */
export function renderFocusInfo(info: HTMLElement, src: InfoSource, mark: Mark | null, cell: Cell | null): void {
  const { q0, k0, rows, cols } = src.win;
  const partial = src.partial;
  const inRows = (i: number) => i >= q0 && i < q0 + rows;
  const inCols = (j: number) => j >= k0 && j < k0 + cols;
  info.dataset.value = "";
  if (mark && (mark.axis === "row" ? inRows(mark.index) : inCols(mark.index))) {
    const i = mark.index;
    const n = mark.axis === "row" ? cols : rows;
    const vals = new Float32Array(n);
    for (let j = 0; j < n; j++) vals[j] = mark.axis === "row" ? src.value(i, k0 + j) : src.value(q0 + j, i);
    const top = topK(vals, 5);
    const within = partial ? (mark.axis === "row" ? ` (keys #${k0}–#${k0 + cols - 1})` : ` (queries #${q0}–#${q0 + rows - 1})`) : "";
    const lead =
      mark.axis === "row"
        ? `Query #${i} “${src.tok(i)}” attends to${within}:`
        : `Key #${i} “${src.tok(i)}” is attended by${within}:`;
    const list = h("ol", { class: "lw-top-list", testid: "lw-attends" });
    for (const [j, v] of top) {
      const g = j + (mark.axis === "row" ? k0 : q0);
      const item = h("li", { class: "lw-top-item", testid: "lw-attend-item" }, [
        h("span", { class: "lw-top-token", text: `#${g} ${src.tok(g)}` }),
        h("span", { class: "lw-top-weight", text: v.toFixed(3) }),
      ]);
      item.dataset.index = String(g);
      item.dataset.value = String(v);
      list.appendChild(item);
    }
    const children: Node[] = [h("span", { class: "lw-info-lead", text: lead }), list];
    if (src.locked) children.push(h("span", { class: "lw-info-hint", text: "locked: click the token again or press Esc to unlock" }));
    info.replaceChildren(...children);
  } else if (mark) {
    info.replaceChildren(h("span", { class: "lw-info-hint", text: `#${mark.index} is outside the window; loading it…` }));
  } else if (cell) {
    const v = src.value(cell.row, cell.col);
    info.replaceChildren(
      h("span", {
        class: "lw-info-lead",
        text: `#${cell.row} “${src.tok(cell.row)}” → #${cell.col} “${src.tok(cell.col)}”: ${partial ? v.toPrecision(4) : fmt3(v)}`,
      }),
    );
    info.dataset.q = String(cell.row);
    info.dataset.k = String(cell.col);
    info.dataset.value = String(v);
  } else if (rows === 0) {
    info.replaceChildren(h("span", { class: "lw-info-hint", text: "Loading the window (this head's block reruns once)…" }));
  } else {
    const hint = partial ? " Wheel: move the window (Shift: keys)." : "";
    info.replaceChildren(
      h("span", { class: "lw-info-hint", text: `Hover a query token (left) or key token (top); click to lock.${hint}` }),
    );
  }
}
