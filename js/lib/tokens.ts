// Token strings as text: a token strip (chips that wrap) and axis labels (one fixed-size label per
// heatmap row or column). Tokens are set with `textContent` only, never as HTML, so a token like
// `<img src=x onerror=alert(1)>` shows those characters. Whitespace is made visible.

import { listen } from "./dom";
import { strings } from "./json";

/** Markers for characters that would otherwise be invisible. */
export const WHITESPACE_MARKERS: Record<string, string> = {
  " ": "·",
  "\n": "↵",
  "\t": "⇥",
  "\r": "␍",
  "\u00a0": "⍽",
};

export const EMPTY_TOKEN = "∅";

/** The token as displayed: spaces as "·", newline as "↵", tab as "⇥", other controls as ␀-style pictures. */
export function displayToken(tok: unknown): string {
  const s = typeof tok === "string" ? tok : tok == null ? "" : String(tok);
  if (s === "") return EMPTY_TOKEN;
  let out = "";
  for (const ch of s) {
    const m = WHITESPACE_MARKERS[ch];
    if (m !== undefined) out += m;
    else {
      const c = ch.charCodeAt(0);
      if (c < 0x20) out += String.fromCharCode(0x2400 + c);
      else if (c === 0x7f) out += "␡";
      else out += ch;
    }
  }
  return out;
}

/** A hover title: position and the exact string, JSON-quoted (e.g. `#3 " the"`). */
export function tokenTitle(tok: unknown, index: number): string {
  return `#${index} ${JSON.stringify(typeof tok === "string" ? tok : String(tok ?? ""))}`;
}

export type StripLayout = "flow" | "axis-left" | "axis-top";

export interface TokenStripOptions {
  /** flow: chips that wrap; axis-left: a column of labels (one per row); axis-top: vertical labels (one per column). */
  layout?: StripLayout;
  /** data-testid of the strip. */
  testid?: string;
  /** data-testid of each token (default "lw-token"); each also has data-index. */
  itemTestid?: string;
  /** Axis layouts: size of one label along the axis in CSS px (matches the heatmap cell). */
  size?: number;
  /** Axis layouts: the offset before the first label (the heatmap's origin). */
  offset?: number;
  onHover?: (index: number | null, ev: MouseEvent) => void;
  onClick?: (index: number, ev: MouseEvent) => void;
}

/** A row or column of tokens. Hover/click callbacks get the token index. */
export class TokenStrip {
  readonly el: HTMLElement;
  private items: HTMLElement[] = [];
  private tokens: string[] = [];
  private hovered: number | null = null;
  private readonly layout: StripLayout;
  private size: number;
  private offset: number;
  private readonly offs: Array<() => void> = [];

  constructor(private readonly opts: TokenStripOptions = {}) {
    this.layout = opts.layout ?? "flow";
    this.size = opts.size ?? 16;
    this.offset = opts.offset ?? 0;
    this.el = document.createElement("div");
    this.el.className = `lw-tokens lw-tokens-${this.layout}`;
    if (opts.testid) this.el.dataset.testid = opts.testid;
    const indexOf = (ev: Event): number | null => {
      const t = ev.target as Element | null;
      const item = t && typeof t.closest === "function" ? (t.closest("[data-index]") as HTMLElement | null) : null;
      if (!item || !this.el.contains(item)) return null;
      const i = Number(item.dataset.index);
      return Number.isInteger(i) ? i : null;
    };
    listen(this.offs, this.el, "mouseover", (ev) => {
      const i = indexOf(ev);
      if (i !== this.hovered) {
        this.hovered = i;
        this.opts.onHover?.(i, ev);
      }
    });
    listen(this.offs, this.el, "mouseleave", (ev) => {
      if (this.hovered !== null) {
        this.hovered = null;
        this.opts.onHover?.(null, ev);
      }
    });
    listen(this.offs, this.el, "click", (ev) => {
      const i = indexOf(ev);
      if (i !== null) this.opts.onClick?.(i, ev);
    });
  }

  setTokens(tokens: readonly unknown[]): this {
    this.tokens = strings(tokens);
    const doc = this.el.ownerDocument;
    const frag = doc.createDocumentFragment();
    this.items = this.tokens.map((tok, i) => {
      const item = doc.createElement("span");
      item.className = "lw-token";
      item.dataset.testid = this.opts.itemTestid ?? "lw-token";
      item.dataset.index = String(i);
      item.title = tokenTitle(tok, i);
      const text = doc.createElement("span");
      text.className = "lw-token-text";
      text.textContent = displayToken(tok);
      item.appendChild(text);
      frag.appendChild(item);
      return item;
    });
    this.el.replaceChildren(frag);
    this.hovered = null;
    this.applySize();
    return this;
  }

  getTokens(): string[] {
    return [...this.tokens];
  }

  /** Axis layouts: label size along the axis and the offset of the first one, in CSS px. */
  setSize(size: number, offset = this.offset): this {
    this.size = size;
    this.offset = offset;
    this.applySize();
    return this;
  }

  private applySize(): void {
    if (this.layout === "flow") return;
    const s = `${this.size}px`;
    const font = Math.max(1, Math.min(12, Math.floor(this.size * 0.8)));
    this.el.style.setProperty("--lw-token-size", s);
    this.el.style.setProperty("--lw-token-font", `${font}px`);
    this.el.classList.toggle("lw-tokens-dense", this.size < 8);
    if (this.layout === "axis-left") this.el.style.paddingTop = `${this.offset}px`;
    else this.el.style.paddingLeft = `${this.offset}px`;
  }

  /** Mark tokens: `active` (hovered elsewhere), `locked`; pass null to clear. */
  setMarks(active: number | null, locked: number | null = null): this {
    this.items.forEach((item, i) => {
      item.classList.toggle("lw-active", i === active);
      item.classList.toggle("lw-locked", i === locked);
    });
    return this;
  }

  item(i: number): HTMLElement | undefined {
    return this.items[i];
  }

  destroy(): void {
    this.offs.splice(0).forEach((f) => f());
    this.el.remove();
  }
}
