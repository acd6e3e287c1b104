// LogitLensTable view (widgets/logit_lens.py; contract in docs/protocol.md, LogitLensTable).
//
// Header: prompt + Run (Ctrl/Cmd+Enter), the shading mode, the target token (input + Set, and
// the current target). Body: the ablation banner with Undo, the virtualised canvas table
// (logit_lens/table.ts) and the cell detail panel drawn from `cell_detail` (logit_lens/detail.ts).
// Trait changes are coalesced into one redraw per task; the top-k table is decoded only when
// `top_ids` / `top_probs` / `top_meta` change.
//
// Requests: run {prompt}, set_target {target, target_id?}, select {row, pos}, ablate {component, mode},
// pick {component} (a DLA contributor clicked: the lens selection), undo {}.
// The view sets traits `mode`, `ablation_mode` and `resample_prompts` itself.

import { button, h, hasFocus } from "./lib/dom";
import { onSubmitKey, promptRow } from "./lib/inputs";
import { resampleField } from "./lib/resample";
import { indexPair, strings } from "./lib/json";
import type { Reply } from "./lib/protocol";
import { createRedraw } from "./lib/redraw";
import { shorten } from "./lib/svg";
import { displayToken } from "./lib/tokens";
import type { AnyModel, RenderProps } from "./lib/types";
import type { ExportItem } from "./lib/widget";
import { createWidget, svgBlob } from "./lib/widget";
import type { LensMode, TargetStats, TopTable } from "./logit_lens/data";
import { MODES, byteLength, countChanged, decodeChanged, decodeTargetStats, decodeTopTable, normalizeMode } from "./logit_lens/data";
import { DetailPanel } from "./logit_lens/detail";
import type { LensData } from "./logit_lens/table";
import { LensTableView } from "./logit_lens/table";

/** Parse the `selected` trait: [row, pos] inside an R x T table, or null. */
export function parseSelected(x: unknown, R: number, T: number): [number, number] | null {
  return indexPair(x, R, T);
}

