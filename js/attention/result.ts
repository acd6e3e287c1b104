// The ablation result panel of AttentionGrid, drawn from the `last_result` trait (docs/protocol.md):
// a title, the per-position change in next-token log-prob as a bar chart with exact numbers, the
// mean change, and the top predictions at the last position before and after.
//
// Numbers: an element with data-value = the exact JSON number (String(v)) and text = v.toFixed(3)
// (probabilities: (100 p).toFixed(1) + "%").

import type { ColorScale } from "../lib/colors";
import { diverging, maxAbs } from "../lib/colors";
import { h } from "../lib/dom";
import type { TopEntry } from "../lib/format";
import { fmt3, numberEl, signedBar, topTable } from "../lib/format";
import { displayToken, tokenTitle } from "../lib/tokens";

export interface AblationResult {
  layer: number;
  head: number;
  label?: string;
  hook?: string;
  mode?: string;
  tokens?: string[];
  next_tokens?: string[];
  logprob_before?: number[];
  logprob_after?: number[];
  delta_logprob: number[];
  top_before?: TopEntry[];
  top_after?: TopEntry[];
  mean_delta?: number;
}

export function isResult(x: unknown): x is AblationResult {
  return !!x && typeof x === "object" && Array.isArray((x as AblationResult).delta_logprob);
}

/** "Zero-ablating L1H3 (blocks.1.attn.hook_z)". */
export function resultTitle(r: AblationResult): string {
  const mode = r.mode || "zero";
  const verb = `${mode.charAt(0).toUpperCase()}${mode.slice(1)}-ablating`;
  const label = r.label || `L${r.layer}H${r.head}`;
  const hook = r.hook || `blocks.${r.layer}.attn.hook_z`;
  return `${verb} ${label} (${hook})`;
}

export class ResultPanel {
  readonly el: HTMLElement;
  private scale: ColorScale = diverging("light");
  private theme: "light" | "dark" = "light";
  private last: AblationResult | null = null;

  constructor() {
    this.el = h("section", { class: "lw-result", testid: "lw-result" });
    this.el.hidden = true;
  }

  setTheme(theme: "light" | "dark"): void {
    this.theme = theme;
    if (this.last) this.render(this.last);
  }

  /** Show a result, or hide the panel for `{}` / anything that is not a result. */
  render(r: unknown): void {
    if (!isResult(r)) {
      this.last = null;
      this.el.hidden = true;
      this.el.replaceChildren();
      return;
    }
    this.last = r;
    const deltas = r.delta_logprob;
    this.scale = diverging(this.theme, maxAbs(deltas) || 1);
    const m = this.scale.domain[1];
    const tokens = r.tokens ?? [];
    const next = r.next_tokens ?? [];

    const rows = deltas.map((v, p) => {
      const row = h("div", { class: "lw-delta-row", testid: "lw-delta-row" }, [
        h("span", { class: "lw-pos", text: String(p) }),
        h("span", { class: "lw-tok", text: displayToken(tokens[p] ?? "") }),
        h("span", { class: "lw-arrow", text: "→" }),
        h("span", { class: "lw-tok lw-next", text: displayToken(next[p] ?? "") }),
        signedBar(v, m, this.scale),
        numberEl("span", "lw-delta", v, fmt3(v), "lw-num lw-delta"),
      ]);
      row.dataset.pos = String(p);
      row.lastElementChild!.setAttribute("data-pos", String(p));
      const before = r.logprob_before?.[p];
      const after = r.logprob_after?.[p];
      row.title =
        `position ${p}: ${tokenTitle(tokens[p] ?? "", p)} predicts ${JSON.stringify(next[p] ?? "")}\n` +
        `log p before ${fmt3(before)}, after ${fmt3(after)}, change ${fmt3(v)}`;
      return row;
    });

    const lastTok = tokens.length ? displayToken(tokens[tokens.length - 1]) : "";
    const label = r.label || `L${r.layer}H${r.head}`;
    this.el.dataset.head = `${r.layer},${r.head}`;
    this.el.replaceChildren(
      h("h3", { class: "lw-result-title", testid: "lw-result-title", text: resultTitle(r) }),
      h("div", { class: "lw-result-summary" }, [
        h("span", { text: "Mean change in next-token log-prob: " }),
        numberEl("span", "lw-mean-delta", r.mean_delta, fmt3(r.mean_delta), "lw-num lw-mean-delta"),
      ]),
      h("div", { class: "lw-deltas", testid: "lw-deltas", attrs: { role: "list", "aria-label": "Change in log-prob of the actual next token, per position" } }, [
        h("div", { class: "lw-delta-row lw-delta-head" }, [
          h("span", { class: "lw-pos", text: "pos" }),
          h("span", { class: "lw-tok", text: "token" }),
          h("span", { class: "lw-arrow", text: "→" }),
          h("span", { class: "lw-tok lw-next", text: "next" }),
          h("span", { class: "lw-bar-cell lw-axis-label", text: `−${m.toFixed(2)}  Δ log p  +${m.toFixed(2)}` }),
          h("span", { class: "lw-num", text: "Δ" }),
        ]),
        ...rows,
      ]),
      h("div", { class: "lw-tops-title", text: `Top next-token predictions after “${lastTok}” (last position)` }),
      h("div", { class: "lw-tops" }, [
        topTable("lw-top-before", "Before", r.top_before),
        topTable("lw-top-after", `After ablating ${label}`, r.top_after),
      ]),
    );
    this.el.hidden = false;
  }
}
