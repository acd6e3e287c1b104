// The detail panel of the circuit view: the clicked edge (its exact patch beside its attribution
// estimate) or the clicked node (its score, direct logit attribution, the tokens its output
// promotes and suppresses, and for a head its attention from the answer position), with the
// Remove / Restore buttons. Numbers carry data-value (the exact JSON number); tokens are text.
//
// Elements (data-testid): lw-ci-panel; edge: lw-ci-edge-label, lw-ci-edge-estimate,
// lw-ci-edge-effect, lw-ci-edge-value, lw-ci-edge-normalized, lw-ci-edge-rank, and with the
// weights overlay on lw-ci-edge-composition, lw-ci-edge-composition-z (or lw-ci-edge-no-composition); node:
// lw-ci-node-label, lw-ci-node-score, lw-ci-node-dla, lw-ci-promoted / lw-ci-suppressed (rows
// lw-ci-token with data-token, data-id, data-value), lw-ci-attention (rows lw-ci-attn-row with
// data-pos, data-value), lw-ci-remove, lw-ci-restore.

import { button, h } from "../lib/dom";
import { fmt3, numberEl } from "../lib/format";
import { isObject, numberOr, strings } from "../lib/json";
import { displayToken } from "../lib/tokens";

export interface PanelActions {
  remove(label: string): void;
  restore(): void;
}

function row(name: string, value: HTMLElement, hint = ""): HTMLElement {
  const r = h("div", { class: "lw-ci-row" }, [h("span", { class: "lw-ci-name", text: name }), value]);
  if (hint) r.title = hint;
  return r;
}

function tokenTable(testid: string, caption: string, items: unknown): HTMLElement {
  const body = h("tbody");
  for (const it of Array.isArray(items) ? items : []) {
    if (!isObject(it)) continue;
    const tr = h("tr", { class: "lw-ci-token", testid: "lw-ci-token" }, [
      h("td", { class: "lw-tok", text: displayToken(it.token) }),
      numberEl("td", "lw-ci-token-value", it.value, fmt3(it.value)),
    ]);
    tr.dataset.token = String(it.token ?? "");
    tr.dataset.id = String(it.id ?? "");
    tr.dataset.value = String(it.value);
    tr.title = JSON.stringify(String(it.token ?? ""));
    body.appendChild(tr);
  }
  return h("table", { class: "lw-top lw-ci-tokens", testid }, [h("caption", { text: caption }), body]);
}

export class DetailPanel {
  readonly el: HTMLElement;
  private actions: PanelActions;

  constructor(actions: PanelActions) {
    this.actions = actions;
    this.el = h("div", { class: "lw-ci-panel", testid: "lw-ci-panel" });
    this.el.hidden = true;
  }

  /** Show the edge result, the node result (whichever `selected` names), or nothing. */
  render(selected: unknown, edge: unknown, node: unknown, removed: string[], inCircuit: (n: string) => boolean, overlayOn = false): void {
    const sel = isObject(selected) ? selected : {};
    const parts: HTMLElement[] = [];
    if (typeof sel.edge === "string" && isObject(edge) && edge.edge === sel.edge) parts.push(...this.edgeParts(edge, overlayOn));
    else if (typeof sel.node === "string" && isObject(node) && node.label === sel.node) parts.push(...this.nodeParts(node, removed, inCircuit(sel.node)));
    if (removed.length) {
      const restore = button(`Restore ${removed.join(", ")}`, "lw-ci-restore", "lw-btn lw-btn-small");
      restore.addEventListener("click", () => this.actions.restore());
      parts.push(h("div", { class: "lw-ci-actions" }, [restore]));
    }
    this.el.replaceChildren(...parts);
    this.el.hidden = parts.length === 0;
  }

  private edgeParts(e: Record<string, any>, overlayOn: boolean): HTMLElement[] {
    const title = h("div", { class: "lw-ci-title", testid: "lw-ci-edge-label", text: String(e.edge) });
    title.dataset.edge = String(e.edge);
    const method = String(e.method ?? "");
    return [
      title,
      h("div", { class: "lw-ci-muted", text: `${e.up} → ${e.down}${e.port ? ` (${e.port} input)` : ""}; rank ${e.rank} of ${e.n_edges} by |score|` }),
      row(`estimate (${method || "data"})`, numberEl("span", "lw-ci-edge-estimate", e.estimate), `attribution (${method}): predicted change of the metric when this edge alone carries the clean value`),
      row("exact effect", numberEl("span", "lw-ci-edge-effect", e.effect), "metric with only this edge patched − corrupted metric"),
      row("metric after patch", numberEl("span", "lw-ci-edge-value", e.value)),
      row("normalized", numberEl("span", "lw-ci-edge-normalized", e.normalized), "0 = corrupted run, 1 = clean run"),
      h("div", { class: "lw-ci-muted", text: `corrupted ${fmt3(e.corrupted_value)}, clean ${fmt3(e.clean_value)}` }),
      ...(overlayOn ? this.compositionParts(e.composition) : []),
    ];
  }