// Not a named export: anywidget warns ("Direct export of a 'render'") when a module has one.
function render({ model, el }: RenderProps): () => void {
  const w = createWidget(model, el, { name: "logit-lens" });
  const { root } = w;

  // ---- header -------------------------------------------------------------------------------
  const prompt = promptRow(w);
  const mode = h("select", { class: "lw-select", testid: "lw-lens-mode", attrs: { "aria-label": "Shade cells by" } });
  for (const [v, label] of MODES) mode.appendChild(h("option", { text: label, attrs: { value: v } }));
  const targetInput = h("input", {
    class: "lw-prompt lw-ll-target-input",
    testid: "lw-target",
    attrs: { type: "text", spellcheck: "false", "aria-label": "Target token", placeholder: 'e.g. " Paris" (leading space matters)' },
  });
  const setTargetBtn = button("Set target", "lw-set-target", "lw-btn");
  const targetNow = h("span", { class: "lw-ll-target-now", testid: "lw-target-text" });
  const summary = h("span", { class: "lw-summary", testid: "lw-summary" });
  const ablationMode = h("select", { class: "lw-select", testid: "lw-mode", attrs: { "aria-label": "Ablation mode" } });
  for (const m of ["zero", "mean", "resample"]) ablationMode.appendChild(h("option", { text: m, attrs: { value: m } }));
  const resample = resampleField(w);
  const controls = h("div", { class: "lw-controls" }, [
    h("label", { class: "lw-field" }, [h("span", { text: "Shade by" }), mode]),
    h("span", { class: "lw-field lw-ll-target-field" }, [h("span", { text: "Target" }), targetInput, setTargetBtn]),
    targetNow,
    h("label", { class: "lw-field" }, [h("span", { text: "Ablation" }), ablationMode]),
    resample.el,
    summary,
  ]);
  w.header.append(prompt.el, controls);
  // The busy indicator sits at the end of the controls row rather than above the table, so that a
  // quick request (a click) does not push the table down under the pointer.
  const busyBox = root.querySelector<HTMLElement>(":scope > [data-testid=lw-busy]");
  if (busyBox) controls.appendChild(busyBox);

  // ---- body ---------------------------------------------------------------------------------
  const ablatedText = h("span", { class: "lw-ll-ablated-text", testid: "lw-ablated-text" });
  const undoBtn = button("Undo", "lw-undo", "lw-btn lw-btn-small");
  undoBtn.title = "Back to the original run";
  const banner = h("div", { class: "lw-ll-ablated", testid: "lw-ablated", attrs: { role: "status" } }, [ablatedText, undoBtn]);
  banner.hidden = true;

  const table = new LensTableView({
    onSelect: (row, pos) => select(row, pos),
    onTarget: (tok, id) => setTarget(tok, id),
  });
  const detail = new DetailPanel({
    onTarget: (tok, id) => setTarget(tok, id),
    onAblate: (label) => ablate(label),
    onPick: (label) => void w.request("pick", { component: label }),
  });
  // The side column keeps its width while empty, so that the first click does not narrow the table
  // (and hide the clicked cell); it wraps below the table when the output is narrow.
  const detailEmpty = h("div", {
    class: "lw-ll-detail-empty",
    testid: "lw-detail-empty",
    text: "Click a cell to see its top predictions and the direct logit attribution of the target.",
  });
  const side = h("div", { class: "lw-ll-side" }, [detailEmpty, detail.el]);
  w.body.append(banner, h("div", { class: "lw-ll-main" }, [h("div", { class: "lw-ll-table-col" }, [table.el]), side]));

  // ---- state --------------------------------------------------------------------------------
  let top: { key: unknown[]; table: TopTable | null } = { key: [], table: null };
  let stats: { key: unknown; table: TopTable | null; value: TargetStats | null } = { key: null, table: null, value: null };
  let changed: { key: unknown; table: TopTable | null; value: Uint8Array | null } = { key: null, table: null, value: null };
  /** A clicked cell shown as selected until Python answers (then the `selected` trait rules). */
  let localSel: [number, number] | null = null;
  let scrolledToSelection = false;

  const ablated = () => strings(model.get("ablated"));

  function decodeTop(): void {
    const key = [model.get("top_ids"), model.get("top_probs"), JSON.stringify(model.get("top_meta") ?? null)];
    if (key.every((k, i) => k === top.key[i])) return;
    top = { key, table: null };
    top.table = w.decode("logit lens table", () => decodeTopTable(key[0], key[1], model.get("top_meta")));
  }

  function decodeStats(): void {
    const t = top.table;
    const x = model.get("target_stats");
    if (x === stats.key && t === stats.table) return;
    stats = { key: x, table: t, value: null };
    if (!t) return;
    stats.value = w.decode("target statistics", () => decodeTargetStats(x, t.R, t.T));
  }

  function decodeMask(): void {
    const t = top.table;
    const x = model.get("changed");
    if (x === changed.key && t === changed.table) return;
    changed = { key: x, table: t, value: null };
    if (!t || byteLength(x) === 0) return;
    changed.value = w.decode("changed-cells mask", () => decodeChanged(x, t.R, t.T));
  }

  function lensData(): LensData {
    const t = top.table;
    const vocab = model.get("vocab");
    const target = Number(model.get("target"));
    return {
      table: t,
      tokens: strings(model.get("tokens")),
      rowLabels: strings(model.get("row_labels")),
      rowHooks: strings(model.get("row_hooks")),
      vocab: vocab && typeof vocab === "object" ? (vocab as Record<string, string>) : {},
      stats: stats.value,
      target: Number.isInteger(target) ? target : -1,
      targetText: String(model.get("target_text") ?? ""),
      mode: normalizeMode(model.get("mode")),
      changed: changed.value,
      selected: t ? localSel ?? parseSelected(model.get("selected"), t.R, t.T) : null,
    };
  }

  // ---- actions ------------------------------------------------------------------------------
  async function select(row: number, pos: number): Promise<void> {
    localSel = [row, pos];
    invalidate("table");
    const reply = await w.request("select", { row, pos });
    if (disposed) return;
    if (!reply) {
      localSel = null;
      invalidate("table");
      return;
    }
    // The trait `cell_detail` carries the same object; draw the reply too, in case it comes first.
    showDetail(reply);
  }

  function showDetail(reply: Reply): void {
    const r = reply.result as { row?: unknown; pos?: unknown };
    if (localSel && r && r.row === localSel[0] && r.pos === localSel[1]) {
      detail.render(reply.result, ablated());
      detailEmpty.hidden = true;
    }
  }

  /** A token picked from the table comes with its id (sent as `target_id`, so tokens that do not
   * re-tokenize to themselves still work); a typed one is sent as text. */
  function setTarget(tok: string, id?: number): void {
    if (!tok) {
      w.showError({ kind: "input", message: 'Type a target token first, e.g. " Paris" (with its leading space).' });
      return;
    }
    targetInput.value = tok;
    void w.request("set_target", id === undefined ? { target: tok } : { target: tok, target_id: id });
  }

  function ablate(component: string): void {
    if (!component) return;
    const m = String(model.get("ablation_mode") || ablationMode.value || "zero");
    if (m === "resample") resample.commit();
    void w.request("ablate", { component, mode: m });
  }

  w.listen(setTargetBtn, "click", () => setTarget(targetInput.value));
  onSubmitKey(w, targetInput, () => setTarget(targetInput.value));
  w.listen(mode, "change", () => {
    model.set("mode", normalizeMode(mode.value));
    model.save_changes();
    invalidate("table");
  });
  w.listen(ablationMode, "change", () => {
    model.set("ablation_mode", ablationMode.value);
    model.save_changes();
    resample.sync(ablationMode.value);
  });
  w.listen(undoBtn, "click", () => void w.request("undo", {}));
  w.onPending((open) => {
    const busy = open.length > 0;
    setTargetBtn.disabled = busy;
    undoBtn.disabled = busy;
    detail.setBusy(busy);
  });

  // ---- drawing ------------------------------------------------------------------------------
  type Part = "decode" | "header" | "table" | "detail" | "banner";
  const redraw = createRedraw<Part>(draw);
  const invalidate = redraw.invalidate;

  function draw(d: Set<Part>): void {
    if (d.has("decode")) {
      const before = top.table;
      decodeTop();
      decodeStats();
      decodeMask();
      if (top.table !== before) localSel = null;
      ["table", "header", "banner"].forEach((p) => d.add(p as Part));
    }
    const t = top.table;
    if (d.has("header")) {
      const m = normalizeMode(model.get("mode"));
      mode.value = m;
      const am = String(model.get("ablation_mode") ?? "zero");
      ablationMode.value = am;
      resample.sync(am);
      prompt.sync();
      const target = Number(model.get("target"));
      const text = String(model.get("target_text") ?? "");
      targetNow.replaceChildren();
      if (Number.isInteger(target) && target >= 0) {
        targetNow.append(
          h("span", { class: "lw-muted", text: "current: " }),
          h("span", { class: "lw-tok lw-ll-target-tok", text: displayToken(text) }),
          h("span", { class: "lw-muted", text: ` (id ${target})` }),
        );
        targetNow.title = JSON.stringify(text);
        targetNow.dataset.target = String(target);
        if (targetInput.value === "" && !hasFocus(targetInput)) targetInput.value = text;
      } else {
        targetNow.append(h("span", { class: "lw-muted", text: "no target" }));
        targetNow.title = "";
        targetNow.dataset.target = "-1";
      }
      const toks = strings(model.get("tokens"));
      summary.textContent = t ? `${toks.length || t.T} tokens · ${t.R} rows · top ${t.k}` : "";
    }
    if (d.has("banner")) {
      const abl = ablated();
      if (abl.length) {
        const n = countChanged(changed.value);
        const how = String(model.get("ablated_mode") ?? "");
        ablatedText.textContent = `Ablated${how ? ` (${how})` : ""}: ${abl.join(", ")}. ${n} cell${n === 1 ? "" : "s"} changed vs original (top-1 token differs, marked ◤).`;
        banner.dataset.ablated = abl.join(",");
        banner.dataset.changed = String(n);
        banner.hidden = false;
      } else {
        banner.hidden = true;
        banner.dataset.ablated = "";
      }
      d.add("detail");
    }
    if (d.has("table")) {
      table.setPalette(w.palette());
      table.setData(lensData());
      table.draw();
      const sel = table.getData().selected;
      if (sel && !scrolledToSelection) {
        scrolledToSelection = true;
        table.scrollToCell(sel[0], sel[1]);
      }
    }
    if (d.has("detail")) detail.render(model.get("cell_detail"), ablated());
    detailEmpty.hidden = !t || detail.isShown();
  }

  // ---- traits -------------------------------------------------------------------------------
  w.onChange(["top_ids", "top_probs", "top_meta", "target_stats", "changed"], () => invalidate("decode"));
  w.onChange(["tokens", "target", "target_text", "mode"], () => invalidate("table", "header"));
  w.onChange(["row_labels", "row_hooks", "vocab"], () => invalidate("table"));
  w.onChange(["prompt", "k", "ablation_mode", "resample_prompts"], () => invalidate("header"));
  w.onChange(["selected"], () => {
    localSel = null;
    invalidate("table");
  });
  w.onChange(["cell_detail"], () => invalidate("detail"));
  w.onChange(["ablated", "ablated_mode"], () => invalidate("banner", "detail"));
  detail.setTheme(w.theme());
  w.onTheme((p) => {
    detail.setTheme(p.theme);
    invalidate("table");
  });

  w.setExports(() => {
    const items: ExportItem[] = [];
    if (top.table) {
      const { full } = table.exportWindow();
      const what = full ? "Table" : "Visible table";
      items.push(
        { id: "png", label: `${what} (PNG)`, filename: "logit-lens.png", make: () => table.toPNG() },
        { id: "svg", label: `${what} (SVG)`, filename: "logit-lens.svg", make: () => svgBlob(table.toSVG(exportTitle())) },
      );
    }
    return items;
  });
  const exportTitle = () => {
    const p = String(model.get("prompt") ?? "");
    const abl = ablated();
    const m = normalizeMode(model.get("mode"));
    const by = m === "top" ? "top-1 probability" : m === "target_prob" ? "target probability" : "target rank";
    return `Logit lens (${by})${abl.length ? `, ${abl.join(", ")} ablated` : ""}${p ? ` — ${shorten(p, 60)}` : ""}`;
  };

  // Redraw when the scroll container's size changes (output area resized, first layout).
  w.observeResize(table.scroller, () => table.schedule());

  let disposed = false;
  // First paint, synchronously.
  redraw.flush("decode", "detail");

  return () => {
    disposed = true;
    redraw.dispose();
    table.destroy();
    w.dispose();
  };
}

export default { render };

/** For tests: the model API this view uses. */
export type { AnyModel, LensMode };
