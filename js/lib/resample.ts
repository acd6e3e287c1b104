// The "Resample from" box of the views that ablate (attention grid, logit lens): source prompts
// for resample ablation, one per line, kept in a list-of-strings trait (default
// `resample_prompts`). Shown only while the ablation mode is "resample".
//
// Elements (data-testid): lw-resample (the field), lw-resample-prompts (the textarea).

import { h } from "./dom";
import { syncInput } from "./inputs";
import type { Widget } from "./widget";

export interface ResampleField {
  readonly el: HTMLElement;
  readonly input: HTMLTextAreaElement;
  /** Show the field for `mode === "resample"`, and the trait's prompts unless the user is typing. */
  sync(mode: string): void;
  /** Write what is typed to the trait (before an ablate request). */
  commit(): void;
}

/** The prompts typed in `text`: one per non-empty line. */
export function parsePrompts(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.replace(/\r$/, ""))
    .filter((line) => line.trim() !== "");
}

export function resampleField(w: Widget, trait = "resample_prompts"): ResampleField {
  const input = h("textarea", {
    class: "lw-prompt lw-resample-prompts",
    testid: "lw-resample-prompts",
    attrs: {
      rows: "2",
      spellcheck: "false",
      "aria-label": "Resample from: source prompts, one per line",
      placeholder: "Resample from: one prompt per line, same token length as the prompt",
    },
  });
  const el = h("label", { class: "lw-field lw-resample", testid: "lw-resample" }, [h("span", { text: "Resample from" }), input]);
  el.hidden = true;
  const current = (): string[] => {
    const v = w.model.get(trait);
    return Array.isArray(v) ? v.map(String) : [];
  };
  const commit = (): void => {
    const typed = parsePrompts(input.value);
    if (JSON.stringify(typed) === JSON.stringify(current())) return;
    w.model.set(trait, typed);
    w.model.save_changes();
  };
  w.listen(input, "change", commit);
  return {
    el,
    input,
    commit,
    sync: (mode: string) => {
      el.hidden = mode !== "resample";
      syncInput(input, current().join("\n"));
    },
  };
}
