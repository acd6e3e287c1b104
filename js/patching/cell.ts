// The cell panel of PatchingHeatmap, drawn from the `cell_result` trait (docs/protocol.md): which
// activation was patched (label, hook), the metric after this one patch against the clean and
// corrupted runs (and where it lies between them), the exact and attribution values, the top
// predictions at the last position before and after, each pair's values when the inputs are a
// dataset (pairs.ts), and for head sites the head's attention pattern on the clean and the
// corrupted prompt side by side (the first pair's).

import type { Bytes } from "../lib/buffers";
import { decodeTensor } from "../lib/buffers";
import { sequential } from "../lib/colors";
import { h } from "../lib/dom";
import type { TopEntry } from "../lib/format";
import { fmt3, numberEl, topTable } from "../lib/format";
import { Heatmap } from "../lib/heatmap";
import { numberOr } from "../lib/json";
import type { Palette } from "../lib/theme";
import { TokenStrip, displayToken } from "../lib/tokens";
import { recovered } from "./data";
import type { PairRow } from "./pairs";
import { perPromptTable } from "./pairs";

export interface HeadInfo {
  layer: number;
  head: number;
  label?: string;
  tokens?: string[];
  clean_pattern: Bytes;
  corrupted_pattern: Bytes;
  shape: number[];
  dtype?: "f32" | "f16";
}

export interface CellResult {
  site: string;
  index: number[];
  label?: string;
  hook?: string;
  value: number;
  clean_value?: number;
  corrupted_value?: number;
  exact?: number | null;
  attribution?: number | null;
  top_before?: TopEntry[];
  top_after?: TopEntry[];
  head?: HeadInfo | null;
  /** Each pair's values (pairs.ts `PerPrompt`). */
  per_prompt?: unknown;
}

export function isCellResult(x: unknown): x is CellResult {
  if (!x || typeof x !== "object" || Array.isArray(x)) return false;
  const r = x as CellResult;
  return typeof r.site === "string" && Array.isArray(r.index) && typeof r.value === "number";
}

export interface CellContext {
  direction: string;
  cleanValue: number;
  corruptedValue: number;
  cleanTokens: string[];
  corruptedTokens: string[];
  palette: Palette | null;
  /** The prompt pairs (the `pairs` trait); 2+ adds the per-pair table. */
  pairs?: PairRow[];
}

/** Pattern cell size in CSS px for T tokens in about `width` CSS px. */
export function patternCell(T: number, width = 190): number {
  return T > 0 ? Math.max(3, Math.min(14, Math.floor(width / T))) : 14;
}

/** One [T, T] attention pattern with query labels on the left and key labels on top. */
class PatternView {
  readonly el: HTMLElement;
  readonly heatmap: Heatmap;
  private readonly queries: TokenStrip;
  private readonly keys: TokenStrip;
  private pattern: Float32Array = new Float32Array(0);
  private T = 0;
  private tokens: string[] = [];

  constructor(which: "clean" | "corrupted", private readonly info: HTMLElement) {
    this.heatmap = new Heatmap({
      testid: `lw-cell-pattern-${which}`,
      ariaLabel: `Attention pattern on the ${which} prompt: queries as rows, keys as columns`,
      onHover: (cell) => {
        this.heatmap.setHighlight({ cell });
        this.heatmap.draw();
        if (!cell) {
          this.info.textContent = "";
          return;
        }
        const v = this.pattern[cell.row * this.T + cell.col];
        const tok = (i: number) => displayToken(this.tokens[i] ?? `#${i}`);
        this.info.textContent = `${which}: query #${cell.row} “${tok(cell.row)}” → key #${cell.col} “${tok(cell.col)}”: ${fmt3(v)}`;
      },
    });
    this.queries = new TokenStrip({ layout: "axis-left", testid: `lw-cell-queries-${which}`, itemTestid: "lw-query" });
    this.keys = new TokenStrip({ layout: "axis-top", testid: `lw-cell-keys-${which}`, itemTestid: "lw-key" });
    this.el = h("figure", { class: "lw-pt-pattern", testid: `lw-cell-head-${which}` }, [
      h("figcaption", { text: which === "clean" ? "clean prompt" : "corrupted prompt" }),
      h("div", { class: "lw-pt-grid" }, [h("div", { class: "lw-pt-corner" }), this.keys.el, this.queries.el, this.heatmap.canvas]),
    ]);
  }

