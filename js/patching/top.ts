// The top components of one site in the PatchingHeatmap view, drawn from the `top_components`
// trait (docs/protocol.md; Python's `hm.top(site, k)`): a ranked list of heads, layers or (layer,
// position) cells with their recovery ("L9H9  0.867") and raw logit difference; cells the exact
// sweep has not reached are marked as attribution estimates. Clicking a row is clicking its cell.
//
// Elements (data-testid): lw-top-{site} (the list), lw-top-component (one row button, with
// data-label, data-index, data-recovery, data-logit-diff, data-source).

import { button, h, listen } from "../lib/dom";
import { fmt3 } from "../lib/format";
import { isObject } from "../lib/json";

/** One row of the `top_components` trait. */
export interface TopComponent {
  index: number[];
  label: string;
  hook: string;
  recovery: number;
  logit_diff: number;
  value: number;
  source: "exact" | "attribution";
}

/** The rows of one site from the `top_components` trait; malformed rows are dropped. */
export function parseTop(map: unknown, site: string): TopComponent[] {
  const rows = isObject(map) ? map[site] : undefined;
  if (!Array.isArray(rows)) return [];
  const out: TopComponent[] = [];
  for (const r of rows) {
    if (!isObject(r) || !Array.isArray(r.index) || typeof r.label !== "string" || typeof r.recovery !== "number") continue;
    const index = r.index.map(Number);
    if (!index.every((v) => Number.isInteger(v) && v >= 0)) continue;
    const num = (v: unknown) => (typeof v === "number" ? v : NaN);
    out.push({
      index,
      label: r.label,
      hook: typeof r.hook === "string" ? r.hook : "",
      recovery: r.recovery,
      logit_diff: num(r.logit_diff),
      value: num(r.value),
      source: r.source === "attribution" ? "attribution" : "exact",
    });
  }
  return out;
}

/** "L9H9: 0.867" (the recovery), as the list shows a row's main text. */
export function topText(row: TopComponent): string {
  return `${row.label}: ${fmt3(row.recovery)}`;
}

export class TopList {
  readonly el: HTMLElement;
  private readonly list: HTMLElement;
  private readonly offs: Array<() => void> = [];
  private rows: TopComponent[] = [];
  private key = "";

  constructor(
    readonly site: string,
    private readonly onPick: (site: string, index: number[]) => void,
  ) {
    this.list = h("ol", { class: "lw-pt-top-list" });
    this.el = h("div", { class: "lw-pt-top-components", testid: `lw-top-${site}` }, [
      h("div", { class: "lw-tops-title", text: "Top components (recovery: 0 = corrupted, 1 = clean)" }),
      this.list,
    ]);
    this.el.dataset.site = site;
    listen(this.offs, this.list, "click", (ev) => {
      const btn = (ev.target as HTMLElement).closest<HTMLButtonElement>("button[data-index]");
      if (!btn || !this.list.contains(btn)) return;
      this.onPick(this.site, btn.dataset.index!.split(",").map(Number));
    });
  }

  /** Show `rows`; `selected` (a cell index) marks its row. Redraws only when something changed. */
  set(rows: TopComponent[], selected: number[] | null): void {
    const key = JSON.stringify(rows);
    if (key !== this.key) {
      this.key = key;
      this.rows = rows;
      this.list.replaceChildren(
        ...rows.map((r, i) => {
          const b = button("", "lw-top-component", "lw-pt-top-row");
          b.append(
            h("span", { class: "lw-rank", text: `${i + 1}` }),
            h("span", { class: "lw-pt-top-label", testid: "lw-top-label", text: r.label }),
            h("span", { class: "lw-num lw-pt-top-recovery", testid: "lw-top-recovery", text: fmt3(r.recovery) }),
            h("span", { class: "lw-num lw-pt-muted", testid: "lw-top-logit-diff", text: `logit diff ${fmt3(r.logit_diff)}` }),
          );
          if (r.source === "attribution") b.append(h("span", { class: "lw-pt-muted", text: "≈ attribution" }));
          b.title = `${r.hook}: recovery ${fmt3(r.recovery)}, logit diff ${fmt3(r.logit_diff)} (${r.source}); click to rerun with this one patch`;
          const d = b.dataset;
          d.label = r.label;
          d.index = r.index.join(",");
          d.recovery = String(r.recovery);
          d.logitDiff = String(r.logit_diff);
          d.source = r.source;
          return h("li", {}, [b]);
        }),
      );
    }
    const sel = selected ? selected.join(",") : "";
    for (const b of this.list.querySelectorAll<HTMLButtonElement>("button[data-index]")) {
      const on = b.dataset.index === sel;
      b.classList.toggle("lw-pt-top-selected", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
    this.el.hidden = this.rows.length === 0;
  }

  destroy(): void {
    this.offs.splice(0).forEach((f) => f());
    this.el.remove();
  }
}
