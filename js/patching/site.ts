// One site's card in the PatchingHeatmap view: a title with the hook name and what the values
// are (exact / attribution), selectors for the axes that are not shown (e.g. the head of a
// [layer, pos, head] site), the heatmap (layers as rows; positions with token labels, or heads,
// as columns) drawn with a diverging scale centred on 0, a legend, and the attribution-vs-exact
// agreement once both exist.
//
// Cells: exact values solid; attribution estimates inside a map that also has exact values are
// hatched; cells with no value (NaN: not computed yet) are empty, with a thin outline (overlay.ts).
// Behind the canvas, a visually hidden table of the slice shown (a11y.ts): screen readers and
// browser tests read every cell's value there.
//
// This file is the card itself (values and mode state, events, drawing); beside it: cardview.ts
// (its elements), slicing.ts (which slice is shown, the selected cell), cardtypes.ts (geometry and
// the shapes it is given / reports), legend.ts (badge, colour legend, agreement line), info.ts (a
// cell's tooltip content), slices.ts (the slice selects).

import type { ColorScale } from "../lib/colors";
import { diverging, maxAbs } from "../lib/colors";
import { listen } from "../lib/dom";
import type { Cell, GridLayout, Heatmap } from "../lib/heatmap";
import type { Palette } from "../lib/theme";
import type { TokenStrip } from "../lib/tokens";
import { displayToken } from "../lib/tokens";
import type { SiteCellTable } from "./a11y";
import type { CardData, CellInfo, ExportSpec, SiteCardOptions } from "./cardtypes";
import { GAP, cellSize, sameStrings } from "./cardtypes";
import type { CardView } from "./cardview";
import { buildCardView } from "./cardview";
import type { Agreement, Combined, SiteEntry, ViewMode } from "./data";
import { agreement, axisLabels, combine } from "./data";
import { cellInfo } from "./info";
import { agreementText, badgeText, fillAgreement, hasNaN, legendNodes } from "./legend";
import { drawOverlay } from "./overlay";
import { Slicing } from "./slicing";
import { syncSliceSelects } from "./slices";

export { fmtCell } from "./overlay";
export type { CardData, CellInfo, ExportSpec, InfoRow, SiteCardOptions } from "./cardtypes";
export { GAP, ROW_LABEL_W, cellSize } from "./cardtypes";
export { agreementText } from "./legend";

export class SiteCard {
  readonly site: string;
  readonly el: HTMLElement;
  readonly heatmap: Heatmap;
  readonly rowStrip: TokenStrip;
  readonly colStrip: TokenStrip;
  readonly cells: SiteCellTable;
  /** The card's other elements (cardview.ts). */
  private readonly ui: CardView;

  private data: CardData = { exact: null, attribution: null, error: "", cleanTokens: [], corruptedTokens: [], diff: [], metricLabel: "" };
  private mode: ViewMode = "mixed";
  /** Which slice is shown, and the selected cell (slicing.ts). */
  private readonly slicing = new Slicing();
  private combined: Combined = { values: new Float32Array(0), approx: null, source: "none", exactCells: 0, approxCells: 0 };
  private agree: Agreement | null = null;
  private slice: Float32Array = new Float32Array(0);
  private approxSlice: Float32Array | null = null;
  private rows = 0;
  private cols = 0;
  private scale: ColorScale = diverging("light");
  private palette: Palette | null = null;
  private cellW = 16;
  private cellH = 16;
  private rowLabels: string[] = [];
  private colLabels: string[] = [];
  private hover: Cell | null = null;
  private colMark: number | null = null;
  private sliceSelects = new Map<number, HTMLSelectElement>();
  private readonly offs: Array<() => void> = [];
  /** Number of draws (tests check that streaming updates are coalesced). */
  draws = 0;

