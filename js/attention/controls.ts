// The controls row of AttentionGrid's header: the colour-by select (the head scores), the
// ablation mode select, the resample prompts field (made by lib/resample.ts, placed here), the
// summary line and the note naming the lens selection this grid follows. attention.ts wires the
// selects' changes to the traits and calls `sync` when the traits change.

import { h } from "../lib/dom";

export const MODES: Array<[string, string]> = [
  ["zero", "zero"],
  ["mean", "mean"],
  ["resample", "resample"],
];

export class AttentionControls {
  readonly el: HTMLElement;
  readonly colorBy: HTMLSelectElement;
  readonly mode: HTMLSelectElement;
  readonly summary: HTMLElement;
  /** The lens selection this grid follows (a head picked in another view of the same lens). */
  readonly linked: HTMLElement;

  constructor(resample: HTMLElement) {
    this.colorBy = h("select", { class: "lw-select", testid: "lw-color-by", attrs: { "aria-label": "Colour heads by score" } });
    this.mode = h("select", { class: "lw-select", testid: "lw-mode", attrs: { "aria-label": "Ablation mode" } });
    for (const [v, label] of MODES) this.mode.appendChild(h("option", { text: label, attrs: { value: v } }));
    this.summary = h("span", { class: "lw-summary", testid: "lw-summary" });
    this.linked = h("span", { class: "lw-summary lw-linked", testid: "lw-linked" });
    this.el = h("div", { class: "lw-controls" }, [
      h("label", { class: "lw-field" }, [h("span", { text: "Colour by" }), this.colorBy]),
      h("label", { class: "lw-field" }, [h("span", { text: "Ablation" }), this.mode]),
      resample,
      this.summary,
      this.linked,
    ]);
  }

  /** Show the traits: score names (`color_by` among them), `ablation_mode` (an unknown one is
   * added as an option) and `linked` ({label, source} or null). */
  sync(names: string[], colorBy: string, mode: string, link: { label?: unknown; source?: unknown } | null): void {
    const { colorBy: cb, mode: ms, linked } = this;
    cb.replaceChildren(...names.map((n) => h("option", { text: n, attrs: { value: n } })));
    if (names.includes(colorBy)) cb.value = colorBy;
    cb.disabled = names.length === 0;
    if (!MODES.some(([v]) => v === mode)) ms.appendChild(h("option", { text: mode, attrs: { value: mode } }));
    ms.value = mode;
    linked.textContent = link && link.label ? `Selected ${String(link.label)} (${String(link.source ?? "")})` : "";
    linked.dataset.label = link && link.label ? String(link.label) : "";
  }
}
