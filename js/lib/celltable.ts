// A visually hidden <table> behind a canvas grid: what the canvas draws, as text a screen reader
// reads and a browser test compares with Python. One <th scope="col"> per column, one row per grid
// row with a <th scope="row"> and one <td> per cell; every cell carries data-row / data-col and
// whatever data attributes its caller gives (e.g. data-value, full precision). Built with
// textContent only: token strings stay text, never HTML.
//
// The table is off screen (the usual "visually hidden" clip, inline so no stylesheet is needed),
// not `hidden`: assistive technology still reads it. `set` rebuilds it now; `defer` rebuilds it
// after DEFER_MS without another call, so a scroll or a stream of updates costs one build at the
// end, off the drawing path (a few hundred cells take ~6 ms in Chromium; a canvas frame ~1.5 ms).

import { h } from "./dom";

/** Inline style of a visually hidden element that stays in the accessibility tree. */
export const SR_ONLY_STYLE =
  "position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap;border:0";

export interface CellText {
  /** The cell's text (what the canvas draws there). */
  text: string;
  /** Extra data attributes, dataset keys (camelCase) -> value. */
  data?: Record<string, string>;
}

export interface CellTableSpec {
  caption: string;
  /** Grid row indices shown, in order (a window of a virtualised grid, or every row). */
  rows: number[];
  /** Grid column indices shown, in order. */
  cols: number[];
  rowHeader: (r: number) => string;
  colHeader: (c: number) => string;
  cell: (r: number, c: number) => CellText;
}

/** Quiet time (ms) before a deferred build. */
export const DEFER_MS = 100;

let nextId = 0;

export class CellTable {
  readonly el: HTMLTableElement;
  /** A document-unique id, for `aria-details` on the canvas. */
  readonly id: string;
  private readonly caption: HTMLTableCaptionElement;
  private readonly head: HTMLTableSectionElement;
  private readonly body: HTMLTableSectionElement;
  private pending: (() => void) | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(testid: string) {
    this.id = `lw-cells-${++nextId}`;
    this.caption = h("caption");
    this.head = h("thead");
    this.body = h("tbody");
    this.el = h("table", { class: "lw-cell-table", testid, attrs: { id: this.id, style: SR_ONLY_STYLE } }, [
      this.caption,
      this.head,
      this.body,
    ]);
  }

  /** Run `build` (which calls `set` or `clear`) once no other `defer` came for DEFER_MS. */
  defer(build: () => void): void {
    this.pending = build;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), DEFER_MS);
  }

  /** Run the deferred build now, if any. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const build = this.pending;
    this.pending = null;
    build?.();
  }

  /** Drop a deferred build (teardown). */
  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.pending = null;
  }

  /** Rebuild the table for `spec` now. */
  set(spec: CellTableSpec): void {
    this.caption.textContent = spec.caption;
    const hr = h("tr", {}, [h("td")]);
    for (const c of spec.cols) {
      const th = h("th", { text: spec.colHeader(c), attrs: { scope: "col" } });
      th.dataset.col = String(c);
      hr.appendChild(th);
    }
    this.head.replaceChildren(hr);
    const rows: HTMLTableRowElement[] = [];
    for (const r of spec.rows) {
      const th = h("th", { text: spec.rowHeader(r), attrs: { scope: "row" } });
      th.dataset.row = String(r);
      const tr = h("tr", {}, [th]);
      for (const c of spec.cols) {
        const cell = spec.cell(r, c);
        const td = h("td", { text: cell.text });
        td.dataset.row = String(r);
        td.dataset.col = String(c);
        if (cell.data) for (const [k, v] of Object.entries(cell.data)) td.dataset[k] = v;
        tr.appendChild(td);
      }
      rows.push(tr);
    }
    this.body.replaceChildren(...rows);
    this.el.dataset.rows = String(spec.rows.length);
    this.el.dataset.cols = String(spec.cols.length);
    delete this.el.dataset.omitted;
  }

  /** No cells, only a caption saying why (`omitted`: how many cells were left out). */
  clear(caption: string, omitted = 0): void {
    this.caption.textContent = caption;
    this.head.replaceChildren();
    this.body.replaceChildren();
    this.el.dataset.rows = "0";
    this.el.dataset.cols = "0";
    if (omitted > 0) this.el.dataset.omitted = String(omitted);
    else delete this.el.dataset.omitted;
  }

  /** Number of <td> cells in the table. */
  get size(): number {
    return this.body.querySelectorAll("td").length;
  }
}
