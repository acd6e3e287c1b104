// The pair and head panels of the WeightsView, drawn from the `pair_result` / `head_result`
// traits (docs/protocol.md, WeightsView). Numbers carry data-value = the exact JSON number; token
// strings are text (displayToken), never HTML.
//
// Elements (data-testid): lw-wt-pair (lw-wt-pair-title, lw-wt-pair-score, lw-wt-pair-baseline,
// lw-wt-pair-z, lw-wt-pair-kind-<q|k|v>, lw-wt-src-pattern, lw-wt-dst-pattern); lw-wt-head
// (lw-wt-head-title, lw-wt-head-copying, lw-wt-ov (rows lw-wt-ov-row with data-source-id; cells
// lw-wt-ov-top / lw-wt-ov-bottom with data-id, data-value; lw-wt-ov-self), lw-wt-qk,
// lw-wt-promoted (rows lw-wt-promoted-row)).

import { diverging, maxAbs, sequential } from "../lib/colors";
import { h } from "../lib/dom";
import { fmt3, numberEl } from "../lib/format";
import { Heatmap } from "../lib/heatmap";
import type { Palette } from "../lib/theme";
import { displayToken } from "../lib/tokens";
import { squareMatrix } from "./data";

interface TokenValue {
  token: string;
  id: number;
  value: number;
}

function tokenChip(testid: string, e: TokenValue): HTMLElement {
  const el = h("span", { class: "lw-wt-chip", testid, text: displayToken(e.token) });
  el.dataset.id = String(e.id);
  el.dataset.value = String(e.value);
  el.title = `${JSON.stringify(e.token)} (id ${e.id}): ${e.value}`;
  return el;
}

function patternMap(testid: string, label: string, tokens: string[]): Heatmap {
  const hm = new Heatmap({
    testid,
    ariaLabel: label,
    cellW: Math.max(4, Math.min(16, Math.floor(220 / Math.max(1, tokens.length)))),
    onHover: (cell) => {
      hm.canvas.title = cell ? `${displayToken(tokens[cell.row])} → ${displayToken(tokens[cell.col])}: ${fmt3(hm.value(cell.row, cell.col))}` : "";
    },
  });
  return hm;
}

function figure(title: string, hm: Heatmap): HTMLElement {
  return h("figure", { class: "lw-wt-figure" }, [h("figcaption", { text: title }), hm.canvas]);
}

/** The pair panel: scores of the three kinds against the baseline, and both heads' patterns. */
export class PairPanel {
  readonly el = h("div", { class: "lw-wt-panel", testid: "lw-wt-pair" });
  readonly maps: Heatmap[] = [];

  render(r: any, p: Palette): void {
    this.destroyMaps();
    this.el.replaceChildren();
    if (!r || typeof r !== "object" || !r.src) {
      this.el.hidden = true;
      return;
    }
    this.el.hidden = false;
    const kind = String(r.kind ?? "");
    this.el.append(
      h("div", { class: "lw-wt-title", testid: "lw-wt-pair-title", text: `${r.src} → ${r.dst} (${kind.toUpperCase()}-composition)` }),
      h("div", { class: "lw-wt-line" }, [
        h("span", { text: "score " }),
        numberEl("span", "lw-wt-pair-score", r.score),
        h("span", { text: " · random baseline " }),
        numberEl("span", "lw-wt-pair-baseline", r.baseline_mean),
        h("span", { text: ` ± ${fmt3(r.baseline_std)} · z = ` }),
        numberEl("span", "lw-wt-pair-z", r.z?.[kind], Number.isFinite(r.z?.[kind]) ? Number(r.z[kind]).toFixed(1) : "–"),
      ]),
    );
    const kinds = h("div", { class: "lw-wt-line lw-wt-muted" });
    for (const k of ["q", "k", "v"]) {
      kinds.append(h("span", { text: ` ${k.toUpperCase()} ` }), numberEl("span", `lw-wt-pair-kind-${k}`, r.scores?.[k]));
    }
    this.el.append(kinds);
    const tokens: string[] = Array.isArray(r.tokens) ? r.tokens.map(String) : [];
    const row = h("div", { class: "lw-wt-figures" });
    const pairs: Array<[string, string, unknown]> = [
      ["lw-wt-src-pattern", `${r.src} attention (${r.hooks?.[0] ?? ""})`, r.src_pattern],
      ["lw-wt-dst-pattern", `${r.dst} attention (${r.hooks?.[1] ?? ""})`, r.dst_pattern],
    ];
    for (const [testid, title, bytes] of pairs) {
      const m = squareMatrix(bytes, r.shape);
      const hm = patternMap(testid, title, tokens);
      hm.setData(m.data, m.T, m.T).setScale(sequential(p.theme, [0, 1])).setColors({ bg: p.bg, accent: p.accent, fg: p.fg });
      hm.draw();
      this.maps.push(hm);
      row.append(figure(title, hm));
    }
    this.el.append(row);
  }

