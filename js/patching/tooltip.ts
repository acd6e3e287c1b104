// The PatchingHeatmap's tooltip for the hovered cell of a site card: the component and position,
// the hook, the exact and attribution values (data-value on each, for browser tests), placed next
// to the cell inside the maps' scroll box. Text only, never HTML.

import { h } from "../lib/dom";
import type { Cell } from "../lib/heatmap";
import { cellRect } from "../lib/heatmap";
import { placeTooltip } from "../lib/tooltip";
import type { CellInfo } from "./cardtypes";
import type { SiteCard } from "./site";

/** Show `tooltip` (a child of `mapsEl`) for `cell` of `card`, or hide it when `cell` is null. */
export function showCellTooltip(tooltip: HTMLElement, mapsEl: HTMLElement, card: SiteCard, cell: Cell | null): void {
  if (!cell) {
    tooltip.hidden = true;
    return;
  }
  const info: CellInfo = card.info(cell);
  tooltip.replaceChildren(
    h("div", { class: "lw-tooltip-title", testid: "lw-tooltip-title", text: info.title }),
    h("div", { class: "lw-tooltip-hook", testid: "lw-tooltip-hook", text: info.hook }),
    ...info.rows.map((r) => {
      const v = h("span", { class: "lw-tooltip-value", text: r.text });
      if (r.testid) v.dataset.testid = r.testid;
      if (r.value !== undefined) v.dataset.value = String(r.value);
      const row = h("div", { class: "lw-tooltip-row" }, [h("span", { class: "lw-tooltip-name", text: r.name }), v]);
      row.dataset.name = r.name;
      return row;
    }),
    h("div", { class: "lw-pt-muted", text: "click: rerun with this one patch" }),
  );
  tooltip.dataset.site = info.site;
  tooltip.dataset.index = info.index.join(",");
  tooltip.hidden = false;
  const cr = card.heatmap.canvas.getBoundingClientRect();
  const mr = mapsEl.getBoundingClientRect();
  const r = cellRect(card.layout, cell.row, cell.col);
  const x0 = cr.left - mr.left + mapsEl.scrollLeft;
  const y0 = cr.top - mr.top + mapsEl.scrollTop;
  placeTooltip(tooltip, { x: x0 + r.x, y: y0 + r.y, w: r.w, h: r.h }, mapsEl.clientWidth || Infinity, 10, 220);
}
