// The text around one site's heatmap: the source badge (exact / mixed / attribution), the colour
// legend with its keys for hatched (attribution) and empty (not computed) cells, and the
// attribution-vs-exact agreement line (also as one string for the SVG export). DOM text only.

import type { ColorScale } from "../lib/colors";
import { gradientCss } from "../lib/colors";
import { h } from "../lib/dom";
import { fmt3 } from "../lib/format";
import type { Agreement, Combined, SiteEntry } from "./data";

/** The source badge's text: which values the card shows and how many cells are exact. */
export function badgeText(c: Combined, ex: SiteEntry | null): string {
  let text: string;
  switch (c.source) {
    case "exact":
      text = ex && c.exactCells < ex.data.length ? `exact · ${c.exactCells} of ${ex.data.length} cells` : "exact";
      if (ex?.partial) text += " · partial";
      break;
    case "mixed":
      text = `exact ${c.exactCells} of ${ex?.data.length ?? 0} cells · rest attribution (hatched)`;
      break;
    case "attribution":
      text = "attribution (approximate)";
      break;
    default:
      text = "no values";
  }
  return text;
}

/** Fill `el` with the attribution-vs-exact agreement of `site` (hidden when `a` is null). */
export function fillAgreement(el: HTMLElement, site: string, a: Agreement | null): void {
  if (!a) {
    el.hidden = true;
    el.replaceChildren();
    for (const k of ["r", "maxDiff", "meanDiff", "n"]) delete el.dataset[k];
    return;
  }
  el.hidden = false;
  el.dataset.r = String(a.r);
  el.dataset.maxDiff = String(a.maxAbsDiff);
  el.dataset.meanDiff = String(a.meanAbsDiff);
  el.dataset.n = String(a.n);
  if (a.n === 0) {
    el.replaceChildren(h("span", { text: "attribution vs exact: no exact cells yet" }));
    return;
  }
  const stat = (label: string, testid: string, v: number) => {
    const s = h("span", { class: "lw-pt-stat" }, [h("span", { text: label }), h("span", { class: "lw-num", testid, text: fmt3(v) })]);
    s.dataset.value = String(v);
    return s;
  };
  el.replaceChildren(
    h("span", { class: "lw-pt-agree-lead", text: "attribution vs exact:" }),
    stat("r = ", `lw-agreement-r-${site}`, a.r),
    stat("max |Δ| = ", `lw-agreement-max-${site}`, a.maxAbsDiff),
    stat("mean |Δ| = ", `lw-agreement-mean-${site}`, a.meanAbsDiff),
    h("span", { class: "lw-pt-muted", text: `over ${a.n} cells` }),
  );
}

/** The colour legend's nodes: -max .. +max bar, the metric, and keys for hatched and empty cells. */
export function legendNodes(sc: ColorScale, approx: boolean, nan: boolean, metricLabel: string): Node[] {
  const m = sc.domain[1];
  const bar = h("span", { class: "lw-legend-bar" });
  bar.style.background = gradientCss(sc);
  const swatch = (cls: string, text: string) => h("span", { class: "lw-pt-key" }, [h("span", { class: `lw-pt-swatch ${cls}` }), h("span", { text })]);
  const keys: HTMLElement[] = [];
  if (approx) keys.push(swatch("lw-pt-swatch-approx", "attribution (approx.)"));
  if (nan) keys.push(swatch("lw-pt-swatch-nan", "not computed"));
  return [
    h("span", { class: "lw-legend-value", text: (-m).toFixed(2) }),
    bar,
    h("span", { class: "lw-legend-value", text: `+${m.toFixed(2)}` }),
    h("span", { class: "lw-legend-label", text: metricLabel }),
    ...keys,
  ];
}

/** Whether `v` holds a NaN (a cell not computed yet). */
export function hasNaN(v: Float32Array): boolean {
  for (let i = 0; i < v.length; i++) if (v[i] !== v[i]) return true;
  return false;
}

/** "attribution vs exact: r = 0.934, max |Δ| = 0.412, mean |Δ| = 0.101 over 330 cells", or "". */
export function agreementText(a: Agreement | null): string {
  if (!a) return "";
  if (a.n === 0) return "attribution vs exact: no exact cells yet";
  return `attribution vs exact: r = ${fmt3(a.r)}, max |Δ| = ${fmt3(a.maxAbsDiff)}, mean |Δ| = ${fmt3(a.meanAbsDiff)} over ${a.n} cells`;
}
