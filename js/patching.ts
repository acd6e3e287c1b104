// PatchingHeatmap view (widgets/patching.py; contract in docs/protocol.md).
//
// Header: clean and corrupted prompts, answer and wrong answer + Apply (set_inputs; one pair per
// line for a dataset, patching/pairs.ts); direction and metric selects (traits) and the one-click
// recovery / logit-diff switch; the sites menu (set_sites); "Run exact sweep" (sweep, with the
// shared progress bar + Cancel) and the partial badge.
// Body: the metric on both runs and both tokenizations (differing positions marked); the list of
// pairs (2+); one card per site in `sites` (SiteCard: heatmap, legend, attribution-vs-exact
// agreement) with its top components beside it (patching/top.ts; a row click = a cell click);
// a tooltip for the hovered cell; the cell panel drawn from `cell_result`.
// Trait changes are coalesced into one redraw per animation frame (a streaming sweep updates
// `exact` many times a second); result maps are decoded only for entries whose bytes changed.
//
// This file is the widget shell: it lays the parts out, wires requests and traits, and redraws.
// The parts live in patching/: settings.ts (directions, metrics, `selected`), controls.ts (their
// selects and the metric switch), sweep.ts (the sweep controls), sites.ts (the sites menu),
// summary.ts (the metric on both runs), tokens.ts (the two tokenizations), tooltip.ts, blocks.ts
// (one block per site: site.ts's card and top.ts's list), cell.ts, pairs.ts, export.ts.

import type { CellContext } from "./patching/cell";
import { CellPanel } from "./patching/cell";
import type { SiteEntry } from "./patching/data";
import { ResultMapCache, diffMasks, sweepCounts } from "./patching/data";
import { SiteBlocks } from "./patching/blocks";
import { SettingsControls } from "./patching/controls";
import { heatmapsSVG } from "./patching/export";
import { InputBox, RejectedPanel } from "./patching/inputs";
import { PairsList, parsePairs } from "./patching/pairs";
import { metricLabel, otherMetric, parseSelected } from "./patching/settings";
import type { SiteCard } from "./patching/site";
import { SitesMenu } from "./patching/sites";
import { MetricSummary } from "./patching/summary";
import { SweepControls } from "./patching/sweep";
import { TokenRows } from "./patching/tokens";
import { showCellTooltip } from "./patching/tooltip";
import { parseTop } from "./patching/top";
import { h } from "./lib/dom";
import { fmt3 } from "./lib/format";
import type { Cell } from "./lib/heatmap";
import { numberOr, strings } from "./lib/json";
import { asRequestError } from "./lib/protocol";
import { svgToPNG } from "./lib/raster";
import { createRedraw, onWidthChange } from "./lib/redraw";
import type { AnyModel, RenderProps } from "./lib/types";
import type { ExportItem } from "./lib/widget";
import { createWidget, svgBlob } from "./lib/widget";

export { DIRECTIONS, METRICS, metricLabel, otherMetric, parseSelected } from "./patching/settings";

type Part = "inputs" | "tokens" | "summary" | "sitesMenu" | "maps" | "layout" | "select" | "cell" | "sweep" | "theme" | "pairs" | "top";
const ALL_PARTS: Part[] = ["inputs", "tokens", "summary", "sitesMenu", "maps", "layout", "select", "cell", "sweep", "theme", "pairs", "top"];

