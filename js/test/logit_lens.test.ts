import { describe, expect, it, vi } from "vitest";
import view, { parseSelected } from "../logit_lens";
import type { LensCanvas } from "../logit_lens/table";
import { CELL_H, CELL_W, EMPTY_DATA, HEADER_H, LABEL_W, LensTableView } from "../logit_lens/table";
import { decodeTargetStats, decodeTopTable } from "../logit_lens/data";
import { MISSING, rgbCss, sequential } from "../lib/colors";
import { readPalette } from "../lib/theme";
import { FakeModel, captureDownloads, choose, last, stubContext, tick, viewHarness } from "./helpers";
import { DETAIL, XSS, fakeLens, lensTraits, targetStats } from "./logit_lens_fixtures";

const R = 4;
const T = 6;
const K = 5;

const ui = viewHarness(view);
const { mount, tid, all, exportSvg } = ui;
const canvas = () => tid<LensCanvas>("lw-lens-table")!;

/** Where a browser test clicks cell (row, pos): canvas-relative CSS px from the data attributes. */
function cellPoint(c: HTMLCanvasElement, row: number, pos: number) {
  const d = c.dataset;
  return {
    x: Number(d.originX) + pos * Number(d.cellW) - Number(d.scrollX) + Number(d.cellW) / 2,
    y: Number(d.originY) + row * Number(d.cellH) - Number(d.scrollY) + Number(d.cellH) / 2,
  };
}

function clickAt(c: HTMLElement, x: number, y: number, init: MouseEventInit = {}) {
  c.dispatchEvent(new MouseEvent("click", { clientX: x, clientY: y, bubbles: true, ...init }));
}