  constructor(private readonly opts: SiteCardOptions) {
    const site = opts.site;
    this.site = site;
    const ui = buildCardView(site, {
      onHover: (cell) => this.setHover(cell),
      onClick: (cell) => this.click(cell),
      onColHover: (i) => {
        if (this.slicing.colIsPos()) this.opts.onPosHover?.(i);
      },
    });
    this.ui = ui;
    this.el = ui.el;
    this.heatmap = ui.heatmap;
    this.rowStrip = ui.rowStrip;
    this.colStrip = ui.colStrip;
    this.cells = ui.cells;
    const canvas = ui.heatmap.canvas;

    listen(this.offs, this.ui.modeSelect, "change", () => {
      this.mode = this.ui.modeSelect.value as ViewMode;
      this.recompute();
      this.opts.onChange();
    });
    listen(this.offs, canvas, "keydown", (ev) => this.onKey(ev));
    listen(this.offs, canvas, "blur", () => {
      if (this.hover) this.setHover(null);
    });
  }

  // ---- data --------------------------------------------------------------------------------

  /** New entries / tokens. Recomputes what depends on them. */
  setData(d: CardData): void {
    const old = this.data;
    this.data = d;
    const entriesChanged = old.exact !== d.exact || old.attribution !== d.attribution;
    const tokensChanged = !sameStrings(old.cleanTokens, d.cleanTokens) || !sameStrings(old.diff.map(String), d.diff.map(String));
    if (entriesChanged) this.recompute();
    else if (tokensChanged) this.updateLabels();
    this.ui.errorEl.textContent = d.error;
    this.ui.errorEl.hidden = !d.error;
    if (old.metricLabel !== d.metricLabel) this.renderLegend();
  }

  getMode(): ViewMode {
    return this.mode;
  }

  setMode(m: ViewMode): void {
    this.mode = m;
    this.ui.modeSelect.value = m;
    this.recompute();
  }

  /** The entry that defines the geometry: exact, else attribution. */
  private primary(): SiteEntry | null {
    return this.data.exact ?? this.data.attribution;
  }

  private recompute(): void {
    const p = this.primary();
    const dims = p ? p.dims : [];
    const shape = p ? p.shape : [];
    if (this.slicing.setGeometry(dims, shape)) this.hover = null;
    const { exact, attribution } = this.data;
    const both = !!exact && !!attribution;
    this.ui.modeField.hidden = !both;
    if (!both && this.mode !== "mixed") this.mode = "mixed";
    this.ui.modeSelect.value = this.mode;
    this.combined = combine(exact, attribution, this.mode);
    this.agree = both && exact!.data.length === attribution!.data.length ? agreement(exact!.data, attribution!.data) : null;
    this.scale = diverging(this.palette?.theme ?? "light", maxAbs(this.combined.values) || 1);
    // First data for this geometry: show the slice with the largest effect.
    this.slicing.autoFix(this.combined.values);
    const g = this.slicing.size();
    this.rows = p ? g.rows : 0;
    this.cols = p ? g.cols : 0;
    this.renderSlices();
    this.updateSlice();
    this.updateLabels();
    this.renderBadge();
    this.renderAgreement();
    this.renderLegend();
    const empty = !p || this.rows * this.cols === 0;
    this.ui.emptyEl.hidden = !empty;
    this.ui.gridEl.hidden = empty;
  }

  private updateSlice(): void {
    const c = this.combined;
    const sl = this.slicing;
    this.slice = c.values.length ? sl.extract(c.values) : new Float32Array(this.rows * this.cols).fill(NaN);
    this.approxSlice = c.approx ? sl.extract(c.approx) : null;
    const canvas = this.heatmap.canvas;
    const d = canvas.dataset;
    d.dims = sl.dims.join(",");
    d.rowDim = sl.dim(sl.axes.row);
    d.colDim = sl.dim(sl.axes.col);
    d.slice = JSON.stringify(sl.fixedAxes());
    d.source = c.source;
    d.maxAbs = String(this.scale.domain[1]);
  }

