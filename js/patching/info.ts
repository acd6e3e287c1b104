// What the tooltip of one patching cell says: its component (L{l}H{h}, position with the clean and
// corrupted tokens), its hook, and its exact and attribution values. Pure: no DOM.

import { fmt3 } from "../lib/format";
import { displayToken } from "../lib/tokens";
import type { CardData, CellInfo, InfoRow } from "./cardtypes";
import type { SiteEntry } from "./data";
import { axisLabels, cellHook, componentLabel, flatIndex, isPosDim } from "./data";

/**
 * The tooltip of the cell at full `index` (dims order) of `site`, whose geometry entry is `p`
 * (exact, else attribution) with `dims` and `shape`.
 */
export function cellInfo(site: string, data: CardData, p: SiteEntry | null, dims: string[], shape: number[], index: number[]): CellInfo {
  const k = flatIndex(shape, index);
  const exact = data.exact ? data.exact.data[k] : NaN;
  const attribution = data.attribution && data.attribution.data.length > k ? data.attribution.data[k] : NaN;
  const rows: InfoRow[] = [];
  let posText = "";
  dims.forEach((d, i) => {
    const v = index[i];
    if (isPosDim(d)) {
      const clean = data.cleanTokens[v];
      const corrupted = data.corruptedTokens[v];
      let text = `${v}  “${displayToken(clean ?? `#${v}`)}”`;
      if (corrupted !== undefined && corrupted !== clean) text += `  (corrupted “${displayToken(corrupted)}”)`;
      rows.push({ name: d, text });
      posText += ` @ ${d} ${v} “${displayToken(clean ?? `#${v}`)}”`;
    } else {
      const label = axisLabels(d, shape[i], p, data.cleanTokens)[v];
      rows.push({ name: d, text: d === "layer" || d === "head" ? `${v}  (${label})` : label });
    }
  });
  rows.push({ name: "exact", text: Number.isFinite(exact) ? fmt3(exact) : "not computed", value: exact, testid: "lw-tooltip-exact" });
  rows.push({ name: "attribution", text: fmt3(attribution), value: attribution, testid: "lw-tooltip-attribution" });
  const comp = componentLabel(dims, index, p);
  return {
    site,
    index,
    title: `${comp || site}${posText}`,
    hook: cellHook(p?.hook ?? "", dims, index),
    exact,
    attribution,
    rows,
  };
}