describe("LogitLensTable view", () => {
  it("renders the chrome and an empty state before the first run", () => {
    const m = new FakeModel(
      lensTraits(R, T, K, { top_ids: new DataView(new ArrayBuffer(0)), top_probs: new DataView(new ArrayBuffer(0)), top_meta: {}, tokens: [] }),
    );
    mount(m);
    for (const id of ["lw-root", "lw-prompt", "lw-run", "lw-lens-mode", "lw-target", "lw-set-target", "lw-target-text", "lw-export"]) {
      expect(tid(id), id).not.toBeNull();
    }
    expect(tid<HTMLTextAreaElement>("lw-prompt")!.value).toBe("The capital of France is");
    expect(tid("lw-empty")!.hidden).toBe(false);
    expect(tid("lw-lens-scroll")!.hidden).toBe(true);
    expect(tid("lw-cell-detail")!.hidden).toBe(true);
    expect(tid("lw-ablated")!.hidden).toBe(true);
    expect(tid("lw-error")!.hidden).toBe(true);
    expect(tid("lw-target-text")!.textContent).toBe("no target");
    const modes = [...tid<HTMLSelectElement>("lw-lens-mode")!.options].map((o) => [o.value, o.textContent]);
    expect(modes).toEqual([
      ["top", "top token"],
      ["target_prob", "target prob"],
      ["target_rank", "target rank"],
    ]);
  });

  it("exposes the table layout on the canvas", () => {
    mount(new FakeModel(lensTraits(R, T, K)));
    const c = canvas();
    expect(c.tagName).toBe("CANVAS");
    expect(tid("lw-empty")!.hidden).toBe(true);
    expect(c.dataset).toMatchObject({
      rows: String(R),
      cols: String(T),
      cellW: String(CELL_W),
      cellH: String(CELL_H),
      originX: String(LABEL_W),
      originY: String(HEADER_H),
      scrollX: "0",
      scrollY: "0",
      window: `0,${R},0,${T}`,
    });
    // The inner box has the whole table's size (it makes the scroll range); the canvas the viewport's.
    const inner = tid("lw-lens-scroll")!.firstElementChild as HTMLElement;
    expect(inner.style.width).toBe(`${LABEL_W + T * CELL_W}px`);
    expect(inner.style.height).toBe(`${HEADER_H + R * CELL_H}px`);
    expect(c.style.width).toBe(`${LABEL_W + T * CELL_W}px`);
    expect(tid("lw-summary")!.textContent).toBe(`${T} tokens · ${R} rows · top ${K}`);
    expect(parseSelected([1, 2], R, T)).toEqual([1, 2]);
    expect(parseSelected([R, 0], R, T)).toBeNull();
    expect(parseSelected([], R, T)).toBeNull();
  });

  it("clicking cell (row, pos) sends select with that row and pos", () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    const c = canvas();
    for (const [r, p] of [
      [0, 0],
      [2, 5],
      [R - 1, 3],
    ]) {
      const { x, y } = cellPoint(c, r, p);
      clickAt(c, x, y);
      expect(last(m.requests())).toMatchObject({ type: "request", kind: "select", args: { row: r, pos: p } });
    }
    // Labels and the corner are not cells.
    const n = m.requests().length;
    clickAt(c, 5, HEADER_H + 5);
    clickAt(c, 5, 5);
    expect(m.requests().length).toBe(n);
  });

  it("marks the clicked cell selected before Python answers; the selected trait then rules", async () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    const c = canvas();
    const { x, y } = cellPoint(c, R - 1, 3);
    clickAt(c, x, y);
    await tick();
    expect(c.dataset.selected).toBe(`${R - 1},3`);
    m.set("selected", [1, 2]);
    await tick();
    expect(c.dataset.selected).toBe("1,2");
  });

  it("a 512 x 31 table draws only the visible cells, and clicks land on the right cell after scrolling", () => {
    const { ctx, calls } = stubContext();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(ctx as never);
    const BR = 31;
    const BT = 512;
    const m = new FakeModel(lensTraits(BR, BT, 10));
    const t0 = performance.now();
    mount(m);
    const firstDraw = performance.now() - t0;
    const c = canvas();
    expect(c.dataset.rows).toBe("31");
    expect(c.dataset.cols).toBe("512");
    // No layout in happy-dom: the fallback viewport is 960 px wide; all 31 rows fit in height.
    const [r0, r1, c0, c1] = c.dataset.window!.split(",").map(Number);
    expect([r0, r1, c0]).toEqual([0, 31, 0]);
    expect(c1).toBe(Math.ceil((960 - LABEL_W) / CELL_W));
    const visible = (r1 - r0) * (c1 - c0);
    expect(Number(c.dataset.drawnCells)).toBe(visible);
    expect(visible).toBeLessThan(BR * BT / 20);
    // One fillText per visible cell, plus headers, row labels and the corner; nowhere near 15872.
    expect(calls.get("fillText")!).toBeLessThanOrEqual(visible + 2 * (c1 - c0) + (r1 - r0) + 2);
    expect(firstDraw).toBeLessThan(1000);
    console.info(`logit lens 512x31 first render (happy-dom, stub canvas): ${firstDraw.toFixed(1)} ms; draw ${c.dataset.drawMs} ms`);

    // Scroll right by 300.5 columns and redraw (as the scroll handler does on the next frame).
    const scroller = tid("lw-lens-scroll")!;
    scroller.scrollLeft = 300.5 * CELL_W;
    scroller.dispatchEvent(new Event("scroll"));
    const before = calls.get("fillText")!;
    // Draw synchronously via the test hook (scrollToCell of a visible cell redraws without moving).
    const pt = c.lwScrollToCell(0, 305)!;
    expect(c.dataset.scrollX).toBe(String(300.5 * CELL_W));
    expect(c.dataset.window).toBe(`0,31,300,315`);
    expect(calls.get("fillText")! - before).toBeLessThanOrEqual(visible + 2 * 15 + 31 + 2);
    clickAt(c, pt.x, pt.y);
    expect(last(m.requests()).args).toEqual({ row: 0, pos: 305 });
    const p2 = cellPoint(c, 17, 310);
    clickAt(c, p2.x, p2.y);
    expect(last(m.requests()).args).toEqual({ row: 17, pos: 310 });
  });

  it("lwScrollToCell brings an off-screen cell into view and returns its centre", () => {
    const m = new FakeModel(lensTraits(31, 512, 3));
    mount(m);
    const c = canvas();
    expect(c.lwCellCenter(30, 400)).toBeNull(); // off-screen
    const pt = c.lwScrollToCell(30, 400)!;
    expect(c.lwCellCenter(30, 400)).toEqual(pt);
    const sx = Number(c.dataset.scrollX);
    expect(sx).toBe(401 * CELL_W - (960 - LABEL_W));
    expect(pt.x).toBe(LABEL_W + 400 * CELL_W - sx + CELL_W / 2);
    clickAt(c, pt.x, pt.y);
    expect(last(m.requests())).toMatchObject({ kind: "select", args: { row: 30, pos: 400 } });
    expect(c.lwScrollToCell(31, 0)).toBeNull();
  });

  it("arrow keys move a cursor (scrolling it into view); Enter selects it", () => {
    const m = new FakeModel(lensTraits(R, 40, 2));
    mount(m);
    const c = canvas();
    const key = (k: string) => c.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true }));
    key("ArrowDown");
    key("ArrowRight");
    key("ArrowRight");
    expect(c.dataset.cursor).toBe("1,2");
    key("End");
    expect(c.dataset.cursor).toBe("1,39");
    expect(Number(c.dataset.scrollX)).toBeGreaterThan(0);
    key("Enter");
    expect(last(m.requests())).toMatchObject({ kind: "select", args: { row: 1, pos: 39 } });
  });

  it("hover shows a tooltip with row label + hook, position + token, top-5 and the target", () => {
    const m = new FakeModel(lensTraits(R, T, K, { target: 1, target_text: " Paris", target_stats: targetStats(R, T) }));
    mount(m);
    const c = canvas();
    const { x, y } = cellPoint(c, 1, 3);
    c.dispatchEvent(new MouseEvent("mousemove", { clientX: x, clientY: y }));
    const tip = tid("lw-tooltip")!;
    expect(tip.hidden).toBe(false);
    expect(tip.dataset.cell).toBe("1,3");
    expect(tip.querySelector(".lw-tooltip-title")!.textContent).toBe(`L1 · pos 3 “<img·src=x·onerror=alert(1)>”`);
    expect(tip.querySelector(".lw-tooltip-hook")!.textContent).toBe("blocks.1.hook_resid_pre");
    const rows = [...tip.querySelectorAll<HTMLElement>(".lw-ll-tip-top")];
    expect(rows.length).toBe(5);
    const f = fakeLens(R, T, K);
    const base = (1 * T + 3) * K;
    rows.forEach((r, i) => expect(Number(r.dataset.tokenId)).toBe(f.ids[base + i]));
    const tgt = tid("lw-tooltip-target")!;
    expect(Number(tgt.dataset.prob)).toBeCloseTo(2 / (R + 1), 6);
    expect(Number(tgt.dataset.rank)).toBe((R - 2) * 10 + 3);
    expect(ui.el.querySelector("img")).toBeNull();
    c.dispatchEvent(new MouseEvent("mouseleave"));
    expect(tip.hidden).toBe(true);
  });

  it("the mode switch sets the mode trait and saves; the legend follows", async () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    const sel = tid<HTMLSelectElement>("lw-lens-mode")!;
    choose(sel, "target_rank");
    expect(m.get("mode")).toBe("target_rank");
    expect(m.saves).toBe(1);
    await tick();
    expect(canvas().dataset.mode).toBe("target_rank");
    // No target yet: the legend says so.
    expect(tid("lw-lens-no-target")).not.toBeNull();
    m.update({ target: 1, target_text: " Paris", target_stats: targetStats(R, T) });
    await tick();
    expect(tid("lw-lens-no-target")).toBeNull();
    expect(tid("lw-lens-legend")!.textContent).toContain("target rank (log scale)");
    expect(tid("lw-target-text")!.textContent).toBe("current: ·Paris (id 1)");
    // Python changing the mode updates the switch.
    m.set("mode", "target_prob");
    await tick();
    expect(sel.value).toBe("target_prob");
    expect(tid("lw-lens-legend")!.dataset.mode).toBe("target_prob");
  });

  it("shades target rank on a log scale: rank 0 is the strongest colour", () => {
    const table = new LensTableView({ onSelect: () => {}, onTarget: () => {} });
    table.setPalette(readPalette(document.body, "light"));
    const t = decodeTopTable(...(["top_ids", "top_probs"].map((k) => lensTraits(R, T, K)[k as "top_ids"]) as [DataView, DataView]), { shape: [R, T, K] })!;
    const st = targetStats(R, T);
    const stats = decodeTargetStats(st, R, T);
    table.setData({ ...EMPTY_DATA, table: t, stats, target: 1, mode: "target_rank" });
    const scale = sequential("light");
    // Last row: rank 0 -> the ramp's top; the largest rank (row 0, last pos) -> the bottom.
    expect(table.cellFill(R - 1, 0)).toBe(scale.css(1));
    expect(table.cellFill(0, T - 1)).toBe(scale.css(0));
    // Lower rank, stronger colour (darker in the light theme).
    const lum = (css: string) => css.match(/\d+/g)!.map(Number).reduce((a, b) => a + b, 0);
    expect(lum(table.cellFill(2, 0))).toBeLessThan(lum(table.cellFill(1, 0)));
    table.setData({ ...EMPTY_DATA, table: t, stats, target: 1, mode: "target_prob" });
    expect(table.cellFill(R - 1, 0)).toBe(scale.css(R / (R + 1)));
    table.setData({ ...EMPTY_DATA, table: t, stats: null, target: -1, mode: "target_prob" });
    expect(table.cellFill(0, 0)).toBe(rgbCss(MISSING.light));
    table.destroy();
  });

  it("target: the input + Set and Enter send set_target; top-k rows, headers and shift-click too", () => {
    const m = new FakeModel(lensTraits(R, T, K, { cell_detail: DETAIL }));
    mount(m);
    const input = tid<HTMLInputElement>("lw-target")!;
    input.value = " Rome";
    tid("lw-set-target")!.click();
    expect(last(m.requests())).toMatchObject({ kind: "set_target", args: { target: " Rome" } });
    input.value = " Berlin";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(last(m.requests())).toMatchObject({ kind: "set_target", args: { target: " Berlin" } });
    // A top-k row of the detail panel.
    const rows = all("lw-topk-row");
    rows[1].click();
    expect(last(m.requests())).toMatchObject({ kind: "set_target", args: { target: XSS } });
    expect(input.value).toBe(XSS);
    // A column header (the input token at that position).
    const c = canvas();
    clickAt(c, LABEL_W + 2 * CELL_W + 5, 20);
    expect(last(m.requests())).toMatchObject({ kind: "set_target", args: { target: " w2" } });
    // Shift-click on a cell: its top-1 token.
    const { x, y } = cellPoint(c, 1, 1);
    clickAt(c, x, y, { shiftKey: true });
    const id = (1 * 7 + 1 * 3) % 97;
    expect(last(m.requests())).toMatchObject({ kind: "set_target", args: { target: ` tok${id}` } });
    // While requests are open, the Set button is disabled.
    expect(tid<HTMLButtonElement>("lw-set-target")!.disabled).toBe(true);
  });

  it("an empty target sends nothing and says why", () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    tid("lw-set-target")!.click();
    expect(m.requests().length).toBe(0);
    expect(tid("lw-error")!.hidden).toBe(false);
    expect(tid("lw-error-message")!.textContent).toContain("leading space");
  });

  it("draws the detail panel from cell_detail: top-k, target, DLA bars and the sum line", async () => {
    const m = new FakeModel(lensTraits(R, T, K, { target: 1, target_text: " Paris" }));
    mount(m);
    expect(tid("lw-cell-detail")!.hidden).toBe(true);
    m.update({ cell_detail: DETAIL, selected: [2, 3] });
    await tick();
    const panel = tid("lw-cell-detail")!;
    expect(panel.hidden).toBe(false);
    expect(panel.dataset.cell).toBe("2,3");
    expect(tid("lw-detail-title")!.textContent).toBe("L2 · pos 3 “<img·src=x·onerror=alert(1)>”");
    expect(tid("lw-detail-hook")!.textContent).toBe("blocks.2.hook_resid_pre");
    // Top-k.
    const rows = all("lw-topk-row");
    expect(rows.map((r) => Number(r.dataset.value))).toEqual(DETAIL.top.map((e) => e.prob));
    expect(rows.map((r) => Number(r.dataset.tokenId))).toEqual(DETAIL.top.map((e) => e.id));
    expect(rows[0].querySelector("[data-testid=lw-topk-prob]")!.textContent).toBe("31.3%");
    expect(rows[0].classList.contains("lw-current")).toBe(true);
    expect(rows[2].querySelector("[data-testid=lw-topk-token]")!.textContent).toBe("↵");
    // Target.
    expect(Number(tid("lw-detail-target-prob")!.dataset.value)).toBe(DETAIL.target_prob);
    expect(Number(tid("lw-detail-target-rank")!.dataset.value)).toBe(DETAIL.target_rank);
    // DLA: sorted by |value|, exact data-value, 3-decimal text.
    const dla = all("lw-dla-row");
    expect(dla.map((r) => r.dataset.label)).toEqual(["L1H3", "mlp1", "embed", "pos_embed", "L0H0"]);
    for (const r of dla) {
      const i = DETAIL.dla.labels.indexOf(r.dataset.label!);
      expect(Number(r.dataset.value)).toBe(DETAIL.dla.values[i]);
      expect(r.querySelector("[data-testid=lw-dla-value]")!.textContent).toBe(DETAIL.dla.values[i].toFixed(3));
      expect(r.dataset.hook).toBe(DETAIL.dla.hooks[i]);
    }
    expect(dla[1].querySelector("[data-testid=lw-dla-value]")!.textContent).toBe("-0.877");
    // Ablate buttons on heads and MLPs only.
    expect(all("lw-dla-ablate").map((b) => b.dataset.label)).toEqual(["L1H3", "mlp1", "L0H0"]);
    // Sum line: sum of parts + remainder = logit.
    const sum = Number(tid("lw-dla-sum")!.dataset.value);
    const rem = Number(tid("lw-dla-remainder")!.dataset.value);
    const logit = Number(tid("lw-dla-logit")!.dataset.value);
    expect(sum).toBeCloseTo(DETAIL.dla.values.reduce((a, b) => a + b, 0), 12);
    expect(rem).toBe(DETAIL.dla.remainder);
    expect(logit).toBe(DETAIL.dla.logit);
    expect(sum + rem).toBeCloseTo(logit, 9);
    expect(tid("lw-dla-identity")!.textContent).toBe("sum of parts 0.609 + remainder 0.091 = logit 0.700");
    expect(tid("lw-dla-mismatch")).toBeNull();
    // XSS token strings are text.
    expect(ui.el.querySelector("img")).toBeNull();
    expect(rows[1].querySelector("[data-testid=lw-topk-token]")!.textContent).toBe("<img·src=x·onerror=alert(1)>");
    // Cleared.
    m.set("cell_detail", {});
    await tick();
    expect(panel.hidden).toBe(true);
  });

  it("flags a DLA that does not add up", () => {
    const bad = { ...DETAIL, dla: { ...DETAIL.dla, logit: 2.0 } };
    mount(new FakeModel(lensTraits(R, T, K, { cell_detail: bad })));
    expect(tid("lw-dla-mismatch")!.textContent).toContain("1.300");
  });

  it("shows a re-displayed widget's detail and selection at once", () => {
    mount(new FakeModel(lensTraits(R, T, K, { cell_detail: DETAIL, selected: [2, 3] })));
    expect(tid("lw-cell-detail")!.hidden).toBe(false);
    expect(canvas().dataset.selected).toBe("2,3");
  });

  it("draws the select reply when it comes before the trait", async () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    const c = canvas();
    const { x, y } = cellPoint(c, 2, 3);
    clickAt(c, x, y);
    const r = last(m.requests());
    m.receive({ type: "reply", id: r.id, ok: true, result: DETAIL });
    await tick();
    expect(tid("lw-cell-detail")!.hidden).toBe(false);
    expect(tid("lw-cell-detail")!.dataset.cell).toBe("2,3");
  });

  it("ablate buttons send ablate {component}; the banner and Undo follow the traits", async () => {
    const m = new FakeModel(lensTraits(R, T, K, { cell_detail: DETAIL, target: 1, target_text: " Paris" }));
    mount(m);
    const btn = all("lw-dla-ablate").find((b) => b.dataset.label === "mlp1")!;
    btn.click();
    const req = last(m.requests());
    expect(req).toMatchObject({ type: "request", kind: "ablate", args: { component: "mlp1" } });
    // Busy: the buttons are disabled until the reply.
    expect(all<HTMLButtonElement>("lw-dla-ablate").every((b) => b.disabled)).toBe(true);
    const mask = new Uint8Array(R * T);
    mask[1 * T + 2] = 1;
    mask[3 * T + 5] = 1;
    m.update({ ablated: ["mlp1"], changed: new DataView(mask.buffer) });
    m.receive({ type: "reply", id: req.id, ok: true, result: { changed_cells: 2 } });
    await tick();
    const banner = tid("lw-ablated")!;
    expect(banner.hidden).toBe(false);
    expect(banner.dataset.ablated).toBe("mlp1");
    expect(tid("lw-ablated-text")!.textContent).toContain("Ablated: mlp1. 2 cells changed vs original");
    expect(tid("lw-detail-ablated")!.textContent).toBe("With mlp1 ablated.");
    const again = all<HTMLButtonElement>("lw-dla-ablate").find((b) => b.dataset.label === "mlp1")!;
    expect(again.disabled).toBe(true);
    expect(again.textContent).toBe("ablated");
    expect(all<HTMLButtonElement>("lw-dla-ablate").find((b) => b.dataset.label === "L1H3")!.disabled).toBe(false);
    // Undo.
    tid("lw-undo")!.click();
    expect(last(m.requests())).toMatchObject({ kind: "undo", args: {} });
    m.update({ ablated: [], changed: new DataView(new ArrayBuffer(0)) });
    await tick();
    expect(banner.hidden).toBe(true);
    expect(tid("lw-changed-legend")).toBeNull();
  });

  it("marks changed cells on the canvas, in the tooltip and the legend", async () => {
    const { ctx, calls } = stubContext();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(ctx as never);
    const mask = new Uint8Array(R * T);
    mask[0 * T + 1] = 1;
    mask[2 * T + 4] = 1;
    mask[3 * T + 0] = 1;
    const m = new FakeModel(lensTraits(R, T, K, { ablated: ["L1H3"], changed: new DataView(mask.buffer) }));
    mount(m);
    // One corner triangle per changed cell.
    expect(calls.get("closePath")).toBe(3);
    expect(tid("lw-changed-legend")!.textContent).toBe("changed vs original");
    const c = canvas();
    const { x, y } = cellPoint(c, 2, 4);
    c.dispatchEvent(new MouseEvent("mousemove", { clientX: x, clientY: y }));
    expect(tid("lw-tooltip")!.textContent).toContain("changed vs original");
    const p = cellPoint(c, 2, 3);
    c.dispatchEvent(new MouseEvent("mousemove", { clientX: p.x, clientY: p.y }));
    expect(tid("lw-tooltip")!.textContent).not.toContain("changed vs original");
    // The SVG export marks them too.
    const svg = await exportSvg();
    expect((svg.match(/<polygon/g) ?? []).length).toBe(3 + 1); // cells + legend swatch
    expect(svg).toContain("changed vs original");
  });

  it("Run sends run {prompt}; Ctrl+Enter too", () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    ui.expectPromptRuns(m);
  });

  it("a new run redraws the table with its new size", async () => {
    const m = new FakeModel(lensTraits(R, T, K, { selected: [1, 1] }));
    mount(m);
    const next = lensTraits(3, 9, 2);
    m.update({ top_ids: next.top_ids, top_probs: next.top_probs, top_meta: next.top_meta, tokens: next.tokens, row_labels: next.row_labels, selected: [] });
    await tick();
    expect(canvas().dataset.rows).toBe("3");
    expect(canvas().dataset.cols).toBe("9");
    expect(canvas().dataset.selected).toBe("");
  });

  it("shows rejected requests in the error banner", async () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    const c = canvas();
    const { x, y } = cellPoint(c, 1, 1);
    clickAt(c, x, y);
    const id = last(m.requests()).id;
    m.receive({ type: "reply", id, ok: false, error: { kind: "input", message: "Target <b>x</b> is 2 tokens.", details: { tokens: [" x", "y"] } } });
    await tick();
    expect(tid("lw-error")!.hidden).toBe(false);
    expect(tid("lw-error-message")!.textContent).toBe("Target <b>x</b> is 2 tokens.");
    expect(ui.el.querySelector("b")).toBeNull();
    // The optimistic selection is dropped.
    expect(c.dataset.selected).toBe("");
  });

  it("reports undecodable tables in the banner instead of throwing", () => {
    const m = new FakeModel(lensTraits(R, T, K, { top_meta: { shape: [R, T, K + 1] } }));
    expect(() => mount(m)).not.toThrow();
    expect(tid("lw-error-message")!.textContent).toContain("Could not decode the logit lens table");
    expect(tid("lw-empty")!.hidden).toBe(false);
  });

  it("offers PNG and SVG exports; the SVG escapes tokens and parses", async () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    tid("lw-export")!.click();
    const ids = all("lw-export-menu").flatMap((menu) => [...menu.querySelectorAll<HTMLElement>("[data-testid]")].map((b) => b.dataset.testid));
    expect(ids).toEqual(["lw-export-png", "lw-export-svg"]);
    const svg = await exportSvg();
    // Header token text (truncated to the cell) and its full string in the <title>.
    expect(svg).toContain(">&lt;img·sr");
    expect(svg).toContain("&quot;&lt;img src=x onerror=alert(1)&gt;&quot;");
    expect(svg).not.toContain("<img");
    expect(svg).toContain(">final<");
    const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
    expect(doc.querySelector("parsererror")).toBeNull();
    // Small table: every cell is in it.
    expect((svg.match(/<rect /g) ?? []).length).toBeGreaterThanOrEqual(R * T);
  });

  it("the PNG export repaints the table into its own canvas", async () => {
    const { ctx, calls } = stubContext();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(ctx as never);
    const sizes: Array<[number, number]> = [];
    const origToBlob = Object.getOwnPropertyDescriptor(HTMLCanvasElement.prototype, "toBlob");
    HTMLCanvasElement.prototype.toBlob = function (this: HTMLCanvasElement, cb: BlobCallback) {
      sizes.push([this.width, this.height]);
      cb(new Blob(["png"], { type: "image/png" }));
    };
    let created: Blob[] = [];
    try {
      mount(new FakeModel(lensTraits(R, T, K)));
      const before = calls.get("fillText")!;
      created = await captureDownloads(async () => {
        tid("lw-export")!.click();
        tid("lw-export-png")!.click();
        await tick();
      });
      expect(calls.get("fillText")! - before).toBeGreaterThanOrEqual(R * T);
    } finally {
      if (origToBlob) Object.defineProperty(HTMLCanvasElement.prototype, "toBlob", origToBlob);
      else delete (HTMLCanvasElement.prototype as { toBlob?: unknown }).toBlob;
    }
    expect(created.length).toBe(1);
    expect(created[0].type).toBe("image/png");
    // The whole (small) table at 2x.
    expect(sizes).toEqual([[2 * (LABEL_W + T * CELL_W), 2 * (HEADER_H + R * CELL_H)]]);
  });

  it("the SVG of a big table is its visible window", async () => {
    const m = new FakeModel(lensTraits(31, 512, 2));
    mount(m);
    canvas().lwScrollToCell(0, 200);
    const svg = await exportSvg();
    expect(svg).toContain("positions 186–200 of 512");
  });

  it("theme: a dark theme trait restyles the root and redraws", async () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    m.set("theme", "dark");
    await tick();
    expect(tid("lw-root")!.classList.contains("lw-dark")).toBe(true);
  });

  it("cleanup removes its DOM and its model listeners", () => {
    const m = new FakeModel(lensTraits(R, T, K));
    mount(m);
    expect(m.listenerCount()).toBeGreaterThan(0);
    ui.unmount();
    expect(m.listenerCount()).toBe(0);
    expect(ui.el.children.length).toBe(0);
  });
});
