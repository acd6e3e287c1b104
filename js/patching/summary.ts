// The PatchingHeatmap's metric summary: what the metric is (the logit difference of the answer
// and the wrong answer, or its recovery, with "mean over n pairs" for a dataset) and its value on
// the clean and the corrupted run (data-value on each, for browser tests).

import { h } from "../lib/dom";
import { fmt3 } from "../lib/format";
import { displayToken } from "../lib/tokens";

export interface SummaryData {
  cleanValue: number;
  corruptedValue: number;
  /** The answer and wrong answer as given (one a line for a dataset). */
  answer: string;
  wrong: string;
  metric: string;
  /** Number of prompt pairs. */
  pairs: number;
}

export class MetricSummary {
  readonly metricName = h("div", { class: "lw-pt-metric-name", testid: "lw-metric-name" });
  readonly cleanValue = h("span", { class: "lw-num", testid: "lw-clean-value" });
  readonly corruptedValue = h("span", { class: "lw-num", testid: "lw-corrupted-value" });
  readonly el = h("div", { class: "lw-pt-summary", testid: "lw-metric-summary" }, [
    this.metricName,
    h("div", { class: "lw-pt-values-line" }, [
      h("span", { class: "lw-pt-value-name", text: "clean run" }),
      this.cleanValue,
      h("span", { class: "lw-pt-value-name", text: "corrupted run" }),
      this.corruptedValue,
    ]),
  ]);

  render(d: SummaryData): void {
    const cv = d.cleanValue;
    const xv = d.corruptedValue;
    const set = (span: HTMLElement, v: number) => {
      span.textContent = fmt3(v);
      span.dataset.value = String(v);
    };
    set(this.cleanValue, cv);
    set(this.corruptedValue, xv);
    const ans = d.answer;
    const wrong = d.wrong;
    const m = d.metric;
    const n = d.pairs;
    const one = !ans.includes("\n") && !wrong.includes("\n");
    const diff = one ? `logit(“${displayToken(ans)}”) − logit(“${displayToken(wrong)}”)` : "logit(answer) − logit(wrong)";
    const mean = n > 1 ? `, mean over ${n} pairs` : "";
    this.metricName.textContent = m === "normalized" ? `recovery of ${diff}${mean}: 0 = corrupted run, 1 = clean run` : `logit diff = ${diff}${mean}`;
    this.metricName.dataset.metric = m;
  }
}
