// The elements of one site's card in the PatchingHeatmap view, built once: the head line (site,
// hook, source badge, slice selects' box, view-mode select), the error and empty notes, the
// heatmap canvas with its axis token strips and the hidden cell table (a11y.ts) behind it, and
// the foot (legend, agreement). The test ids carry the site's name. site.ts fills and draws them.

import { h } from "../lib/dom";
import type { Cell } from "../lib/heatmap";
import { Heatmap } from "../lib/heatmap";
import { TokenStrip } from "../lib/tokens";
import { SiteCellTable } from "./a11y";
import { GAP, MODE_LABELS } from "./cardtypes";

export interface CardView {
  el: HTMLElement;
  heatmap: Heatmap;
  rowStrip: TokenStrip;
  colStrip: TokenStrip;
  cells: SiteCellTable;
  hookEl: HTMLElement;
  badge: HTMLElement;
  modeSelect: HTMLSelectElement;
  modeField: HTMLElement;
  slicesBox: HTMLElement;
  agreementEl: HTMLElement;
  legendEl: HTMLElement;
  emptyEl: HTMLElement;
  gridEl: HTMLElement;
  errorEl: HTMLElement;
}

export interface CardViewEvents {
  /** A heatmap cell was hovered (null: left). */
  onHover: (cell: Cell | null) => void;
  onClick: (cell: Cell) => void;
  /** A column label was hovered (null: left). */
  onColHover: (i: number | null) => void;
}

/** Build the card of `site`. */
export function buildCardView(site: string, on: CardViewEvents): CardView {
  const heatmap = new Heatmap({
    testid: `lw-heatmap-${site}`,
    ariaLabel: `Activation patching, site ${site}: layers as rows`,
    gap: GAP,
    margin: 2,
    onHover: on.onHover,
    onClick: on.onClick,
  });
  const canvas = heatmap.canvas;
  canvas.classList.add("lw-pt-canvas");
  canvas.tabIndex = 0;
  canvas.dataset.site = site;
  const cells = new SiteCellTable(site);
  canvas.setAttribute("aria-details", cells.table.id);
  const rowStrip = new TokenStrip({ layout: "axis-left", testid: `lw-rows-${site}`, itemTestid: "lw-row-label" });
  const colStrip = new TokenStrip({
    layout: "axis-top",
    testid: `lw-cols-${site}`,
    itemTestid: "lw-col-label",
    onHover: on.onColHover,
  });

  const hookEl = h("code", { class: "lw-hook", testid: `lw-hook-${site}` });
  const badge = h("span", { class: "lw-pt-badge", testid: `lw-source-${site}` });
  const modeSelect = h("select", { class: "lw-select", testid: `lw-view-${site}`, attrs: { "aria-label": `Values shown for ${site}` } });
  for (const [v, label] of MODE_LABELS) modeSelect.appendChild(h("option", { text: label, attrs: { value: v } }));
  const modeField = h("label", { class: "lw-field" }, [h("span", { text: "show" }), modeSelect]);
  const slicesBox = h("span", { class: "lw-pt-slices" });
  const agreementEl = h("div", { class: "lw-pt-agreement", testid: `lw-agreement-${site}` });
  const legendEl = h("div", { class: "lw-legend lw-pt-legend", testid: `lw-legend-${site}` });
  const emptyEl = h("div", { class: "lw-empty", testid: `lw-empty-${site}`, text: "No values for this site yet." });
  const errorEl = h("div", { class: "lw-pt-card-error", testid: `lw-site-error-${site}` });
  errorEl.hidden = true;
  const corner = h("div", { class: "lw-pt-corner" });
  const gridEl = h("div", { class: "lw-pt-grid" }, [corner, colStrip.el, rowStrip.el, canvas]);
  const el = h("section", { class: "lw-pt-card", testid: `lw-card-${site}` }, [
    h("div", { class: "lw-pt-card-head" }, [
      h("h3", { class: "lw-pt-site", text: site }),
      hookEl,
      badge,
      h("span", { class: "lw-spacer" }),
      slicesBox,
      modeField,
    ]),
    errorEl,
    emptyEl,
    h("div", { class: "lw-pt-scroll" }, [gridEl, cells.el]),
    h("div", { class: "lw-pt-card-foot" }, [legendEl, agreementEl]),
  ]);
  el.dataset.site = site;
  return { el, heatmap, rowStrip, colStrip, cells, hookEl, badge, modeSelect, modeField, slicesBox, agreementEl, legendEl, emptyEl, gridEl, errorEl };
}
