// Text inputs of the views' headers: the prompt row (textarea + Run, sending `run {prompt}`), the
// submit keys, and showing a trait in an input without overwriting what the user is typing.
//
// Elements (data-testid): lw-prompt, lw-run.

import { button, h, hasFocus } from "./dom";
import type { Widget } from "./widget";

/** Submit on Ctrl/Cmd+Enter in a textarea, on Enter in a one-line input. */
export function onSubmitKey(w: Widget, field: HTMLTextAreaElement | HTMLInputElement, submit: () => void): void {
  w.listen(field, "keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey || field.tagName === "INPUT")) {
      ev.preventDefault();
      submit();
    }
  });
}

/** Show `value` in `field`, unless the user is typing in it. */
export function syncInput(field: HTMLTextAreaElement | HTMLInputElement, value: string): void {
  if (field.value !== value && !hasFocus(field)) field.value = value;
}

export interface PromptRow {
  /** The row for the header: the prompt and the Run button. */
  readonly el: HTMLElement;
  readonly prompt: HTMLTextAreaElement;
  readonly runBtn: HTMLButtonElement;
  /** Show the `prompt` trait (unless the user is typing in the prompt). */
  sync(): void;
}

/**
 * The prompt textarea (from the `prompt` trait) and the Run button: a click or Ctrl/Cmd+Enter
 * sends `run {prompt}`; Run is disabled while the view has a request open.
 */
export function promptRow(w: Widget): PromptRow {
  const trait = () => String(w.model.get("prompt") ?? "");
  const prompt = h("textarea", {
    class: "lw-prompt",
    testid: "lw-prompt",
    attrs: { rows: "2", spellcheck: "false", "aria-label": "Prompt", placeholder: "Type a prompt, then Run (Ctrl+Enter)" },
  });
  prompt.value = trait();
  const runBtn = button("Run", "lw-run", "lw-btn lw-btn-primary");
  runBtn.title = "Run the model on the prompt (Ctrl/Cmd+Enter)";
  const run = () => void w.request("run", { prompt: prompt.value });
  w.listen(runBtn, "click", run);
  onSubmitKey(w, prompt, run);
  w.onPending((open) => {
    runBtn.disabled = open.length > 0;
  });
  return {
    el: h("div", { class: "lw-prompt-row" }, [prompt, runBtn]),
    prompt,
    runBtn,
    sync: () => syncInput(prompt, trait()),
  };
}
