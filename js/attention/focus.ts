// The focus panel of AttentionGrid: one head's pattern (queries as rows, keys as columns) with
// token labels on both axes: all of it on short prompts, on long ones a window of it (queries
// q0.. x keys k0.., exact values from the `window` request; the overview beside it picks where).
// Hovering a query token highlights its row (where it attends) and lists the top attended keys;
// hovering a key highlights its column (what attends to it). Clicking a token (or a cell: its
// query) locks the highlight; clicking again or Esc unlocks. Indices are the prompt's (global).
// The info line's content (top attended tokens, a cell's value, hints) is built in focusinfo.ts.

import type { ColorScale } from "../lib/colors";
import { sequential } from "../lib/colors";
import { button, h } from "../lib/dom";
import { fmt3 } from "../lib/format";
import type { Cell } from "../lib/heatmap";
import { Heatmap } from "../lib/heatmap";
import type { Palette } from "../lib/theme";
import { TokenStrip, displayToken, tokenTitle } from "../lib/tokens";
import { renderFocusInfo } from "./focusinfo";

export type Axis = "row" | "col";

export interface Mark {
  axis: Axis;
  index: number;
}

/** Pattern cell size in CSS px for T tokens in about `width` CSS px: integer, 1..22. */
export function patternCellSize(T: number, width: number): number {
  if (T <= 0) return 16;
  return Math.max(1, Math.min(22, Math.floor(width / T)));
}

/** Which part of the pattern the panel shows: rows q0..q0+rows-1, columns k0..k0+cols-1. */
export interface WindowSpec {
  q0: number;
  k0: number;
  rows: number;
  cols: number;
}

export interface FocusPanelOptions {
  onAblate: () => void;
  /** Find chose query `i` outside the window: show it (the window moves; the lock is kept). */
  onReveal?: (i: number) => void;
  /** Wheel over a window of a longer pattern: move it by `dq` queries and `dk` keys. */
  onPan?: (dq: number, dk: number) => void;
  /** The query row now highlighted (hovered or locked), or null. */
  onQuery?: (q: number | null) => void;
  onClear: () => void;
  onClose: () => void;
}

export class FocusPanel {
  readonly el: HTMLElement;
  readonly heatmap: Heatmap;
  readonly queries: TokenStrip;
  readonly keys: TokenStrip;
  readonly ablateBtn: HTMLButtonElement;
  readonly clearBtn: HTMLButtonElement;
  private readonly title: HTMLElement;
  private readonly hook: HTMLElement;
  private readonly scoresLine: HTMLElement;
  private readonly info: HTMLElement;
  private pattern: Float32Array = new Float32Array(0);
  /** All of the prompt's tokens (the window's labels are a slice). */
  private tokens: string[] = [];
  private win: WindowSpec = { q0: 0, k0: 0, rows: 0, cols: 0 };
  private labelsKey = "";
  private head: [number, number] | null = null;
  private hover: Mark | null = null;
  private hoverCell: Cell | null = null;
  private locked: Mark | null = null;
  private scale: ColorScale = sequential("light");
  private lastQuery: number | null = null;
  private readonly find: HTMLInputElement;
  private readonly scroller: HTMLElement;
  private cell = 16;

