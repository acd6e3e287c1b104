// The logit-lens table's legend: the colour bar for the current shading mode (top-1 probability,
// target probability, target rank on a log scale, or a prompt to set a target), the changed-cell
// key when the table is ablated, and the click hint. Builds DOM nodes; the view shows or hides them.

import { gradientCss } from "../lib/colors";
import { h } from "../lib/dom";
import type { LensLook } from "./paint";

/** The legend's child nodes for a view with a table. */
export function lensLegend(s: LensLook): Node[] {
  const d = s.data;
  const bar = h("span", { class: "lw-legend-bar" });
  bar.style.background = gradientCss(s.scale);
  const parts: Node[] = [];
  if (d.mode === "top") {
    parts.push(h("span", { class: "lw-legend-label", text: "top-1 probability" }), h("span", { class: "lw-legend-value", text: "0" }), bar, h("span", { class: "lw-legend-value", text: "1" }));
  } else if (!s.shade.ok) {
    parts.push(h("span", { class: "lw-legend-label", testid: "lw-lens-no-target", text: "Set a target token to shade cells by it." }));
  } else if (d.mode === "target_prob") {
    parts.push(h("span", { class: "lw-legend-label", text: "target probability" }), h("span", { class: "lw-legend-value", text: "0" }), bar, h("span", { class: "lw-legend-value", text: "1" }));
  } else {
    parts.push(
      h("span", { class: "lw-legend-label", text: "target rank (log scale)" }),
      h("span", { class: "lw-legend-value", text: String(s.shade.maxRank) }),
      bar,
      h("span", { class: "lw-legend-value", text: "0" }),
    );
  }
  if (d.changed) {
    const sw = h("span", { class: "lw-ll-changed-swatch", attrs: { "aria-hidden": "true" } });
    parts.push(h("span", { class: "lw-ll-changed-legend", testid: "lw-changed-legend" }, [sw, h("span", { text: "changed vs original" })]));
  }
  parts.push(h("span", { class: "lw-ll-hint", text: "click: details · shift-click or click a column token: set as target" }));
  return parts;
}
