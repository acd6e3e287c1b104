// The cell detail panel of LogitLensTable, drawn from the `cell_detail` trait (docs/protocol.md):
// the clicked cell's top-k predictions (click one to make it the target), the target's probability
// and rank, and the direct logit attribution of the target's logit at that position up to that
// layer: a bar per component (largest |value| first) with an "ablate" button for heads and MLPs,
// and the identity line "sum of parts + remainder = logit".
//
// Numbers: an element with data-value = the exact JSON number (String(v)); text v.toFixed(3)
// (probabilities: (100 p).toFixed(1) + "%"). Every string is set with textContent.

import type { Theme } from "../lib/colors";
import { diverging } from "../lib/colors";
import { button, h } from "../lib/dom";
import type { TopEntry } from "../lib/format";
import { fmt3, fmtPct, numberEl, signedBar } from "../lib/format";
import { displayToken } from "../lib/tokens";

export interface DLA {
  labels: string[];
  hooks?: string[];
  kinds?: string[];
  values: number[];
  logit: number;
  /** What `logit` is, e.g. "logit − mean logit" (centred DLA); default "logit". */
  quantity?: string;
  remainder: number;
  unexplained?: number;
}

export interface CellDetail {
  row: number;
  pos: number;
  row_label?: string;
  hook?: string;
  token?: string;
  /** Each entry has its token id. */
  top?: Array<Required<TopEntry>>;
  target?: number;
  target_text?: string;
  target_prob?: number;
  target_rank?: number;
  dla?: DLA | null;
}

export function isDetail(x: unknown): x is CellDetail {
  if (!x || typeof x !== "object") return false;
  const d = x as CellDetail;
  return Number.isInteger(d.row) && Number.isInteger(d.pos);
}

export function isDLA(x: unknown): x is DLA {
  return !!x && typeof x === "object" && Array.isArray((x as DLA).labels) && Array.isArray((x as DLA).values);
}

/** Components the `ablate` request accepts: "L{l}H{h}" and "mlp{l}". */
export function isAblatable(label: string): boolean {
  return /^L\d+H\d+$/.test(label) || /^mlp\d+$/.test(label);
}

/** Component indices by |value|, largest first (stable: ties keep their order). */
export function dlaOrder(values: readonly number[]): number[] {
  const mag = (v: number) => (Number.isFinite(v) ? Math.abs(v) : -1);
  return values.map((_, i) => i).sort((a, b) => mag(values[b]) - mag(values[a]) || a - b);
}

/** Sum of the parts (float64, in the given order). */
export function dlaSum(values: readonly number[]): number {
  let s = 0;
  for (const v of values) if (Number.isFinite(v)) s += v;
  return s;
}

export interface DetailPanelOptions {
  /** Make this token string the target. */
  onTarget: (token: string, id?: number) => void;
  /** Ablate a component ("L1H3", "mlp2"). */
  onAblate: (label: string) => void;
  /** A contributor's row was clicked (not its ablate button): select it for the lens. */
  onPick?: (label: string) => void;
}

export class DetailPanel {
  readonly el: HTMLElement;
  private theme: Theme = "light";
  private last: CellDetail | null = null;
  private ablated: string[] = [];
  private busy = false;