  private updateLabels(): void {
    const { rows, cols } = this;
    const { axes, dims } = this.slicing;
    const p = this.primary();
    const rl = axes.row >= 0 ? axisLabels(dims[axes.row], rows, p, this.data.cleanTokens) : rows ? [""] : [];
    const cl = axes.col >= 0 ? axisLabels(dims[axes.col], cols, p, this.data.cleanTokens) : cols ? [""] : [];
    if (!sameStrings(rl, this.rowLabels)) {
      this.rowLabels = rl;
      this.rowStrip.setTokens(rl);
    }
    if (!sameStrings(cl, this.colLabels)) {
      this.colLabels = cl;
      this.colStrip.setTokens(cl);
    }
    const pos = this.slicing.colIsPos();
    for (let j = 0; j < cols; j++) {
      const item = this.colStrip.item(j);
      if (!item) continue;
      const diff = pos && !!this.data.diff[j];
      item.classList.toggle("lw-pt-diff", diff);
      if (diff) item.dataset.diff = "true";
      else delete item.dataset.diff;
    }
  }

  private renderSlices(): void {
    syncSliceSelects({
      box: this.ui.slicesBox,
      selects: this.sliceSelects,
      site: this.site,
      axes: this.slicing.axes,
      dims: this.slicing.dims,
      shape: this.slicing.shape,
      p: this.primary(),
      tokens: this.data.cleanTokens,
      values: this.combined.values,
      fixed: this.slicing.fixed,
      onPick: (i, k) => {
        this.slicing.pick(i, k);
        this.hover = null;
        this.updateSlice();
        this.opts.onChange();
      },
    });
  }

  private renderBadge(): void {
    const c = this.combined;
    const ex = this.data.exact;
    const text = badgeText(c, ex);
    this.ui.badge.textContent = text;
    this.ui.badge.dataset.source = c.source;
    this.ui.badge.className = `lw-pt-badge lw-pt-badge-${c.source}`;
    this.ui.hookEl.textContent = this.primary()?.hook ?? "";
  }

  private renderAgreement(): void {
    fillAgreement(this.ui.agreementEl, this.site, this.agree);
  }

  private renderLegend(): void {
    const sc = this.scale;
    this.ui.legendEl.replaceChildren(...legendNodes(sc, !!this.combined.approx, hasNaN(this.combined.values), this.data.metricLabel));
    const m = sc.domain[1];
    this.ui.legendEl.dataset.min = String(-m);
    this.ui.legendEl.dataset.max = String(m);
    this.ui.legendEl.hidden = this.combined.source === "none";
  }

  // ---- view state ----------------------------------------------------------------------------

  setPalette(p: Palette): void {
    const themeChanged = this.palette?.theme !== p.theme;
    this.palette = p;
    this.heatmap.setColors({ bg: p.bg, accent: p.accent, fg: p.fg });
    if (themeChanged) {
      this.scale = diverging(p.theme, this.scale.domain[1]);
      this.renderLegend();
    }
  }

  /** Size the cells for about `width` CSS px. */
  setWidth(width: number): void {
    const { w, h: ch } = cellSize(this.rows, this.cols, width);
    this.cellW = w;
    this.cellH = ch;
  }

  /** The selected cell (full index in dims order), or null. Shows its slice when it is new. */
  setSelected(index: number[] | null): void {
    if (!this.slicing.select(index)) return;
    for (const [i, sel] of this.sliceSelects) sel.value = String(this.slicing.fixed[i]);
    this.updateSlice();
  }

  /** Mark a token position (column band) when columns are positions; null clears. */
  setColumnMark(pos: number | null): void {
    this.colMark = this.slicing.colIsPos() && pos !== null && pos < this.cols ? pos : null;
    this.colStrip.setMarks(this.colMark);
  }

  private setHover(cell: Cell | null): void {
    this.hover = cell;
    this.draw();
    this.opts.onHover(this, cell);
  }

  private click(cell: Cell): void {
    if (!this.primary()) return;
    this.opts.onCellClick(this.site, this.indexOf(cell));
  }

  /** Full index (dims order) of heatmap cell (row, col) in the slice shown. */
  indexOf(cell: Cell): number[] {
    return this.slicing.indexOf(cell.row, cell.col);
  }

