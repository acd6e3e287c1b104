// The accessible data layer of a patching site card: a visually hidden table (lib/celltable.ts)
// behind the heatmap canvas with one <td> per cell of the slice shown. Each <td>:
//   text            the value as the canvas writes it in the cell (fmtCell), or "not computed"
//   data-site       the site, e.g. "resid_pre"
//   data-row/col    the heatmap cell (row, col)
//   data-index      the full index in the site's dims order ("1,4"; "1,4,2" for [layer, pos, head])
//   data-value      the value at full precision (float32 as a JS number; "NaN" when not computed)
//   data-source     "exact", "attribution" (an estimate; hatched in a mixed map) or "none"
// The header cells name the rows and columns (layer labels, tokens with visible whitespace, head
// labels). The caption names the site, the slice and the metric (recovery or logit diff).
//
// Big maps: a table of more than A11Y_MAX_CELLS cells (e.g. resid_pre of SmolLM2 on a 1,000-token
// prompt: 30,000) is not built; the caption says so and data-omitted gives the count. The tooltip,
// the top-components list and the Python results (`hm.exact_results`) still have every value.

import { CellTable } from "../lib/celltable";
import { displayToken } from "../lib/tokens";
import { fmtCell } from "./overlay";

/** Largest slice (rows x cols) that gets a table. */
export const A11Y_MAX_CELLS = 4096;

export interface SiteCells {
  site: string;
  rows: number;
  cols: number;
  rowDim: string;
  colDim: string;
  rowLabels: string[];
  colLabels: string[];
  /** rows x cols values, row-major (the slice drawn); NaN = not computed. */
  values: Float32Array;
  /** rows x cols, nonzero where the value is an attribution estimate, or null. */
  approx: Float32Array | null;
  /** "exact", "attribution", "mixed" or "none": where the values come from. */
  source: string;
  /** What the values are, e.g. "recovery (0 = corrupted run, 1 = clean run)". */
  metric: string;
  /** The fixed axes, e.g. "head L1H2", or "". */
  sliceText: string;
  /** Full index (dims order) of heatmap cell (row, col). */
  index: (row: number, col: number) => number[];
}

/** Text of one cell in the table: what the canvas writes there. */
export function cellText(v: number): string {
  return Number.isFinite(v) ? fmtCell(v) : "not computed";
}

/** Where one cell's value comes from. */
export function cellSource(v: number, approx: boolean, source: string): string {
  if (v !== v) return "none";
  return approx || source === "attribution" ? "attribution" : "exact";
}

export class SiteCellTable {
  readonly table: CellTable;
  private last: unknown[] = [];
  /** Number of rebuilds (tests check that hover redraws do not rebuild). */
  builds = 0;

  constructor(readonly site: string) {
    this.table = new CellTable(`lw-cells-${site}`);
    this.table.el.dataset.site = site;
  }

  get el(): HTMLTableElement {
    return this.table.el;
  }

  /** Rebuild the table for `c` (deferred: lib/celltable.ts) unless nothing it shows changed since the last call. */
  update(c: SiteCells): void {
    const key = [c.values, c.approx, c.rowLabels, c.colLabels, c.rows, c.cols, c.source, c.metric, c.sliceText];
    if (key.length === this.last.length && key.every((k, i) => k === this.last[i])) return;
    this.last = key;
    this.table.defer(() => this.build(c));
  }

  private build(c: SiteCells): void {
    this.builds++;
    const el = this.table.el;
    el.dataset.source = c.source;
    el.dataset.rowDim = c.rowDim;
    el.dataset.colDim = c.colDim;
    el.dataset.metric = c.metric;
    const n = c.rows * c.cols;
    const what = `Activation patching, site ${c.site}${c.sliceText ? ` (${c.sliceText})` : ""}: ${c.metric}`;
    if (c.source === "none" || n === 0) {
      this.table.clear(`${what}: no values yet.`);
      return;
    }
    if (n > A11Y_MAX_CELLS) {
      this.table.clear(`${what}: ${n} cells, more than the ${A11Y_MAX_CELLS} this table lists; hover the heatmap or read the results in Python.`, n);
      return;
    }
    const range = (k: number) => Array.from({ length: k }, (_, i) => i);
    this.table.set({
      caption: `${what}; rows: ${c.rowDim || "—"}, columns: ${c.colDim || "—"}.`,
      rows: range(c.rows),
      cols: range(c.cols),
      rowHeader: (r) => displayToken(c.rowLabels[r] ?? ""),
      colHeader: (j) => displayToken(c.colLabels[j] ?? ""),
      cell: (r, j) => {
        const i = r * c.cols + j;
        const v = c.values[i];
        return {
          text: cellText(v),
          data: {
            site: c.site,
            index: c.index(r, j).join(","),
            value: String(v),
            source: cellSource(v, !!c.approx?.[i], c.source),
          },
        };
      },
    });
  }
}
