// The per-site blocks of the PatchingHeatmap view's maps: each site in `sites` gets one block, its
// card (site.ts: heatmap, legend, agreement) beside its top components (top.ts), made when the
// site is first shown and destroyed when it leaves `sites`. A card's view mode (exact /
// attribution / mixed) is kept per site, so a site shown again keeps it. patching.ts fills them.

import type { SiteCardOptions } from "./cardtypes";
import type { ViewMode } from "./data";
import { SiteCard } from "./site";
import { TopList } from "./top";
import { h } from "../lib/dom";

export class SiteBlocks {
  private readonly cardMap = new Map<string, SiteCard>();
  private readonly topMap = new Map<string, TopList>();
  private readonly blocks = new Map<string, HTMLElement>();
  private readonly modes = new Map<string, ViewMode>();

  /** `on.onChange` runs after a card's view mode or slice changed (its mode is kept first). */
  constructor(private readonly on: Omit<SiteCardOptions, "site">) {}

  /** The cards shown, by site. */
  get cards(): ReadonlyMap<string, SiteCard> {
    return this.cardMap;
  }

  /** The top-component lists shown, by site. */
  get tops(): ReadonlyMap<string, TopList> {
    return this.topMap;
  }

  /** Destroy the blocks of sites not in `list`; return the blocks of `list` in order (made when new). */
  sync(list: string[]): HTMLElement[] {
    for (const [s, card] of this.cardMap) {
      if (!list.includes(s)) {
        card.destroy();
        this.cardMap.delete(s);
        this.topMap.get(s)?.destroy();
        this.topMap.delete(s);
        this.blocks.get(s)?.remove();
        this.blocks.delete(s);
      }
    }
    return list.map((s) => this.blockFor(s));
  }

  private cardFor(site: string): SiteCard {
    let card = this.cardMap.get(site);
    if (card) return card;
    card = new SiteCard({
      site,
      onCellClick: this.on.onCellClick,
      onHover: this.on.onHover,
      onPosHover: this.on.onPosHover,
      onChange: () => {
        this.modes.set(site, card!.getMode());
        this.on.onChange();
      },
    });
    const m = this.modes.get(site);
    if (m) card.setMode(m);
    this.cardMap.set(site, card);
    return card;
  }

  private blockFor(site: string): HTMLElement {
    let b = this.blocks.get(site);
    if (b) return b;
    const top = new TopList(site, this.on.onCellClick);
    this.topMap.set(site, top);
    b = h("div", { class: "lw-pt-site-block" }, [this.cardFor(site).el, top.el]);
    b.dataset.site = site;
    this.blocks.set(site, b);
    return b;
  }

  /** Destroy every card and top list. */
  destroy(): void {
    this.cardMap.forEach((c) => c.destroy());
    this.cardMap.clear();
    this.topMap.forEach((t) => t.destroy());
    this.topMap.clear();
  }
}
