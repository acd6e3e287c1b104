// The slice selects of one site's card: one <select> per axis the heatmap does not show (e.g. the
// head of a [layer, pos, head] site), each option labelled with its max |value| so the strongest
// slice is easy to find. Kept in sync with the card's geometry and values; a pick is reported.

import { h } from "../lib/dom";
import { displayToken } from "../lib/tokens";
import type { Axes, SiteEntry } from "./data";
import { axisLabels, maxAbsAlong } from "./data";

export interface SliceSelectsState {
  /** Where the selects live, and the selects by axis index (updated in place). */
  box: HTMLElement;
  selects: Map<number, HTMLSelectElement>;
  site: string;
  axes: Axes;
  dims: string[];
  shape: number[];
  /** The entry that defines the geometry (for axis labels), the clean tokens, the values shown. */
  p: SiteEntry | null;
  tokens: string[];
  values: Float32Array;
  /** The fixed index of each axis. */
  fixed: number[];
  /** The user picked index `k` on axis `i`. */
  onPick: (i: number, k: number) => void;
}

/** Add, remove and relabel the selects for `o.axes.extra`; show the fixed index in each. */
export function syncSliceSelects(o: SliceSelectsState): void {
  const { box, selects, site, axes, dims, shape, p, tokens, values, fixed } = o;
  const keep = new Set(axes.extra);
  for (const [i, s] of selects) {
    if (!keep.has(i) || s.options.length !== shape[i]) {
      s.parentElement?.remove();
      selects.delete(i);
    }
  }
  for (const i of axes.extra) {
    const dim = dims[i];
    let sel = selects.get(i);
    const labels = axisLabels(dim, shape[i], p, tokens).map((s) => displayToken(s));
    const peaks = values.length ? maxAbsAlong(values, shape, i) : null;
    if (!sel) {
      sel = h("select", { class: "lw-select", testid: `lw-slice-${site}-${dim}`, attrs: { "aria-label": `${dim} shown` } });
      const s = sel;
      for (let k = 0; k < shape[i]; k++) s.appendChild(h("option", { attrs: { value: String(k) } }));
      s.addEventListener("change", () => {
        o.onPick(i, Number(s.value));
      });
      box.appendChild(h("label", { class: "lw-field" }, [h("span", { text: dim }), s]));
      selects.set(i, s);
    }
    for (let k = 0; k < shape[i]; k++) {
      const peak = peaks ? peaks[k] : NaN;
      const text = Number.isFinite(peak) ? `${labels[k]}  (max |v| ${peak.toFixed(2)})` : labels[k];
      const opt = sel.options[k];
      if (opt.textContent !== text) opt.textContent = text;
    }
    sel.value = String(fixed[i] ?? 0);
  }
  box.hidden = axes.extra.length === 0;
}