  destroyMaps(): void {
    this.maps.splice(0).forEach((m) => m.destroy());
  }
}

/** The head panel: copying score, OV table of the prompt's tokens, QK scores, promoted tokens. */
export class HeadPanel {
  readonly el = h("div", { class: "lw-wt-panel", testid: "lw-wt-head" });
  qk: Heatmap | null = null;

  render(r: any, p: Palette): void {
    this.qk?.destroy();
    this.qk = null;
    this.el.replaceChildren();
    if (!r || typeof r !== "object" || !r.label) {
      this.el.hidden = true;
      return;
    }
    this.el.hidden = false;
    this.el.append(
      h("div", { class: "lw-wt-title", testid: "lw-wt-head-title", text: `${r.label}` }),
      h("div", { class: "lw-wt-line" }, [h("span", { text: "copying score Σλ/Σ|λ| " }), numberEl("span", "lw-wt-head-copying", r.copying)]),
    );
    this.el.append(this.ovTable(r.ov));
    const tokens: string[] = Array.isArray(r.tokens) ? r.tokens.map(String) : [];
    if (r.qk && Array.isArray(r.qk_shape)) {
      const m = squareMatrix(r.qk, r.qk_shape, true);
      const hm = patternMap("lw-wt-qk", `${r.label} QK scores from the weights`, tokens);
      hm.setData(m.data, m.T, m.T).setScale(diverging(p.theme, maxAbs(m.data))).setColors({ bg: p.bg, accent: p.accent, fg: p.fg });
      hm.draw();
      this.qk = hm;
      this.el.append(figure("QK circuit on the prompt: W_E W_Q W_Kᵀ W_Eᵀ (query row, key column; content only)", hm));
    }
    if (r.promoted && Array.isArray(r.promoted.promoted)) {
      const list = h("div", { class: "lw-wt-line", testid: "lw-wt-promoted" }, [
        h("span", { class: "lw-wt-muted", text: `its output at position ${r.promoted.pos} promotes ` }),
      ]);
      for (const e of r.promoted.promoted) list.append(tokenChip("lw-wt-promoted-row", e));
      this.el.append(list);
    }
  }

  private ovTable(ov: any): HTMLElement {
    const body = h("tbody");
    for (const row of Array.isArray(ov?.rows) ? ov.rows : []) {
      const top = h("td", { class: "lw-wt-chips" }, (row.top ?? []).map((e: TokenValue) => tokenChip("lw-wt-ov-top", e)));
      const bottom = h("td", { class: "lw-wt-chips" }, (row.bottom ?? []).slice(0, 3).map((e: TokenValue) => tokenChip("lw-wt-ov-bottom", e)));
      const tr = h("tr", { class: "lw-wt-ov-row", testid: "lw-wt-ov-row" }, [
        h("td", { class: "lw-tok", text: displayToken(row.source) }),
        top,
        bottom,
        numberEl("td", "lw-wt-ov-self", row.self_rank, String(row.self_rank)),
      ]);
      tr.dataset.sourceId = String(row.source_id);
      body.append(tr);
    }
    const head = h("thead", {}, [
      h("tr", {}, [
        h("th", { text: "if it attends to" }),
        h("th", { text: "it promotes" }),
        h("th", { text: "suppresses" }),
        h("th", { text: "rank of itself" }),
      ]),
    ]);
    return h("table", { class: "lw-wt-ov", testid: "lw-wt-ov" }, [
      h("caption", { text: `OV circuit ${ov?.label ?? ""}: W_E W_V W_O W_U rows (norms and biases left out)` }),
      head,
      body,
    ]);
  }
}