  constructor(private readonly opts: FocusPanelOptions) {
    this.title = h("h3", { class: "lw-focus-title", testid: "lw-focus-title" });
    this.hook = h("code", { class: "lw-hook", testid: "lw-focus-hook" });
    this.ablateBtn = button("Ablate", "lw-ablate", "lw-btn lw-btn-primary");
    this.clearBtn = button("Clear", "lw-clear");
    this.clearBtn.title = "Clear the ablation result";
    const close = button("×", "lw-unfocus", "lw-btn lw-btn-icon");
    close.setAttribute("aria-label", "Close the focused head");
    close.title = "Close (Esc)";
    this.ablateBtn.addEventListener("click", opts.onAblate);
    this.clearBtn.addEventListener("click", opts.onClear);
    close.addEventListener("click", opts.onClose);
    this.scoresLine = h("div", { class: "lw-focus-scores", testid: "lw-focus-scores" });

    this.heatmap = new Heatmap({
      testid: "lw-pattern",
      ariaLabel: "Attention pattern: queries as rows, keys as columns",
      onHover: (cell) => {
        this.hoverCell = cell ? { row: cell.row + this.win.q0, col: cell.col + this.win.k0 } : null;
        this.update();
      },
      onClick: (cell) => this.toggleLock({ axis: "row", index: cell.row + this.win.q0 }),
    });
    this.heatmap.canvas.addEventListener("wheel", (ev) => {
      if (!this.opts.onPan || !this.partial()) return;
      ev.preventDefault();
      const step = (d: number, side: number) => (d === 0 ? 0 : Math.sign(d) * Math.max(1, Math.round(side / 4)));
      const horizontal = ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY);
      if (horizontal) this.opts.onPan(0, step(ev.shiftKey ? ev.deltaY : ev.deltaX, this.win.cols));
      else this.opts.onPan(step(ev.deltaY, this.win.rows), 0);
    });
    this.queries = new TokenStrip({
      layout: "axis-left",
      testid: "lw-queries",
      itemTestid: "lw-query",
      onHover: (i) => {
        this.hover = i === null ? null : { axis: "row", index: i };
        this.update();
      },
      onClick: (i) => this.toggleLock({ axis: "row", index: i }),
    });
    this.keys = new TokenStrip({
      layout: "axis-top",
      testid: "lw-keys",
      itemTestid: "lw-key",
      onHover: (i) => {
        this.hover = i === null ? null : { axis: "col", index: i };
        this.update();
      },
      onClick: (i) => this.toggleLock({ axis: "col", index: i }),
    });
    this.info = h("div", { class: "lw-focus-info", testid: "lw-focus-info", attrs: { "aria-live": "polite" } });