  /** The weights overlay's numbers for the edge: its composition score and z vs random matrices. */
  private compositionParts(c: unknown): HTMLElement[] {
    if (!isObject(c)) {
      return [h("div", { class: "lw-ci-muted", testid: "lw-ci-edge-no-composition", text: "composition (weights): none — only head → head q/k/v edges have one" })];
    }
    const kind = String(c.kind ?? "").toUpperCase();
    return [
      row(`${kind}-composition (weights)`, numberEl("span", "lw-ci-edge-composition", c.score), "‖W_OV(up) · M(down)‖ / (‖W_OV‖ ‖M‖) from the weights alone, as TransformerLens's all_composition_scores"),
      row("z vs random matrices", numberEl("span", "lw-ci-edge-composition-z", c.z, Number.isFinite(c.z) ? c.z.toFixed(1) : "–"), `baseline ${fmt3(c.baseline_mean)} ± ${fmt3(c.baseline_std)}`),
    ];
  }

  private nodeParts(n: Record<string, any>, removed: string[], inCircuit: boolean): HTMLElement[] {
    const label = String(n.label);
    const title = h("div", { class: "lw-ci-title", testid: "lw-ci-node-label", text: label });
    title.dataset.node = label;
    const parts: HTMLElement[] = [title, row("node score", numberEl("span", "lw-ci-node-score", n.score), "sum of its outgoing edge scores")];
    if (n.dla !== undefined) parts.push(row("direct logit attr.", numberEl("span", "lw-ci-node-dla", n.dla), String(n.dla_quantity ?? "")));
    if (Array.isArray(n.promoted)) parts.push(tokenTable("lw-ci-promoted", "promotes (logit change)", n.promoted));
    if (Array.isArray(n.suppressed)) parts.push(tokenTable("lw-ci-suppressed", "suppresses", n.suppressed));
    if (isObject(n.attention)) parts.push(this.attention(n.attention));
    if (label !== "embed" && label !== "logits" && inCircuit && !removed.includes(label)) {
      const rm = button("Remove from circuit", "lw-ci-remove", "lw-btn lw-btn-small");
      rm.title = "The circuit's exact metric without this node (every edge into and out of it corrupted)";
      rm.addEventListener("click", () => this.actions.remove(label));
      parts.push(h("div", { class: "lw-ci-actions" }, [rm]));
    }
    return parts;
  }

  private attention(a: Record<string, any>): HTMLElement {
    const tokens = strings(a.tokens);
    const w = Array.isArray(a.weights) ? a.weights.map((v: unknown) => numberOr(v, 0)) : [];
    const order = w.map((_: number, i: number) => i).sort((i: number, j: number) => w[j] - w[i]).slice(0, 8);
    const body = h("tbody");
    for (const i of order) {
      const bar = h("div", { class: "lw-ci-attn-bar" });
      bar.style.width = `${(100 * Math.max(0, Math.min(1, w[i]))).toFixed(1)}%`;
      const tr = h("tr", { class: "lw-ci-attn-row", testid: "lw-ci-attn-row" }, [
        h("td", { class: "lw-rank", text: `#${i}` }),
        h("td", { class: "lw-tok", text: displayToken(tokens[i]) }),
        h("td", { class: "lw-ci-attn-cell" }, [bar]),
        numberEl("td", "lw-ci-attn-value", w[i], `${(100 * w[i]).toFixed(1)}%`),
      ]);
      tr.dataset.pos = String(i);
      tr.dataset.value = String(w[i]);
      body.appendChild(tr);
    }
    const pos = numberOr(a.pos, tokens.length - 1);
    return h("table", { class: "lw-top lw-ci-attention", testid: "lw-ci-attention" }, [
      h("caption", { text: `attention from #${pos} ${displayToken(tokens[pos])}` }),
      body,
    ]);
  }
}