  private onKey(ev: KeyboardEvent): void {
    const moves: Record<string, [number, number]> = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const m = moves[ev.key];
    if (m && this.rows && this.cols) {
      ev.preventDefault();
      const cur = this.hover ?? this.slicing.selectedCell() ?? { row: 0, col: 0 };
      const row = Math.max(0, Math.min(this.rows - 1, cur.row + (this.hover ? m[0] : 0)));
      const col = Math.max(0, Math.min(this.cols - 1, cur.col + (this.hover ? m[1] : 0)));
      this.setHover({ row, col });
    } else if ((ev.key === "Enter" || ev.key === " ") && this.hover) {
      ev.preventDefault();
      this.click(this.hover);
    } else if (ev.key === "Escape" && this.hover) {
      this.setHover(null);
    }
  }

  getHover(): Cell | null {
    return this.hover;
  }

  get layout(): GridLayout {
    return this.heatmap.layout;
  }

  // ---- drawing --------------------------------------------------------------------------------

  draw(): void {
    this.draws++;
    const hm = this.heatmap;
    hm.setCellSize(this.cellW, this.cellH, GAP);
    hm.setData(this.slice, this.rows, this.cols);
    hm.setScale(this.scale);
    hm.setHighlight({ col: this.colMark, cell: this.slicing.selectedCell() });
    hm.draw();
    const l = hm.layout;
    this.rowStrip.setSize(this.cellH + GAP, l.originY);
    this.colStrip.setSize(this.cellW + GAP, l.originX);
    const sel = this.slicing.selectedCell();
    hm.canvas.dataset.selected = sel ? `${sel.row},${sel.col}` : "";
    const { rows, cols, slice, approxSlice, scale, cellW, cellH } = this;
    drawOverlay(hm.canvas, { layout: l, rows, cols, slice, approxSlice, scale, palette: this.palette, cellW, cellH, hover: this.hover });
    this.cells.update({
      site: this.site,
      rows,
      cols,
      rowDim: hm.canvas.dataset.rowDim ?? "",
      colDim: hm.canvas.dataset.colDim ?? "",
      rowLabels: this.rowLabels,
      colLabels: this.colLabels,
      values: slice,
      approx: approxSlice,
      source: this.combined.source,
      metric: this.data.metricLabel,
      sliceText: this.sliceText(),
      index: (r, c) => this.slicing.indexOf(r, c),
    });
  }

  // ---- tooltip, export ------------------------------------------------------------------------

  /** What the tooltip says about heatmap cell (row, col). */
  info(cell: Cell): CellInfo {
    return cellInfo(this.site, this.data, this.primary(), this.slicing.dims, this.slicing.shape, this.indexOf(cell));
  }

  /** The fixed axes of the slice shown, e.g. "head L1H2" (labels as in the slice selects), or "". */
  private sliceText(): string {
    return this.slicing.text(this.primary(), this.data.cleanTokens);
  }

  /** Everything the SVG export draws for this card (the slice shown). */
  exportSpec(): ExportSpec {
    const sliceText = this.sliceText();
    const src = this.ui.badge.textContent ?? "";
    return {
      site: this.site,
      title: `${this.site}${sliceText ? ` — ${sliceText}` : ""}`,
      subtitle: `${this.primary()?.hook ?? ""} · ${src}`,
      rows: this.rows,
      cols: this.cols,
      rowLabels: this.rowLabels.map((s) => displayToken(s)),
      colLabels: this.colLabels.map((s) => displayToken(s)),
      colMarks: Array.from({ length: this.cols }, (_, j) => this.slicing.colIsPos() && !!this.data.diff[j]),
      values: this.slice,
      approx: this.approxSlice,
      scale: this.scale,
      legend: this.data.metricLabel,
      agreement: agreementText(this.agree),
      selected: this.slicing.selectedCell(),
    };
  }

  hasValues(): boolean {
    return this.combined.source !== "none";
  }

  destroy(): void {
    this.offs.splice(0).forEach((f) => f());
    this.heatmap.destroy();
    this.rowStrip.destroy();
    this.colStrip.destroy();
    this.cells.table.cancel();
    this.el.remove();
  }
}

