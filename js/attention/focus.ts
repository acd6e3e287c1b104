// The focus panel of AttentionGrid: one head's full [T, T] pattern (queries as rows, keys as
// columns) with token labels on both axes. Hovering a query token highlights its row (where it
// attends) and lists the top attended keys; hovering a key highlights its column (what attends to
// it). Clicking a token (or a cell: its query) locks the highlight; clicking again or Esc unlocks.

import type { ColorScale } from "../lib/colors";
import { sequential } from "../lib/colors";
import { button, h } from "../lib/dom";
import { fmt3 } from "../lib/format";
import type { Cell } from "../lib/heatmap";
import { Heatmap } from "../lib/heatmap";
import type { Palette } from "../lib/theme";
import { TokenStrip, displayToken } from "../lib/tokens";

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

/** The k largest entries of `values` as [index, value], largest first (ties: lower index first). */
export function topK(values: ArrayLike<number>, k: number): Array<[number, number]> {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) idx.push(i);
  idx.sort((a, b) => values[b] - values[a] || a - b);
  return idx.slice(0, k).map((i) => [i, values[i]]);
}

export interface FocusPanelOptions {
  onAblate: () => void;
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
  private T = 0;
  private tokens: string[] = [];
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
        this.hoverCell = cell;
        this.update();
      },
      onClick: (cell) => this.toggleLock({ axis: "row", index: cell.row }),
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

  /** Lock the next query token (after the locked one, wrapping) whose text contains `text`
   * (case-insensitive) and scroll its row into view; returns its index, or null. */
  findNext(text: string): number | null {
    const needle = text.toLowerCase();
    if (!needle || !this.T) return null;
    const start = this.locked?.axis === "row" ? this.locked.index + 1 : 0;
    for (let n = 0; n < this.T; n++) {
      const i = (start + n) % this.T;
      if ((this.tokens[i] ?? "").toLowerCase().includes(needle)) {
        this.locked = { axis: "row", index: i };
        this.update();
        const y = this.heatmap.layout.originY + i * this.cell;
        this.scroller.scrollTop = Math.max(0, y - this.scroller.clientHeight / 2);
        this.el.dataset.found = String(i);
        return i;
      }
    }
    this.el.dataset.found = "";
    return null;
  }

  /** Show head (l, h): its [T, T] pattern (a view, not copied), token strings and score line. */
  setHead(head: [number, number], pattern: Float32Array, T: number, tokens: string[], scores: Array<[string, number]>): void {
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
    const tokensChanged = T !== this.T || tokens.length !== this.tokens.length || tokens.some((t, i) => t !== this.tokens[i]);
    this.pattern = pattern;
    this.T = T;
    if (tokensChanged) {
      this.tokens = Array.from({ length: T }, (_, i) => (i < tokens.length ? tokens[i] : `#${i}`));
      this.queries.setTokens(this.tokens);
      this.keys.setTokens(this.tokens);
      this.locked = null;
      this.hover = null;
      this.hoverCell = null;
    }
    this.heatmap.setData(pattern, T, T);
    this.el.hidden = false;
  }

  hide(): void {
    this.head = null;
    this.el.hidden = true;
    if (this.lastQuery !== null) {
      this.lastQuery = null;
      this.opts.onQuery?.(null);
    }
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
    const cell = patternCellSize(this.T, width);
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
    this.heatmap.setHighlight({
      row: mark?.axis === "row" ? mark.index : null,
      col: mark?.axis === "col" ? mark.index : null,
      cell,
    });
    this.heatmap.draw();
    const activeQ = mark?.axis === "row" ? mark.index : cell ? cell.row : null;
    const activeK = mark?.axis === "col" ? mark.index : cell ? cell.col : null;
    this.queries.setMarks(activeQ, this.locked?.axis === "row" ? this.locked.index : null);
    this.keys.setMarks(activeK, this.locked?.axis === "col" ? this.locked.index : null);
    this.el.dataset.locked = this.locked ? `${this.locked.axis}:${this.locked.index}` : "";
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
    const T = this.T;
    if (mark) {
      const i = mark.index;
      const vals = new Float32Array(T);
      for (let j = 0; j < T; j++) vals[j] = mark.axis === "row" ? this.pattern[i * T + j] : this.pattern[j * T + i];
      const top = topK(vals, 5);
      const lead =
        mark.axis === "row" ? `Query #${i} “${this.tok(i)}” attends to:` : `Key #${i} “${this.tok(i)}” is attended by:`;
      const list = h("ol", { class: "lw-top-list", testid: "lw-attends" });
      for (const [j, v] of top) {
        const item = h("li", { class: "lw-top-item", testid: "lw-attend-item" }, [
          h("span", { class: "lw-top-token", text: `#${j} ${this.tok(j)}` }),
          h("span", { class: "lw-top-weight", text: v.toFixed(3) }),
        ]);
        item.dataset.index = String(j);
        item.dataset.value = String(v);
        list.appendChild(item);
      }
      const children: Node[] = [h("span", { class: "lw-info-lead", text: lead }), list];
      if (this.locked) children.push(h("span", { class: "lw-info-hint", text: "locked: click the token again or press Esc to unlock" }));
      this.info.replaceChildren(...children);
    } else if (cell) {
      const v = this.pattern[cell.row * T + cell.col];
      this.info.replaceChildren(
        h("span", {
          class: "lw-info-lead",
          text: `#${cell.row} “${this.tok(cell.row)}” → #${cell.col} “${this.tok(cell.col)}”: ${fmt3(v)}`,
        }),
      );
    } else {
      this.info.replaceChildren(
        h("span", { class: "lw-info-hint", text: "Hover a query token (left) or key token (top); click to lock." }),
      );
    }
  }

  toSVG(): string {
    const label = this.head ? `L${this.head[0]}H${this.head[1]}  blocks.${this.head[0]}.attn.hook_pattern` : "";
    const labels = this.tokens.map((t) => displayToken(t));
    return this.heatmap.toSVG({ rowLabels: labels, colLabels: labels, title: label, legend: "attention weight" });
  }

  destroy(): void {
    this.heatmap.destroy();
    this.queries.destroy();
    this.keys.destroy();
    this.el.remove();
  }
}