  set(pattern: Float32Array, T: number, tokens: string[], palette: Palette | null): void {
    this.pattern = pattern;
    this.T = T;
    this.tokens = Array.from({ length: T }, (_, i) => (i < tokens.length ? tokens[i] : `#${i}`));
    const cell = patternCell(T);
    this.heatmap.setCellSize(cell);
    this.heatmap.setData(pattern, T, T);
    this.heatmap.setScale(sequential(palette?.theme ?? "light"));
    if (palette) this.heatmap.setColors({ bg: palette.bg, accent: palette.accent, fg: palette.fg });
    this.heatmap.setHighlight({});
    this.heatmap.draw();
    this.queries.setTokens(this.tokens);
    this.keys.setTokens(this.tokens);
    const origin = this.heatmap.layout.originX;
    this.queries.setSize(cell, origin);
    this.keys.setSize(cell, origin);
  }

  destroy(): void {
    this.heatmap.destroy();
    this.queries.destroy();
    this.keys.destroy();
  }
}

export class CellPanel {
  readonly el: HTMLElement;
  private patterns: PatternView[] = [];
  private last: CellResult | null = null;

  constructor() {
    this.el = h("section", { class: "lw-pt-cell", testid: "lw-cell" });
    this.el.hidden = true;
  }

  isShown(): boolean {
    return !this.el.hidden;
  }

  /** The head-pattern heatmaps shown (for export). */
  patternHeatmaps(): Heatmap[] {
    return this.patterns.map((p) => p.heatmap);
  }

  result(): CellResult | null {
    return this.last;
  }

