// Prompt datasets in the PatchingHeatmap view (docs/protocol.md): the Apply box's text as
// set_inputs arguments (one prompt, answer or wrong answer per line), the list of pairs drawn from
// the `pairs` trait, and the per-pair values of a clicked cell (`cell_result.per_prompt`).
//
// Elements (data-testid): lw-pairs (the list, shown for 2+ pairs), lw-pair (a row, data-pair),
// lw-cell-per-prompt (the table in the cell panel), lw-per-prompt-row (data-pair), with cells
// lw-pp-patched, lw-pp-clean, lw-pp-corrupted, lw-pp-recovery (data-value each).

import { h } from "../lib/dom";
import { numberEl } from "../lib/format";
import { isObject } from "../lib/json";
import { displayToken } from "../lib/tokens";

/** One row of the `pairs` trait. */
export interface PairRow {
  clean: string;
  corrupted: string;
  answer: string;
  wrong: string;
  clean_logit_diff: number;
  corrupted_logit_diff: number;
}

export function parsePairs(x: unknown): PairRow[] {
  if (!Array.isArray(x)) return [];
  return x.filter(isObject).map((r) => ({
    clean: String(r.clean ?? ""),
    corrupted: String(r.corrupted ?? ""),
    answer: String(r.answer ?? ""),
    wrong: String(r.wrong ?? ""),
    clean_logit_diff: typeof r.clean_logit_diff === "number" ? r.clean_logit_diff : NaN,
    corrupted_logit_diff: typeof r.corrupted_logit_diff === "number" ? r.corrupted_logit_diff : NaN,
  }));
}

/**
 * The text of one box as a set_inputs argument: one line -> that string (it may be empty:
 * Python says so); several lines -> a list, one entry per line (trailing empty lines dropped,
 * Windows line ends trimmed).
 */
export function boxValue(text: string): string | string[] {
  const lines = text.split("\n").map((l) => l.replace(/\r$/, ""));
  while (lines.length > 1 && lines[lines.length - 1].trim() === "") lines.pop();
  return lines.length === 1 ? lines[0] : lines;
}

/** The set_inputs arguments of the Apply box. */
export function inputArgs(clean: string, corrupted: string, answer: string, wrong: string): Record<string, string | string[]> {
  return { clean: boxValue(clean), corrupted: boxValue(corrupted), answer: boxValue(answer), wrong: boxValue(wrong) };
}

/** The list of pairs (2 or more): prompt texts, answers and each pair's logit difference on both runs. */
export class PairsList {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly title: HTMLElement;
  private key = "";

  constructor() {
    this.body = h("tbody");
    this.title = h("caption", { class: "lw-tops-title" });
    const head = h("thead", {}, [
      h("tr", {}, ["#", "clean", "corrupted", "answer", "wrong", "clean LD", "corrupted LD"].map((t) => h("th", { text: t }))),
    ]);
    this.el = h("details", { class: "lw-pt-pairs", testid: "lw-pairs" }, [
      h("summary", { class: "lw-pt-pairs-summary", testid: "lw-pairs-summary" }),
      h("table", { class: "lw-table lw-pt-pairs-table" }, [this.title, head, this.body]),
    ]);
    (this.el as HTMLDetailsElement).open = true;
    this.el.hidden = true;
  }

  set(pairs: PairRow[]): void {
    const key = JSON.stringify(pairs);
    if (key === this.key) return;
    this.key = key;
    this.el.hidden = pairs.length < 2;
    this.el.dataset.n = String(pairs.length);
    const summary = this.el.querySelector("summary")!;
    summary.textContent = `${pairs.length} prompt pairs: the metric is their mean`;
    this.title.textContent = "logit difference (LD) = logit(answer) − logit(wrong) at the last position";
    this.body.replaceChildren(
      ...pairs.map((p, i) => {
        const tr = h("tr", { class: "lw-pt-pair", testid: "lw-pair" }, [
          h("td", { class: "lw-rank", text: String(i + 1) }),
          h("td", { class: "lw-pt-pair-text", testid: "lw-pair-clean", text: p.clean }),
          h("td", { class: "lw-pt-pair-text", testid: "lw-pair-corrupted", text: p.corrupted }),
          h("td", { class: "lw-tok", text: displayToken(p.answer) }),
          h("td", { class: "lw-tok", text: displayToken(p.wrong) }),
          numberEl("td", "lw-pair-clean-ld", p.clean_logit_diff),
          numberEl("td", "lw-pair-corrupted-ld", p.corrupted_logit_diff),
        ]);
        tr.dataset.pair = String(i);
        return tr;
      }),
    );
  }
}

/** `cell_result.per_prompt`: each pair's logit difference patched / clean / corrupted, and its own recovery. */
export interface PerPrompt {
  logit_diff: number[];
  clean_logit_diff: number[];
  corrupted_logit_diff: number[];
  recovery: Array<number | null>;
}

export function parsePerPrompt(x: unknown): PerPrompt | null {
  if (!isObject(x)) return null;
  const nums = (v: unknown) => (Array.isArray(v) ? v.map((e) => (typeof e === "number" ? e : NaN)) : null);
  const ld = nums(x.logit_diff);
  const c = nums(x.clean_logit_diff);
  const k = nums(x.corrupted_logit_diff);
  if (!ld || !c || !k || c.length !== ld.length || k.length !== ld.length) return null;
  const rec = Array.isArray(x.recovery) ? x.recovery.map((e) => (typeof e === "number" ? e : null)) : ld.map(() => null);
  return { logit_diff: ld, clean_logit_diff: c, corrupted_logit_diff: k, recovery: rec };
}

/** The per-pair table of the cell panel (null when there is one pair: the panel already shows it). */
export function perPromptTable(x: unknown, pairs: readonly PairRow[]): HTMLElement | null {
  const pp = parsePerPrompt(x);
  if (!pp || pp.logit_diff.length < 2) return null;
  const head = h("tr", {}, ["pair", "LD patched", "clean", "corrupted", "recovery"].map((t) => h("th", { text: t })));
  const rows = pp.logit_diff.map((v, i) => {
    const tr = h("tr", { class: "lw-pt-pp-row", testid: "lw-per-prompt-row" }, [
      h("td", { class: "lw-rank", text: String(i + 1) }),
      numberEl("td", "lw-pp-patched", v),
      numberEl("td", "lw-pp-clean", pp.clean_logit_diff[i]),
      numberEl("td", "lw-pp-corrupted", pp.corrupted_logit_diff[i]),
      numberEl("td", "lw-pp-recovery", pp.recovery[i] ?? NaN),
    ]);
    tr.dataset.pair = String(i);
    if (pairs[i]) tr.title = `clean: ${pairs[i].clean}\ncorrupted: ${pairs[i].corrupted}`;
    return tr;
  });
  return h("div", { class: "lw-pt-per-prompt", testid: "lw-cell-per-prompt" }, [
    h("div", { class: "lw-tops-title", text: "Each pair (LD = logit difference; recovery: 0 = its corrupted run, 1 = its clean run)" }),
    h("table", { class: "lw-table" }, [h("thead", {}, [head]), h("tbody", {}, rows)]),
  ]);
}
