// The direction and metric controls of the PatchingHeatmap header: the two selects (the options of
// settings.ts; a value they lack is added as an option) and the one-click switch to the other
// metric. patching.ts places them in the controls row, wires their changes to the traits and
// calls `sync` when the traits change.

import { button, h } from "../lib/dom";
import { DIRECTIONS, METRICS, otherMetric } from "./settings";

export class SettingsControls {
  readonly direction: HTMLSelectElement;
  readonly metric: HTMLSelectElement;
  readonly metricToggle: HTMLButtonElement;
  /** The labelled selects and the switch, in the order they are shown. */
  readonly els: HTMLElement[];

  constructor() {
    this.direction = h("select", { class: "lw-select", testid: "lw-direction", attrs: { "aria-label": "Patching direction" } });
    for (const [v, label] of DIRECTIONS) this.direction.appendChild(h("option", { text: label, attrs: { value: v } }));
    this.metric = h("select", { class: "lw-select", testid: "lw-metric", attrs: { "aria-label": "Metric" } });
    for (const [v, label] of METRICS) this.metric.appendChild(h("option", { text: label, attrs: { value: v } }));
    this.metricToggle = button("show logit diff", "lw-metric-toggle", "lw-btn lw-btn-small");
    this.metricToggle.title = "Shade by the other metric (the results are converted, nothing reruns)";
    this.els = [
      h("label", { class: "lw-field" }, [h("span", { text: "direction" }), this.direction]),
      h("label", { class: "lw-field" }, [h("span", { text: "metric" }), this.metric]),
      this.metricToggle,
    ];
  }

  /** Show the `direction` and `metric` traits. */
  sync(direction: string, metric: string): void {
    const selectValue = (s: HTMLSelectElement, v: string, opts: Array<[string, string]>) => {
      if (v && !opts.some(([o]) => o === v) && ![...s.options].some((o) => o.value === v)) s.appendChild(h("option", { text: v, attrs: { value: v } }));
      if (v) s.value = v;
    };
    selectValue(this.direction, direction, DIRECTIONS);
    selectValue(this.metric, metric, METRICS);
    this.metricToggle.textContent = otherMetric(metric).text;
    this.metricToggle.dataset.metric = metric;
  }
}