  /** Show a cell result, or hide the panel for `{}` / anything that is not one. */
  render(r: unknown, ctx: CellContext): void {
    this.patterns.forEach((p) => p.destroy());
    this.patterns = [];
    if (!isCellResult(r)) {
      this.last = null;
      this.el.hidden = true;
      this.el.replaceChildren();
      delete this.el.dataset.site;
      delete this.el.dataset.index;
      return;
    }
    this.last = r;
    const clean = numberOr(r.clean_value, ctx.cleanValue);
    const corrupted = numberOr(r.corrupted_value, ctx.corruptedValue);
    const value = r.value;
    const frac = recovered(value, clean, corrupted);
    const label = r.label || `${r.site} [${r.index.join(", ")}]`;
    const denoise = ctx.direction !== "noise";

    const valueRow = (name: string, testid: string, v: unknown, cls = "") =>
      h("div", { class: `lw-pt-value-row ${cls}` }, [h("span", { class: "lw-pt-value-name", text: name }), numberEl("span", testid, v)]);

    // Where the patched value lies on the corrupted (0) -> clean (1) axis.
    const track = h("div", { class: "lw-pt-track", testid: "lw-cell-track" });
    const lo = Math.min(0, Number.isFinite(frac) ? frac : 0);
    const hi = Math.max(1, Number.isFinite(frac) ? frac : 1);
    const at = (f: number) => `${((100 * (f - lo)) / (hi - lo)).toFixed(2)}%`;
    const tick = (f: number, text: string, cls: string) => {
      const t = h("span", { class: `lw-pt-tick ${cls}`, text });
      t.style.left = at(f);
      return t;
    };
    track.append(h("span", { class: "lw-pt-track-line" }), tick(0, "corrupted", "lw-pt-tick-corrupted"), tick(1, "clean", "lw-pt-tick-clean"));
    if (Number.isFinite(frac)) {
      const marker = h("span", { class: "lw-pt-marker" });
      marker.style.left = at(frac);
      track.appendChild(marker);
    }
    const recoveredEl = h("div", {
      class: "lw-pt-recovered",
      testid: "lw-cell-recovered",
      text: Number.isFinite(frac) ? `${(100 * frac).toFixed(1)}% of the way from the corrupted run to the clean run` : "",
    });
    recoveredEl.dataset.value = String(frac);

    const children: Array<Node | null> = [
      h("div", { class: "lw-pt-cell-head" }, [
        h("h3", { class: "lw-pt-cell-title", testid: "lw-cell-title", text: label }),
        h("code", { class: "lw-hook", testid: "lw-cell-hook", text: r.hook ?? "" }),
      ]),
      h("div", { class: "lw-pt-values", testid: "lw-cell-values" }, [
        valueRow("metric after this patch", "lw-cell-value", value, "lw-pt-value-main"),
        valueRow("clean run", "lw-cell-clean", clean),
        valueRow("corrupted run", "lw-cell-corrupted", corrupted),
        valueRow("exact sweep", "lw-cell-exact", r.exact ?? NaN),
        valueRow("attribution", "lw-cell-attribution", r.attribution ?? NaN),
      ]),
      track,
      recoveredEl,
      perPromptTable(r.per_prompt, ctx.pairs ?? []),
      h("div", { class: "lw-tops-title", text: (ctx.pairs?.length ?? 0) > 1 ? "Top predictions at the last position (pair 1)" : "Top predictions at the last position" }),
      h("div", { class: "lw-tops" }, [
        topTable("lw-cell-top-before", denoise ? "unpatched (corrupted run)" : "unpatched (clean run)", r.top_before),
        topTable("lw-cell-top-after", "after this patch", r.top_after),
      ]),
    ];

    const hd = r.head;
    if (hd && typeof hd === "object") {
      const info = h("div", { class: "lw-pt-pattern-info", testid: "lw-cell-pattern-info", attrs: { "aria-live": "polite" } });
      const box = h("div", { class: "lw-pt-head", testid: "lw-cell-head" });
      const hl = hd.label || `L${hd.layer}H${hd.head}`;
      box.appendChild(h("div", { class: "lw-tops-title", text: `${hl} attention pattern (blocks.${hd.layer}.attn.hook_pattern)` }));
      try {
        const shape = Array.isArray(hd.shape) ? hd.shape.map(Number) : [];
        if (shape.length !== 2 || shape[0] !== shape[1]) throw new Error(`head pattern shape must be [T, T], got ${JSON.stringify(hd.shape)}`);
        const T = shape[0];
        const dtype = hd.dtype === "f16" ? "f16" : "f32";
        const cp = decodeTensor(hd.clean_pattern, { dtype, shape }).data;
        const xp = decodeTensor(hd.corrupted_pattern, { dtype, shape }).data;
        const fallback = Array.isArray(hd.tokens) ? hd.tokens.map(String) : [];
        const cleanToks = ctx.cleanTokens.length === T ? ctx.cleanTokens : fallback;
        const corrToks = ctx.corruptedTokens.length === T ? ctx.corruptedTokens : fallback;
        const a = new PatternView("clean", info);
        const b = new PatternView("corrupted", info);
        this.patterns = [a, b];
        box.append(h("div", { class: "lw-pt-patterns" }, [a.el, b.el]), info);
        a.set(cp, T, cleanToks, ctx.palette);
        b.set(xp, T, corrToks, ctx.palette);
      } catch (e) {
        box.appendChild(h("div", { class: "lw-pt-card-error", testid: "lw-cell-error", text: `Could not show the head's pattern: ${(e as Error).message}` }));
      }
      children.push(box);
    }
    this.el.replaceChildren(...children.filter((c): c is Node => c !== null));
    this.el.dataset.site = r.site;
    this.el.dataset.index = r.index.join(",");
    this.el.hidden = false;
  }

  destroy(): void {
    this.patterns.forEach((p) => p.destroy());
    this.el.remove();
  }
}