// Not a named export: anywidget warns ("Direct export of a 'render'") when a module has one.
function render({ model, el }: RenderProps): () => void {
  const w = createWidget(model, el, { name: "patching" });
  const { root } = w;
  const doc = root.ownerDocument;
  const win = doc.defaultView;

  // ---- header ---------------------------------------------------------------------------------
  const box = new InputBox(w, () => void apply());

  const settings = new SettingsControls();
  const { direction, metric, metricToggle } = settings;

  const sitesMenu = new SitesMenu();
  const { summary: sitesSummary, list: sitesList, el: sitesBox } = sitesMenu;

  const sweepCtl = new SweepControls();

  w.header.append(
    box.promptsEl,
    box.answersEl,
    h("div", { class: "lw-controls" }, [...settings.els, sitesBox, ...sweepCtl.els]),
  );

  // ---- body: summary and tokens ---------------------------------------------------------------
  const summary = new MetricSummary();
  let posMark: number | null = null;
  const markPos = (i: number | null) => {
    posMark = i;
    invalidate("select");
  };
  const tokenRows = new TokenRows(markPos);
  const { clean: cleanStrip, corrupted: corrStrip } = tokenRows;
  const rejected = new RejectedPanel();

  // ---- body: maps, tooltip, cell panel ----------------------------------------------------------
  const mapsList = h("div", { class: "lw-pt-cards" });
  const mapsEmpty = h("div", { class: "lw-empty", testid: "lw-maps-empty" });
  const tooltip = h("div", { class: "lw-tooltip lw-pt-tooltip", testid: "lw-tooltip", attrs: { role: "tooltip" } });
  tooltip.hidden = true;
  const mapsEl = h("div", { class: "lw-pt-maps", testid: "lw-maps" }, [mapsEmpty, mapsList, tooltip]);
  const cellPanel = new CellPanel();
  const pairsList = new PairsList();
  w.body.append(
    h("div", { class: "lw-pt-top" }, [summary.el, tokenRows.el]),
    pairsList.el,
    rejected.el,
    h("div", { class: "lw-main lw-pt-main" }, [mapsEl, cellPanel.el]),
  );

  // ---- state ------------------------------------------------------------------------------------
  const exactCache = new ResultMapCache();
  const attrCache = new ResultMapCache();
  let exact = new Map<string, SiteEntry>();
  let attribution = new Map<string, SiteEntry>();
  let exactErrors = new Map<string, string>();
  let attrErrors = new Map<string, string>();
  const blocks = new SiteBlocks({
    onCellClick: clickCell,
    onHover: (c, cell) => showTooltip(c, cell),
    onPosHover: markPos,
    onChange: () => {
      tooltip.hidden = true;
      invalidate("layout");
    },
  });
  const { cards, tops } = blocks;
  /** The cell clicked, until Python's `selected` says otherwise. */
  let localSel: { site: string; index: number[] } | null = null;
  let redraws = 0;

  const sites = () => strings(model.get("sites"));
  const available = () => strings(model.get("available_sites"));
  const cleanTokens = () => strings(model.get("clean_tokens"));
  const corruptedTokens = () => strings(model.get("corrupted_tokens"));
  const selection = () => localSel ?? parseSelected(model.get("selected"));

  // ---- actions ----------------------------------------------------------------------------------
  async function apply(): Promise<void> {
    const args = box.args();
    w.showError(null);
    showRejected(null);
    try {
      await w.client.request("set_inputs", args);
    } catch (e) {
      const err = asRequestError(e, "set_inputs");
      if (err.kind === "cancelled" || err.kind === "disposed") return;
      w.showError(err);
      showRejected(err.details);
    }
  }

  function showRejected(details: unknown): void {
    rejected.show(details, box.pairCount() > 1);
  }

  function setSites(list: string[]): void {
    void w.request("set_sites", { sites: list }).then((r) => {
      if (!r) invalidate("sitesMenu");
    });
  }

  function sweep(): void {
    void w.request("sweep", { sites: sites() });
    invalidate("sweep");
  }

  function clickCell(site: string, index: number[]): void {
    localSel = { site, index: [...index] };
    invalidate("select");
    void w.request("patch", { site, index });
  }

  w.listen(direction, "change", () => {
    model.set("direction", direction.value);
    model.save_changes();
  });
  function setMetric(v: string): void {
    model.set("metric", v);
    model.save_changes();
    invalidate("summary", "maps", "inputs");
  }
  w.listen(metric, "change", () => setMetric(metric.value));
  w.listen(metricToggle, "click", () => setMetric(otherMetric(String(model.get("metric") ?? "normalized")).value));
  w.listen(sweepCtl.sweepBtn, "click", sweep);
  w.listen(sweepCtl.cancelBtn, "click", () => {
    sweepCtl.cancelling = true;
    invalidate("sweep");
    w.client.request("cancel_sweep", {}).catch((e) => {
      sweepCtl.cancelling = false;
      invalidate("sweep");
      const err = asRequestError(e, "cancel_sweep");
      if (err.kind !== "disposed") w.showError(err);
    });
  });
  w.listen(sitesList, "change", () => setSites(sitesMenu.picked(sites())));
  // The sites menu closes on a click elsewhere in the widget, or Esc.
  w.listen(root, "click", (ev) => {
    if (sitesBox.open && !sitesBox.contains(ev.target as Node)) sitesBox.open = false;
  });
  w.listen(root, "keydown", (ev) => {
    if (ev.key === "Escape" && sitesBox.open) {
      sitesBox.open = false;
      sitesSummary.focus();
    }
  });
  w.onPending(() => invalidate("sweep"));

  // ---- tooltip --------------------------------------------------------------------------------
  function showTooltip(card: SiteCard, cell: Cell | null): void {
    showCellTooltip(tooltip, mapsEl, card, cell);
  }

  // ---- drawing --------------------------------------------------------------------------------
  const redraw = createRedraw<Part>(draw, { timing: "frame", win });
  const invalidate = redraw.invalidate;

  function width(): number {
    return mapsEl.clientWidth || root.clientWidth || el.clientWidth || 0;
  }

  function renderInputs(): void {
    box.sync(model);
    settings.sync(String(model.get("direction") ?? "denoise"), String(model.get("metric") ?? "normalized"));
  }

  function renderSitesMenu(): void {
    sitesMenu.render(sites(), available());
  }

  function renderTokens(): void {
    tokenRows.render(cleanTokens(), corruptedTokens());
  }

  function renderSummary(): void {
    summary.render({
      cleanValue: numberOr(model.get("clean_value")),
      corruptedValue: numberOr(model.get("corrupted_value")),
      answer: String(model.get("answer") ?? ""),
      wrong: String(model.get("wrong") ?? ""),
      metric: String(model.get("metric") ?? "normalized"),
      pairs: parsePairs(model.get("pairs")).length,
    });
  }

  function renderTop(): void {
    const map = model.get("top_components");
    const sel = selection();
    for (const [s, top] of tops) top.set(parseTop(map, s), sel && sel.site === s ? sel.index : null);
  }

  function renderMaps(d: Set<Part>): void {
    if (d.has("maps")) {
      const ex = exactCache.update(model.get("exact"));
      const at = attrCache.update(model.get("attribution"));
      exact = ex.entries;
      exactErrors = ex.errors;
      attribution = at.entries;
      attrErrors = at.errors;
    }
    const list = sites();
    const els = blocks.sync(list);
    if (els.length !== mapsList.children.length || els.some((e, i) => mapsList.children[i] !== e)) mapsList.replaceChildren(...els);
    const ct = cleanTokens();
    const xt = corruptedTokens();
    const [diff] = diffMasks(ct, xt);
    const label = metricLabel(String(model.get("metric") ?? "normalized"), parsePairs(model.get("pairs")).length);
    const sel = selection();
    const wd = width();
    const palette = w.palette();
    for (const s of list) {
      const card = cards.get(s)!;
      card.setPalette(palette);
      const errs = [exactErrors.get(s), attrErrors.get(s)].filter(Boolean).map((e, i) => `${i === 0 && exactErrors.has(s) ? "exact" : "attribution"}: ${e}`);
      card.setData({
        exact: exact.get(s) ?? null,
        attribution: attribution.get(s) ?? null,
        error: errs.length ? `Could not decode this site's values (${errs.join("; ")}).` : "",
        cleanTokens: ct,
        corruptedTokens: xt,
        diff,
        metricLabel: label,
      });
      card.setWidth(wd);
      card.setSelected(sel && sel.site === s ? sel.index : null);
      card.setColumnMark(posMark);
      card.draw();
    }
    cleanStrip.setMarks(posMark);
    corrStrip.setMarks(posMark);
    mapsEmpty.hidden = list.length > 0;
    mapsEmpty.textContent = available().length ? "Choose sites to patch (sites ▾)." : "Apply a clean and a corrupted prompt to start.";
    redraws++;
    mapsEl.dataset.redraws = String(redraws);
  }

  function renderSweep(): void {
    const own = w.client.pending().some((o) => o.kind === "sweep");
    sweepCtl.render(String(model.get("sweep_state") ?? "idle"), own, sites().length, sweepCounts(exact, sites(), attribution), model.get("sweep_progress"));
  }

  function renderCell(): void {
    const ctx: CellContext = {
      direction: String(model.get("direction") ?? "denoise"),
      cleanValue: numberOr(model.get("clean_value")),
      corruptedValue: numberOr(model.get("corrupted_value")),
      cleanTokens: cleanTokens(),
      corruptedTokens: corruptedTokens(),
      palette: w.palette(),
      pairs: parsePairs(model.get("pairs")),
    };
    cellPanel.render(model.get("cell_result"), ctx);
  }

  function draw(d: Set<Part>): void {
    if (d.has("inputs")) renderInputs();
    if (d.has("sitesMenu")) renderSitesMenu();
    if (d.has("tokens")) renderTokens();
    if (d.has("summary")) renderSummary();
    if (["maps", "layout", "select", "theme", "tokens"].some((p) => d.has(p as Part))) renderMaps(d);
    if (d.has("maps") || d.has("sweep")) renderSweep();
    if (d.has("cell") || d.has("theme")) renderCell();
    if (d.has("pairs")) pairsList.set(parsePairs(model.get("pairs")));
    if (["top", "maps", "select"].some((p) => d.has(p as Part))) renderTop();
  }

  // ---- traits -----------------------------------------------------------------------------------
  w.onChange(["clean_prompt", "corrupted_prompt", "answer", "wrong", "direction", "metric"], () => invalidate("inputs"));
  w.onChange(["answer", "wrong", "metric", "clean_value", "corrupted_value"], () => invalidate("summary"));
  w.onChange(["clean_tokens", "corrupted_tokens"], () => invalidate("tokens", "cell"));
  w.onChange(["pairs"], () => invalidate("pairs", "summary", "maps", "cell"));
  w.onChange(["top_components"], () => invalidate("top"));
  w.onChange(["sites", "available_sites"], () => invalidate("sitesMenu", "maps", "sweep"));
  w.onChange(["exact", "attribution"], () => invalidate("maps"));
  w.onChange(["sweep_state", "sweep_progress"], () => invalidate("sweep"));
  w.onChange(["cell_result", "direction"], () => invalidate("cell"));
  w.onChange(["selected"], () => {
    localSel = null;
    invalidate("select");
  });
  w.onChange(["clean_tokens"], () => showRejected(null));
  w.onChange(["error"], () => {
    const e = model.get("error") as { details?: unknown } | null;
    if (e && typeof e === "object" && e.details) showRejected(e.details);
  });
  w.onTheme(() => invalidate("theme"));

  // ---- export -----------------------------------------------------------------------------------
  function svg(): string {
    const p = w.palette();
    const shown = sites()
      .map((s) => cards.get(s))
      .filter((c): c is SiteCard => !!c && c.hasValues());
    const dir = String(model.get("direction") ?? "denoise");
    const header = [
      `Activation patching (${dir}) — ${metricLabel(String(model.get("metric") ?? "normalized"), parsePairs(model.get("pairs")).length)}`,
      `clean: ${JSON.stringify(String(model.get("clean_prompt") ?? ""))} → ${fmt3(numberOr(model.get("clean_value")))}`,
      `corrupted: ${JSON.stringify(String(model.get("corrupted_prompt") ?? ""))} → ${fmt3(numberOr(model.get("corrupted_value")))}`,
      `answer ${JSON.stringify(String(model.get("answer") ?? ""))} vs wrong ${JSON.stringify(String(model.get("wrong") ?? ""))}`,
    ];
    return heatmapsSVG(
      shown.map((c) => c.exportSpec()),
      header,
      { bg: p.bg, fg: p.fg, muted: p.muted, border: p.border, accent: p.accent },
    );
  }
  w.setExports(() => {
    const items: ExportItem[] = [];
    if ([...cards.values()].some((c) => c.hasValues())) {
      items.push(
        { id: "png", label: "Heatmaps (PNG)", filename: "patching.png", make: () => svgToPNG(svg(), 2, 10_000, doc) },
        { id: "svg", label: "Heatmaps (SVG)", filename: "patching.svg", make: () => svgBlob(svg()) },
      );
    }
    return items;
  });

  // Relayout when the maps' width changes.
  onWidthChange(w, mapsEl, width, () => invalidate("layout"));

  // First paint, synchronously.
  redraw.flush(...ALL_PARTS);

  return () => {
    redraw.dispose();
    blocks.destroy();
    cellPanel.destroy();
    for (const s of [cleanStrip, corrStrip]) s.destroy();
    rejected.destroy();
    w.dispose();
  };
}

export default { render };

/** For tests: the model API this view uses. */
export type { AnyModel };
