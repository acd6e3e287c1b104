// The Apply box of the PatchingHeatmap view: the clean and corrupted prompts and the answers (one
// per line for a dataset of pairs, pairs.ts), the keys that apply them, showing the traits without
// overwriting what the user types, and the panel with both tokenizations of a rejected pair.
//
// Elements (data-testid): lw-clean, lw-corrupted, lw-answer, lw-wrong, lw-apply; lw-rejected
// (data-pair: the rejected pair's index), lw-rejected-clean, lw-rejected-corrupted.

import { button, h } from "../lib/dom";
import { onSubmitKey, syncInput } from "../lib/inputs";
import { strings } from "../lib/json";
import { TokenStrip } from "../lib/tokens";
import type { AnyModel } from "../lib/types";
import type { Widget } from "../lib/widget";
import { diffMasks } from "./data";
import { boxValue, inputArgs } from "./pairs";

/** Mark the positions where `mask` is true (class lw-pt-diff, data-diff) in a token strip. */
export function markDiff(strip: TokenStrip, mask: boolean[]): void {
  mask.forEach((m, i) => {
    const item = strip.item(i);
    if (!item) return;
    item.classList.toggle("lw-pt-diff", m);
    if (m) item.dataset.diff = "true";
    else delete item.dataset.diff;
  });
}

/** Rows for a textarea holding `text` (1 to 8 lines). */
export function rowsFor(text: string): number {
  return Math.max(1, Math.min(8, text.split("\n").length));
}

export class InputBox {
  readonly clean: HTMLTextAreaElement;
  readonly corrupted: HTMLTextAreaElement;
  readonly answer: HTMLTextAreaElement;
  readonly wrong: HTMLTextAreaElement;
  readonly applyBtn: HTMLButtonElement;
  /** The prompts row and the answers row of the header. */
  readonly promptsEl: HTMLElement;
  readonly answersEl: HTMLElement;

  constructor(w: Widget, apply: () => void) {
    const prompt = (testid: string, label: string) =>
      h("textarea", { class: "lw-prompt", testid, attrs: { rows: "2", spellcheck: "false", "aria-label": label, placeholder: `${label} (Ctrl+Enter applies)` } });
    // One answer for all pairs, or one per line (Shift+Enter adds a line; Enter applies).
    const answer = (testid: string, label: string, placeholder: string) =>
      h("textarea", { class: "lw-input lw-pt-answers", testid, attrs: { rows: "1", spellcheck: "false", "aria-label": label, placeholder } });
    this.clean = prompt("lw-clean", "Clean prompt");
    this.corrupted = prompt("lw-corrupted", "Corrupted prompt");
    this.answer = answer("lw-answer", "Answer", "answer, e.g. ␣Paris");
    this.wrong = answer("lw-wrong", "Wrong answer", "wrong, e.g. ␣Rome");
    this.clean.title = this.corrupted.title = "One prompt, or one prompt per line for a dataset of pairs (line i of both boxes is pair i)";
    this.answer.title = this.wrong.title = "One token (a leading space is part of it); for a dataset, one for all pairs or one per line (Shift+Enter)";
    this.applyBtn = button("Apply", "lw-apply", "lw-btn lw-btn-primary");
    this.applyBtn.title = "Tokenize both prompts and compute the metric and the attribution preview (Ctrl/Cmd+Enter)";
    const label = (text: string, field: HTMLElement, cls: string) =>
      h("label", { class: cls }, [h("span", { class: cls === "lw-pt-input" ? "lw-pt-input-label" : "", text }), field]);
    this.promptsEl = h("div", { class: "lw-pt-inputs" }, [label("clean", this.clean, "lw-pt-input"), label("corrupted", this.corrupted, "lw-pt-input")]);
    this.answersEl = h("div", { class: "lw-controls" }, [label("answer", this.answer, "lw-field"), label("wrong", this.wrong, "lw-field"), this.applyBtn]);

    w.listen(this.applyBtn, "click", apply);
    for (const t of this.fields()) onSubmitKey(w, t, apply);
    for (const t of [this.answer, this.wrong]) {
      w.listen(t, "keydown", (ev) => {
        if (ev.key === "Enter" && !ev.shiftKey && !ev.ctrlKey && !ev.metaKey) {
          ev.preventDefault();
          apply();
        }
      });
      w.listen(t, "input", () => (t.rows = rowsFor(t.value)));
    }
  }

  private fields(): HTMLTextAreaElement[] {
    return [this.clean, this.corrupted, this.answer, this.wrong];
  }

  /** The set_inputs arguments of what the box holds. */
  args(): Record<string, string | string[]> {
    return inputArgs(this.clean.value, this.corrupted.value, this.answer.value, this.wrong.value);
  }

  /** How many pairs the clean box holds (one per line). */
  pairCount(): number {
    const v = boxValue(this.clean.value);
    return Array.isArray(v) ? v.length : 1;
  }

  /** Show the input traits (unless the user is typing in a field). */
  sync(model: AnyModel): void {
    const names = ["clean_prompt", "corrupted_prompt", "answer", "wrong"];
    this.fields().forEach((t, i) => syncInput(t, String(model.get(names[i]) ?? "")));
    this.answer.rows = rowsFor(this.answer.value);
    this.wrong.rows = rowsFor(this.wrong.value);
  }
}

/** Both tokenizations of a rejected pair (prompts of different lengths), differing tokens marked. */
export class RejectedPanel {
  readonly el: HTMLElement;
  private readonly title: HTMLElement;
  private readonly clean = new TokenStrip({ layout: "flow", testid: "lw-rejected-clean", itemTestid: "lw-rejected-token" });
  private readonly corrupted = new TokenStrip({ layout: "flow", testid: "lw-rejected-corrupted", itemTestid: "lw-rejected-token" });

  constructor() {
    this.title = h("div", { class: "lw-pt-rejected-title" });
    const row = (text: string, strip: TokenStrip) =>
      h("div", { class: "lw-pt-token-row" }, [h("span", { class: "lw-pt-input-label", text }), strip.el]);
    this.el = h("div", { class: "lw-pt-rejected", testid: "lw-rejected" }, [this.title, row("clean", this.clean), row("corrupted", this.corrupted)]);
    this.el.hidden = true;
  }

  /** Show an error's details (`clean_tokens`, `corrupted_tokens`, `pair`), or hide the panel. */
  show(details: unknown, dataset: boolean): void {
    const d = details as { clean_tokens?: unknown; corrupted_tokens?: unknown; pair?: unknown } | null;
    if (!d || !Array.isArray(d.clean_tokens) || !Array.isArray(d.corrupted_tokens)) {
      this.el.hidden = true;
      return;
    }
    const a = strings(d.clean_tokens);
    const b = strings(d.corrupted_tokens);
    const pair = typeof d.pair === "number" && dataset ? ` in pair ${d.pair + 1}` : "";
    this.title.textContent = `Not applied: the prompts${pair} tokenize to ${a.length} and ${b.length} tokens; patching needs the same number.`;
    this.el.dataset.pair = typeof d.pair === "number" ? String(d.pair) : "";
    this.clean.setTokens(a);
    this.corrupted.setTokens(b);
    const [ma, mb] = diffMasks(a, b);
    markDiff(this.clean, ma);
    markDiff(this.corrupted, mb);
    this.el.hidden = false;
  }

  destroy(): void {
    this.clean.destroy();
    this.corrupted.destroy();
  }
}
