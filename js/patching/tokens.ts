// The PatchingHeatmap's two tokenizations: the clean and the corrupted prompt's tokens as token
// strips, the positions where they differ marked in both, and how many positions differ.

import { h } from "../lib/dom";
import { TokenStrip } from "../lib/tokens";
import { diffMasks } from "./data";
import { markDiff } from "./inputs";

export class TokenRows {
  readonly clean: TokenStrip;
  readonly corrupted: TokenStrip;
  readonly diffCount = h("span", { class: "lw-summary", testid: "lw-diff-count" });
  readonly el: HTMLElement;

  /** `onHover(i)`: position i was hovered in either strip (null: left). */
  constructor(onHover: (i: number | null) => void) {
    this.clean = new TokenStrip({ layout: "flow", testid: "lw-clean-tokens", itemTestid: "lw-clean-token", onHover });
    this.corrupted = new TokenStrip({ layout: "flow", testid: "lw-corrupted-tokens", itemTestid: "lw-corrupted-token", onHover });
    this.el = h("div", { class: "lw-pt-tokens", testid: "lw-tokenizations" }, [
      h("div", { class: "lw-pt-token-row" }, [h("span", { class: "lw-pt-input-label", text: "clean" }), this.clean.el]),
      h("div", { class: "lw-pt-token-row" }, [h("span", { class: "lw-pt-input-label", text: "corrupted" }), this.corrupted.el]),
      this.diffCount,
    ]);
  }

  /** Show clean tokens `a` and corrupted tokens `b`. */
  render(a: string[], b: string[]): void {
    this.clean.setTokens(a);
    this.corrupted.setTokens(b);
    const [ma, mb] = diffMasks(a, b);
    markDiff(this.clean, ma);
    markDiff(this.corrupted, mb);
    const n = ma.filter(Boolean).length;
    this.diffCount.textContent = a.length || b.length ? `${n} position${n === 1 ? "" : "s"} differ${n === 1 ? "s" : ""}` : "";
    this.diffCount.dataset.value = String(n);
  }
}