    const corner = h("div", { class: "lw-pattern-corner" }, [
      h("span", { text: "key →" }),
      h("span", { text: "query ↓" }),
    ]);
    // Find a token (long prompts): Enter locks the next query whose text contains it and scrolls there.
    this.find = h("input", {
      class: "lw-input lw-find",
      testid: "lw-find",
      attrs: { type: "search", placeholder: "Find token…", "aria-label": "Find a token in the pattern" },
    }) as HTMLInputElement;
    this.find.addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter") return;
      ev.preventDefault();
      this.findNext(this.find.value);
    });
    const scroller = h("div", { class: "lw-pattern-scroll" }, [
      h("div", { class: "lw-pattern" }, [corner, this.keys.el, this.queries.el, this.heatmap.canvas]),
    ]);
    this.el = h("section", { class: "lw-focus", testid: "lw-focus" }, [
      h("div", { class: "lw-focus-head" }, [
        this.title,
        this.hook,
        h("span", { class: "lw-spacer" }),
        this.find,
        this.ablateBtn,
        this.clearBtn,
        close,
      ]),
      this.scoresLine,
      scroller,
      this.info,
    ]);
    this.scroller = scroller;
    this.el.hidden = true;
  }

  /** Lock the next query token of the prompt (after the locked one, wrapping) whose text contains
   * `text` (case-insensitive) and scroll its row into view (outside the window: `onReveal` moves
   * the window to it); returns its index, or null. */
  findNext(text: string): number | null {
    const needle = text.toLowerCase();
    const T = this.tokens.length;
    if (!needle || !T) return null;
    const start = this.locked?.axis === "row" ? this.locked.index + 1 : 0;
    for (let n = 0; n < T; n++) {
      const i = (start + n) % T;
      if ((this.tokens[i] ?? "").toLowerCase().includes(needle)) {
        this.locked = { axis: "row", index: i };
        this.el.dataset.found = String(i);
        if (!this.inRows(i) && this.opts.onReveal) this.opts.onReveal(i);
        else this.scrollTo(i);
        this.update();
        return i;
      }
    }
    this.el.dataset.found = "";
    return null;
  }

  /** Scroll query `i`'s row (when in the window) into the middle of the panel. */
  scrollTo(i: number): void {
    if (!this.inRows(i)) return;
    const y = this.heatmap.layout.originY + (i - this.win.q0) * this.cell;
    this.scroller.scrollTop = Math.max(0, y - this.scroller.clientHeight / 2);
  }

  /** Show head (l, h): `pattern` (a view, not copied) holds `win.rows` x `win.cols` values, queries
   * q0.. x keys k0.. (default: all of a [T, T] pattern); `tokens` are all of the prompt's. */
  setHead(head: [number, number], pattern: Float32Array, tokens: string[], scores: Array<[string, number]>, win?: WindowSpec): void {
    const [l, hd] = head;
    const label = `L${l}H${hd}`;
    this.head = head;
    this.title.textContent = label;
    this.hook.textContent = `blocks.${l}.attn.hook_pattern`;
    this.ablateBtn.textContent = `Ablate ${label}`;
    this.el.dataset.head = `${l},${hd}`;
    this.scoresLine.replaceChildren(
      ...scores.map(([name, v]) => {
        const s = h("span", { class: "lw-score" }, [
          h("span", { class: "lw-score-name", text: name }),
          h("span", { class: "lw-score-value", text: fmt3(v) }),
        ]);
        s.dataset.score = name;
        s.dataset.value = String(v);
        return s;
      }),
    );
    const T = tokens.length;
    const w = win ?? { q0: 0, k0: 0, rows: T, cols: T };
    const tokensChanged = tokens.length !== this.tokens.length || tokens.some((t, i) => t !== this.tokens[i]);
    if (tokensChanged) {
      this.tokens = [...tokens];
      this.locked = null;
      this.hover = null;
      this.hoverCell = null;
    }
    this.pattern = pattern;
    this.win = { ...w };
    const key = `${w.q0},${w.rows},${w.k0},${w.cols}`;
    if (tokensChanged || key !== this.labelsKey) {
      this.labelsKey = key;
      this.label(this.queries, w.q0, w.rows);
      this.label(this.keys, w.k0, w.cols);
    }
    this.el.dataset.window = `${w.q0},${w.q0 + w.rows},${w.k0},${w.k0 + w.cols}`;
    this.el.dataset.partial = this.partial() ? "true" : "false";
    this.heatmap.setData(pattern, w.rows, w.cols);
    this.el.hidden = false;
  }

  /** Token labels `start..start+n-1` on an axis; each item's data-index and title are the prompt's. */
  private label(strip: TokenStrip, start: number, n: number): void {
    strip.setTokens(Array.from({ length: n }, (_, i) => this.tokens[start + i] ?? `#${start + i}`));
    for (let i = 0; i < n; i++) {
      const item = strip.item(i);
      if (!item) continue;
      item.dataset.index = String(start + i);
      item.title = tokenTitle(this.tokens[start + i] ?? "", start + i);
    }
  }

  /** Whether the panel shows a window of a longer pattern. */
  partial(): boolean {
    const T = this.tokens.length;
    return this.win.rows < T || this.win.cols < T;
  }

  private inRows(i: number): boolean {
    return i >= this.win.q0 && i < this.win.q0 + this.win.rows;
  }

  private inCols(j: number): boolean {
    return j >= this.win.k0 && j < this.win.k0 + this.win.cols;
  }

  /** The value at (query q, key k) of the prompt, or NaN outside the window. */
  value(q: number, k: number): number {
    if (!this.inRows(q) || !this.inCols(k)) return NaN;
    return this.pattern[(q - this.win.q0) * this.win.cols + (k - this.win.k0)];
  }

  hide(): void {
    this.head = null;
    this.el.hidden = true;
    if (this.lastQuery !== null) {
      this.lastQuery = null;
      this.opts.onQuery?.(null);
    }
  }

  /** "l,h" of the head shown, or null. */
  shownHead(): string | null {
    return this.head && !this.el.hidden ? `${this.head[0]},${this.head[1]}` : null;
  }

  isShown(): boolean {
    return !this.el.hidden;
  }

  setPalette(p: Palette): void {
    this.scale = sequential(p.theme);
    this.heatmap.setScale(this.scale);
    this.heatmap.setColors({ bg: p.bg, accent: p.accent, fg: p.fg });
  }

  /** Lay out for about `width` CSS px of pattern. */
  setWidth(width: number): void {
    const cell = patternCellSize(Math.max(this.win.rows, this.win.cols), width);
    this.cell = cell;
    this.heatmap.setCellSize(cell);
    const origin = this.heatmap.layout.originX;
    this.queries.setSize(cell, origin);
    this.keys.setSize(cell, origin);
  }

  getLocked(): Mark | null {
    return this.locked;
  }

  /** Unlock; returns false when nothing was locked. */
  unlock(): boolean {
    if (!this.locked) return false;
    this.locked = null;
    this.update();
    return true;
  }

  toggleLock(m: Mark): void {
    const same = this.locked && this.locked.axis === m.axis && this.locked.index === m.index;
    this.locked = same ? null : m;
    this.update();
  }

  /** Apply hover/lock state to the heatmap, the axis labels and the info line; redraw. */
  update(): void {
    if (!this.head) return;
    const mark = this.locked ?? this.hover;
    const cell = this.locked ? null : this.hoverCell;
    const { q0, k0 } = this.win;
    const local = (i: number | null | undefined, o: number, inside: (i: number) => boolean) =>
      i == null || !inside(i) ? null : i - o;
    this.heatmap.setHighlight({
      row: mark?.axis === "row" ? local(mark.index, q0, (i) => this.inRows(i)) : null,
      col: mark?.axis === "col" ? local(mark.index, k0, (i) => this.inCols(i)) : null,
      cell: cell ? { row: cell.row - q0, col: cell.col - k0 } : null,
    });
    this.heatmap.draw();
    const activeQ = mark?.axis === "row" ? mark.index : cell ? cell.row : null;
    const activeK = mark?.axis === "col" ? mark.index : cell ? cell.col : null;
    const lockQ = this.locked?.axis === "row" ? this.locked.index : null;
    const lockK = this.locked?.axis === "col" ? this.locked.index : null;
    this.queries.setMarks(local(activeQ, q0, (i) => this.inRows(i)), local(lockQ, q0, (i) => this.inRows(i)));
    this.keys.setMarks(local(activeK, k0, (i) => this.inCols(i)), local(lockK, k0, (i) => this.inCols(i)));
    this.el.dataset.locked = this.locked ? `${this.locked.axis}:${this.locked.index}` : "";
    this.el.dataset.drawnAt = String(performance.now());
    this.renderInfo(mark, cell);
    if (activeQ !== this.lastQuery) {
      this.lastQuery = activeQ;
      this.opts.onQuery?.(activeQ);
    }
  }

  private tok(i: number): string {
    return displayToken(this.tokens[i] ?? `#${i}`);
  }

  private renderInfo(mark: Mark | null, cell: Cell | null): void {
    renderFocusInfo(
      this.info,
      {
        win: this.win,
        partial: this.partial(),
        locked: !!this.locked,
        value: (q, k) => this.value(q, k),
        tok: (i) => this.tok(i),
      },
      mark,
      cell,
    );
  }

  toSVG(): string {
    const label = this.head ? `L${this.head[0]}H${this.head[1]}  blocks.${this.head[0]}.attn.hook_pattern` : "";
    const { q0, k0, rows, cols } = this.win;
    const rowLabels = this.tokens.slice(q0, q0 + rows).map((t) => displayToken(t));
    const colLabels = this.tokens.slice(k0, k0 + cols).map((t) => displayToken(t));
    return this.heatmap.toSVG({ rowLabels, colLabels, title: label, legend: "attention weight" });
  }

  destroy(): void {
    this.heatmap.destroy();
    this.queries.destroy();
    this.keys.destroy();
    this.el.remove();
  }
}
