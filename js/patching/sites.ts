// The PatchingHeatmap's sites menu: a <details> dropdown ("sites (n) ▾") with one checkbox per
// site the model supports (plus any shown site it does not list), and the order of the sites
// picked (the shown ones still checked keep their place; newly checked ones follow).

import { h } from "../lib/dom";

export class SitesMenu {
  readonly summary = h("summary", { class: "lw-btn lw-btn-small lw-pt-sites-summary", testid: "lw-sites-summary" });
  readonly list = h("div", { class: "lw-pt-sites-list", attrs: { role: "group", "aria-label": "Sites shown" } });
  readonly el = h("details", { class: "lw-pt-sites", testid: "lw-sites" }, [this.summary, this.list]);

  /** One checkbox per site of `available` (and of `shown`), checked where shown. */
  render(shown: string[], available: string[]): void {
    const all = [...available];
    for (const s of shown) if (!all.includes(s)) all.push(s);
    this.list.replaceChildren(
      ...all.map((s) => {
        const box = h("input", { testid: `lw-site-${s}`, attrs: { type: "checkbox", value: s } });
        box.checked = shown.includes(s);
        const lab = h("label", { class: "lw-pt-site-option" }, [box, h("span", { text: s })]);
        lab.dataset.site = s;
        return lab;
      }),
    );
    this.summary.textContent = `sites (${shown.length}) ▾`;
    this.summary.title = shown.join(", ");
  }

  /** The sites checked now, in order: those of `shown` still checked, then the newly checked. */
  picked(shown: string[]): string[] {
    const checked = new Set(
      [...this.list.querySelectorAll<HTMLInputElement>("input[type=checkbox]")].filter((c) => c.checked).map((c) => c.value),
    );
    const current = shown.filter((s) => checked.has(s));
    const added = [...checked].filter((s) => !current.includes(s));
    return [...current, ...added];
  }
}