  constructor(private readonly opts: DetailPanelOptions) {
    this.el = h("section", { class: "lw-ll-detail", testid: "lw-cell-detail", attrs: { "aria-live": "polite" } });
    this.el.hidden = true;
    this.el.addEventListener("click", (ev) => this.onClick(ev));
    this.el.addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter" && ev.key !== " ") return;
      const row = (ev.target as Element | null)?.closest?.("[data-testid=lw-topk-row]");
      if (row) {
        ev.preventDefault();
        this.opts.onTarget((row as HTMLElement).dataset.token ?? "", tokenId(row as HTMLElement));
      }
    });
  }

  private onClick(ev: MouseEvent): void {
    const t = ev.target as Element | null;
    if (!t || typeof t.closest !== "function") return;
    const ablate = t.closest("[data-testid=lw-dla-ablate]") as HTMLButtonElement | null;
    if (ablate && this.el.contains(ablate)) {
      if (!ablate.disabled) this.opts.onAblate(ablate.dataset.label ?? "");
      return;
    }
    const contributor = t.closest("[data-testid=lw-dla-row]") as HTMLElement | null;
    if (contributor && this.el.contains(contributor) && this.opts.onPick && isAblatable(contributor.dataset.label ?? "")) {
      this.opts.onPick(contributor.dataset.label ?? "");
      return;
    }
    const row = t.closest("[data-testid=lw-topk-row]") as HTMLElement | null;
    if (row && this.el.contains(row)) this.opts.onTarget(row.dataset.token ?? "", tokenId(row));
  }

  setTheme(theme: Theme): void {
    this.theme = theme;
    if (this.last) this.render(this.last, this.ablated);
  }

  /** Disable the ablate buttons while a request is open. */
  setBusy(busy: boolean): void {
    this.busy = busy;
    this.el.querySelectorAll<HTMLButtonElement>("[data-testid=lw-dla-ablate]").forEach((b) => {
      b.disabled = busy || this.ablated.includes(b.dataset.label ?? "");
    });
  }

  isShown(): boolean {
    return !this.el.hidden;
  }

  /** Show a cell detail, or hide the panel for `{}` / anything that is not one. */
  render(x: unknown, ablated: string[] = []): void {
    this.ablated = ablated;
    if (!isDetail(x)) {
      this.last = null;
      this.el.hidden = true;
      this.el.replaceChildren();
      delete this.el.dataset.cell;
      return;
    }
    const d = x;
    this.last = d;
    const rowLabel = d.row_label || `row ${d.row}`;
    const hasTarget = typeof d.target === "number" && d.target >= 0;
    const targetText = d.target_text ?? "";

    const head = h("div", { class: "lw-ll-detail-head" }, [
      h("h3", { class: "lw-ll-detail-title", testid: "lw-detail-title", text: `${rowLabel} · pos ${d.pos} “${displayToken(d.token ?? "")}”` }),
      h("code", { class: "lw-hook", testid: "lw-detail-hook", text: d.hook ?? "" }),
    ]);
    const parts: Node[] = [head];
    if (ablated.length) {
      parts.push(h("div", { class: "lw-ll-detail-note", testid: "lw-detail-ablated", text: `With ${ablated.join(", ")} ablated.` }));
    }

    // Top-k.
    const top = Array.isArray(d.top) ? d.top : [];
    const maxP = Math.max(1e-9, ...top.map((e) => (Number.isFinite(e.prob) ? e.prob : 0)));
    const list = h("ol", { class: "lw-ll-topk", testid: "lw-topk", attrs: { "aria-label": "Top predictions; click one to make it the target" } });
    top.forEach((e, i) => {
      const bar = h("span", { class: "lw-ll-pbar" });
      bar.style.width = `${(100 * Math.max(0, Math.min(1, (Number.isFinite(e.prob) ? e.prob : 0) / maxP))).toFixed(1)}%`;
      const row = h("li", { class: "lw-ll-topk-row" + (hasTarget && e.id === d.target ? " lw-current" : ""), testid: "lw-topk-row" }, [
        h("span", { class: "lw-rank", text: String(i + 1) }),
        h("span", { class: "lw-tok", testid: "lw-topk-token", text: displayToken(e.token) }),
        h("span", { class: "lw-ll-pbar-cell" }, [bar]),
        numberEl("span", "lw-topk-prob", e.prob, fmtPct(e.prob)),
      ]);
      row.dataset.value = String(e.prob);
      row.dataset.tokenId = String(e.id);
      row.dataset.token = String(e.token ?? "");
      row.tabIndex = 0;
      row.setAttribute("role", "button");
      row.title = `${JSON.stringify(e.token)} (id ${e.id}): p = ${e.prob}\nclick: set as target`;
      list.appendChild(row);
    });
    parts.push(h("div", { class: "lw-ll-section-title", text: "Top predictions (click one to make it the target)" }), list);

    // Target.
    if (hasTarget) {
      parts.push(
        h("div", { class: "lw-ll-detail-target", testid: "lw-detail-target" }, [
          h("span", { text: `Target “${displayToken(targetText)}” (id ${d.target}): p = ` }),
          numberEl("span", "lw-detail-target-prob", d.target_prob, fmtPct(d.target_prob)),
          h("span", { text: " · rank " }),
          numberEl("span", "lw-detail-target-rank", d.target_rank, typeof d.target_rank === "number" ? String(d.target_rank) : "–"),
        ]),
      );
    } else {
      parts.push(h("div", { class: "lw-ll-detail-target lw-muted", testid: "lw-detail-target", text: "No target yet: set one above, or click a prediction." }));
    }

    // Direct logit attribution.
    if (hasTarget && isDLA(d.dla)) parts.push(...this.renderDLA(d, d.dla, targetText, rowLabel, ablated));

    this.el.replaceChildren(...parts);
    this.el.dataset.cell = `${d.row},${d.pos}`;
    this.el.hidden = false;
    this.setBusy(this.busy);
  }

  private renderDLA(d: CellDetail, dla: DLA, targetText: string, rowLabel: string, ablated: string[]): Node[] {
    const values = dla.values.map(Number);
    const order = dlaOrder(values);
    const m = Math.max(1e-9, ...values.map((v) => (Number.isFinite(v) ? Math.abs(v) : 0)));
    const scale = diverging(this.theme, m);
    const rows = order.map((i) => {
      const label = String(dla.labels[i] ?? `#${i}`);
      const v = values[i];
      const kind = dla.kinds?.[i] ?? "";
      const hook = dla.hooks?.[i] ?? "";
      const cells: Node[] = [
        h("span", { class: "lw-ll-dla-label", text: label }),
        signedBar(v, m, scale),
        numberEl("span", "lw-dla-value", v, fmt3(v)),
      ];
      if (isAblatable(label)) {
        const isOn = ablated.includes(label);
        const b = button(isOn ? "ablated" : "ablate", "lw-dla-ablate", "lw-btn lw-btn-small lw-ll-ablate");
        b.dataset.label = label;
        b.disabled = isOn;
        b.title = `Ablate ${label}${hook ? ` (${hook})` : ""} and show the table without it`;
        cells.push(b);
      } else {
        cells.push(h("span", { class: "lw-ll-ablate-none" }));
      }
      const row = h("div", { class: "lw-ll-dla-row", testid: "lw-dla-row", attrs: { role: "listitem" } }, cells);
      row.dataset.label = label;
      row.dataset.value = String(v);
      row.dataset.kind = kind;
      row.dataset.hook = hook;
      row.title = `${label}${hook ? `  ${hook}` : ""}: ${v}${isAblatable(label) ? " (click to show it in the attention grid)" : ""}`;
      if (isAblatable(label)) row.classList.add("lw-ll-dla-pick");
      return row;
    });
    const sum = dlaSum(values);
    const identity = h("div", { class: "lw-ll-dla-identity", testid: "lw-dla-identity" }, [
      h("span", { class: "lw-muted", text: "sum of parts " }),
      numberEl("span", "lw-dla-sum", sum, fmt3(sum)),
      h("span", { class: "lw-muted", text: " + remainder " }),
      numberEl("span", "lw-dla-remainder", dla.remainder, fmt3(dla.remainder)),
      h("span", { class: "lw-muted", text: ` = ${dla.quantity ?? "logit"} ` }),
      numberEl("span", "lw-dla-logit", dla.logit, fmt3(dla.logit)),
    ]);
    const out: Node[] = [
      h("div", {
        class: "lw-ll-section-title",
        text: `Direct logit attribution of “${displayToken(targetText)}” at pos ${d.pos}, up to ${rowLabel}`,
      }),
      h("div", { class: "lw-ll-dla", testid: "lw-dla", attrs: { role: "list" } }, rows),
      identity,
    ];
    const gap = sum + Number(dla.remainder) - Number(dla.logit);
    if (Number.isFinite(gap) && Math.abs(gap) > 1e-3 * Math.max(1, Math.abs(Number(dla.logit)))) {
      out.push(
        h("div", {
          class: "lw-ll-detail-note",
          testid: "lw-dla-mismatch",
          text: `The parts miss the logit by ${fmt3(gap)} (a component not decomposed, e.g. a norm that is not folded).`,
        }),
      );
    }
    return out;
  }
}

/** The token id a top-k row carries, if any. */
function tokenId(row: HTMLElement): number | undefined {
  const id = Number(row.dataset.tokenId);
  return row.dataset.tokenId !== undefined && Number.isInteger(id) ? id : undefined;
}
