// The zoomed-out view of a focused head on a long prompt: its pattern max-pooled to about the
// panel's pixel width (`overview` request, float16; a cell = the largest weight of bin x bin
// tokens), with the full-resolution window (FocusPanel) marked as a rectangle. Clicking a cell
// moves the window there; hovering says which tokens a cell covers, its max and that it is the
// float16 overview (exact values are in the window).

import type { ColorScale } from "../lib/colors";
import { h } from "../lib/dom";
import type { Cell } from "../lib/heatmap";
import { Heatmap } from "../lib/heatmap";
import type { Palette } from "../lib/theme";
import type { Bounds } from "./window";
import { WINDOW_SIDES } from "./window";

export interface OverviewOptions {
  /** A cell was clicked: centre the window on query token `q`, key token `k`. */
  onPick: (q: number, k: number) => void;
  /** The window side (tokens) was changed. */
  onSide: (side: number) => void;
}

/** Cell size (CSS px) for an overview of `side` cells in about `width` px: 1..8. */
export function overviewCellSize(side: number, width: number): number {
  return side > 0 ? Math.max(1, Math.min(8, Math.floor(width / side))) : 1;
}

/** Token ranges [q0, q1) x [k0, k1) covered by overview cell (row, col). */
export function cellTokens(row: number, col: number, bin: number, pos: number): Bounds {
  return [row * bin, Math.min(pos, (row + 1) * bin), col * bin, Math.min(pos, (col + 1) * bin)];
}

export class OverviewPanel {
  readonly el: HTMLElement;
  readonly heatmap: Heatmap;
  readonly sideSelect: HTMLSelectElement;
  private readonly rect: HTMLElement;
  private readonly info: HTMLElement;
  private readonly note: HTMLElement;
  private side = 0;
  private bin = 1;
  private pos = 0;

  constructor(private readonly opts: OverviewOptions) {
    this.heatmap = new Heatmap({
      testid: "lw-overview",
      ariaLabel: "Overview of the focused head's pattern (max-pooled); click to move the window",
      onHover: (cell) => this.hover(cell),
      onClick: (cell) => {
        const [q0, q1, k0, k1] = cellTokens(cell.row, cell.col, this.bin, this.pos);
        this.opts.onPick(Math.floor((q0 + q1) / 2), Math.floor((k0 + k1) / 2));
      },
    });
    this.rect = h("div", { class: "lw-overview-window", testid: "lw-overview-window" });
    Object.assign(this.rect.style, { position: "absolute", pointerEvents: "none", boxSizing: "border-box" });
    const wrap = h("div", { class: "lw-overview-wrap" }, [this.heatmap.canvas, this.rect]);
    Object.assign(wrap.style, { position: "relative", display: "inline-block", lineHeight: "0" });
    this.sideSelect = h("select", { class: "lw-select", testid: "lw-window-side", attrs: { "aria-label": "Window size in tokens" } });
    this.sideSelect.addEventListener("change", () => this.opts.onSide(Number(this.sideSelect.value)));
    this.note = h("span", { class: "lw-summary", testid: "lw-overview-note" });
    this.info = h("div", { class: "lw-focus-info", testid: "lw-overview-info" });
    this.el = h("div", { class: "lw-overview", testid: "lw-overview-panel" }, [
      h("div", { class: "lw-controls" }, [
        this.note,
        h("label", { class: "lw-field" }, [h("span", { text: "Window" }), this.sideSelect]),
      ]),
      wrap,
      this.info,
    ]);
    this.el.hidden = true;
  }

  /** Show an overview [side, side] (row-major, a view) of a `pos`-token pattern, `bin` tokens a cell. */
  setData(values: Float32Array, side: number, bin: number, pos: number, windowMax: number, windowSide: number, head = ""): void {
    this.el.dataset.head = head;
    this.side = side;
    this.bin = bin;
    this.pos = pos;
    this.heatmap.setData(values, side, side);
    const sides = WINDOW_SIDES.filter((s) => s <= windowMax && s < pos);
    this.sideSelect.replaceChildren(...sides.map((s) => h("option", { text: `${s} tokens`, attrs: { value: String(s) } })));
    this.sideSelect.value = String(windowSide);
    this.note.textContent = `Overview: max of ${bin}×${bin} tokens a cell (float16) · click to move the window`;
    this.el.dataset.bin = String(bin);
    this.el.dataset.side = String(side);
    this.el.hidden = false;
  }

  setPalette(p: Palette, scale: ColorScale): void {
    this.heatmap.setScale(scale);
    this.heatmap.setColors({ bg: p.bg, accent: p.accent, fg: p.fg });
    this.rect.style.border = `2px solid ${p.accent}`;
  }

  /** Lay out for about `width` CSS px and mark the window `b` (token bounds). */
  draw(width: number, b: Bounds | null): void {
    this.heatmap.setCellSize(overviewCellSize(this.side, width));
    this.heatmap.draw();
    const l = this.heatmap.layout;
    this.rect.hidden = !b;
    this.el.dataset.window = b ? b.join(",") : "";
    this.el.dataset.drawnAt = String(performance.now());
    if (!b) return;
    const px = l.cellW / this.bin; // CSS px a token
    Object.assign(this.rect.style, {
      left: `${l.originX + b[2] * px - 1}px`,
      top: `${l.originY + b[0] * px - 1}px`,
      width: `${Math.max(4, (b[3] - b[2]) * px + 2)}px`,
      height: `${Math.max(4, (b[1] - b[0]) * px + 2)}px`,
    });
  }

  private hover(cell: Cell | null): void {
    if (!cell) {
      this.info.replaceChildren(h("span", { class: "lw-info-hint", text: "Hover the overview; click to show that part in full." }));
      this.info.dataset.value = "";
      return;
    }
    const [q0, q1, k0, k1] = cellTokens(cell.row, cell.col, this.bin, this.pos);
    const v = this.heatmap.value(cell.row, cell.col);
    const span = (a: number, b: number) => (b - a > 1 ? `#${a}–#${b - 1}` : `#${a}`);
    this.info.replaceChildren(
      h("span", {
        class: "lw-info-lead",
        text: `queries ${span(q0, q1)} → keys ${span(k0, k1)}: max ${v.toFixed(3)} (float16 overview; exact values in the window)`,
      }),
    );
    this.info.dataset.value = String(v);
    this.info.dataset.cell = `${q0},${q1},${k0},${k1}`;
  }

  hide(): void {
    this.el.hidden = true;
  }

  isShown(): boolean {
    return !this.el.hidden;
  }

  destroy(): void {
    this.heatmap.destroy();
    this.el.remove();
  }
}
