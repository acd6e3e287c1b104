import { describe, expect, it, vi } from "vitest";
import view, { parseSelected } from "../patching";
import { agreement } from "../patching/data";
import { FakeModel, choose, f32Bytes, last, stubContext, tick, viewHarness } from "./helpers";
import { ATTR, CELL_RESULT, H, L, PATTERN, T, entry, exactOf, traits } from "./patching_fixtures";

const ui = viewHarness(view);
const { mount, tid, all, exportSvg } = ui;
/** One animation frame (the view redraws in requestAnimationFrame), then the microtasks after it. */
const frame = () => new Promise<void>((r) => requestAnimationFrame(() => r())).then(tick);

/** Centre of heatmap cell (r, c) from the canvas' data attributes, as a browser test computes it. */
function cellPoint(c: HTMLCanvasElement, r: number, col: number) {
  const d = c.dataset;
  const x = Number(d.originX) + col * (Number(d.cellW) + Number(d.gap)) + Number(d.cellW) / 2;
  const y = Number(d.originY) + r * (Number(d.cellH) + Number(d.gap)) + Number(d.cellH) / 2;
  return { clientX: x, clientY: y };
}
function clickCell(site: string, r: number, c: number) {
  const canvas = tid<HTMLCanvasElement>(`lw-heatmap-${site}`)!;
  canvas.dispatchEvent(new MouseEvent("click", { ...cellPoint(canvas, r, c), bubbles: true }));
}
function hoverCell(site: string, r: number, c: number) {
  const canvas = tid<HTMLCanvasElement>(`lw-heatmap-${site}`)!;
  canvas.dispatchEvent(new MouseEvent("mousemove", { ...cellPoint(canvas, r, c), bubbles: true }));
}

describe("PatchingHeatmap view: header", () => {
  it("shows the inputs, selects and sites from the traits", () => {
    mount(new FakeModel(traits()));
    expect(tid<HTMLTextAreaElement>("lw-clean")!.value).toBe("When Mary and John");
    expect(tid<HTMLTextAreaElement>("lw-corrupted")!.value).toBe("When Anna and John");
    expect(tid<HTMLInputElement>("lw-answer")!.value).toBe(" Mary");
    expect(tid<HTMLInputElement>("lw-wrong")!.value).toBe(" John");
    expect(tid<HTMLSelectElement>("lw-direction")!.value).toBe("denoise");
    expect(tid<HTMLSelectElement>("lw-metric")!.value).toBe("logit_diff");
    const boxes = tid("lw-sites")!.querySelectorAll<HTMLInputElement>("input[type=checkbox]");
    expect([...boxes].map((b) => b.dataset.testid)).toEqual([
      "lw-site-resid_pre",
      "lw-site-attn_out",
      "lw-site-attn_head_out_all_pos",
      "lw-site-attn_head_out_by_pos",
    ]);
    expect([...boxes].map((b) => b.checked)).toEqual([true, false, true, false]);
    expect(tid("lw-partial")!.hidden).toBe(true);
    expect(tid<HTMLButtonElement>("lw-sweep")!.disabled).toBe(false);
  });

  it("Apply sends set_inputs with the four fields; Ctrl+Enter and Enter in an answer too", () => {
    const m = new FakeModel(traits());
    mount(m);
    tid<HTMLTextAreaElement>("lw-clean")!.value = "The Eiffel Tower is in";
    tid<HTMLTextAreaElement>("lw-corrupted")!.value = "The Colosseum is in";
    tid<HTMLInputElement>("lw-answer")!.value = " Paris";
    tid<HTMLInputElement>("lw-wrong")!.value = " Rome";
    tid("lw-apply")!.click();
    expect(last(m.requests())).toMatchObject({
      type: "request",
      kind: "set_inputs",
      args: { clean: "The Eiffel Tower is in", corrupted: "The Colosseum is in", answer: " Paris", wrong: " Rome" },
    });
    expect(Object.keys(last(m.requests()).args).sort()).toEqual(["answer", "clean", "corrupted", "wrong"]);
    tid("lw-clean")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", ctrlKey: true, bubbles: true }));
    expect(m.requests().length).toBe(2);
    tid("lw-clean")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(m.requests().length).toBe(2);
    tid("lw-wrong")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(m.requests().length).toBe(3);
  });

  it("shows an error reply in the banner, with both tokenizations when their lengths differ", async () => {
    const m = new FakeModel(traits());
    mount(m);
    tid("lw-apply")!.click();
    const id = last(m.requests()).id;
    m.receive({
      type: "reply",
      id,
      ok: false,
      error: {
        kind: "input",
        message: "The prompts have different token counts (5 vs 6).",
        details: { clean_tokens: ["a", " b", " c"], corrupted_tokens: ["a", " x", " y", " c"] },
      },
    });
    await tick();
    expect(tid("lw-error")!.hidden).toBe(false);
    expect(tid("lw-error-kind")!.textContent).toBe("input error");
    expect(tid("lw-error-message")!.textContent).toBe("The prompts have different token counts (5 vs 6).");
    const rej = tid("lw-rejected")!;
    expect(rej.hidden).toBe(false);
    expect(rej.textContent).toContain("3 and 4 tokens");
    const marked = (id: string) =>
      [...tid(id)!.querySelectorAll<HTMLElement>("[data-index]")].map((t) => t.dataset.diff === "true");
    expect(marked("lw-rejected-clean")).toEqual([false, true, false]);
    expect(marked("lw-rejected-corrupted")).toEqual([false, true, true, false]);
    // The next successful apply hides them.
    tid("lw-apply")!.click();
    expect(rej.hidden).toBe(true);
  });

  it("direction and metric selects set their traits", () => {
    const m = new FakeModel(traits());
    mount(m);
    const d = tid<HTMLSelectElement>("lw-direction")!;
    choose(d, "noise");
    expect(m.get("direction")).toBe("noise");
    const mt = tid<HTMLSelectElement>("lw-metric")!;
    choose(mt, "normalized");
    expect(m.get("metric")).toBe("normalized");
    expect(m.saves).toBe(2);
  });

  it("checking a site sends set_sites (shown order, then the new one); a failure reverts the boxes", async () => {
    const m = new FakeModel(traits());
    mount(m);
    const box = tid<HTMLInputElement>("lw-site-attn_out")!;
    box.checked = true;
    box.dispatchEvent(new Event("change", { bubbles: true }));
    const r = last(m.requests());
    expect(r).toMatchObject({ kind: "set_sites", args: { sites: ["resid_pre", "attn_head_out_all_pos", "attn_out"] } });
    m.receive({ type: "reply", id: r.id, ok: false, error: { kind: "input", message: "no such hook" } });
    await frame();
    expect(tid<HTMLInputElement>("lw-site-attn_out")!.checked).toBe(false);
    const rp = tid<HTMLInputElement>("lw-site-resid_pre")!;
    rp.checked = false;
    rp.dispatchEvent(new Event("change", { bubbles: true }));
    expect(last(m.requests()).args).toEqual({ sites: ["attn_head_out_all_pos"] });
  });
});

describe("PatchingHeatmap view: summary and tokens", () => {
  it("shows both metric values to 3 decimals with exact data-values", () => {
    mount(new FakeModel(traits()));
    const s = tid("lw-metric-summary")!;
    const cv = s.querySelector<HTMLElement>('[data-testid="lw-clean-value"]')!;
    const xv = s.querySelector<HTMLElement>('[data-testid="lw-corrupted-value"]')!;
    expect(cv.textContent).toBe("3.600");
    expect(Number(cv.dataset.value)).toBe(3.6001234);
    expect(xv.textContent).toBe("-4.500");
    expect(Number(xv.dataset.value)).toBe(-4.4999);
    expect(tid("lw-metric-name")!.textContent).toBe("logit diff = logit(“·Mary”) − logit(“·John”)");
  });

  it("shows both tokenizations as text and marks where they differ", () => {
    mount(new FakeModel(traits()));
    const clean = all("lw-clean-token");
    const corr = all("lw-corrupted-token");
    expect(clean.map((t) => t.textContent)).toEqual(["<bos>", "·When", "·Mary", "<img·src=x·onerror=alert(1)>", "·John"]);
    expect(corr[2].textContent).toBe("·Anna");
    expect(clean.map((t) => t.dataset.diff === "true")).toEqual([false, false, true, false, false]);
    expect(corr.map((t) => t.dataset.diff === "true")).toEqual([false, false, true, false, false]);
    expect(tid("lw-diff-count")!.textContent).toBe("1 position differs");
    // Tokens are text: the XSS token made no element.
    expect(ui.el.querySelector("img")).toBeNull();
    const cols = tid("lw-cols-resid_pre")!.querySelectorAll<HTMLElement>('[data-testid="lw-col-label"]');
    expect(cols[3].textContent).toBe("<img·src=x·onerror=alert(1)>");
    expect(cols[2].dataset.diff).toBe("true");
  });

  it("hovering a token marks its position in the layer x pos maps", async () => {
    mount(new FakeModel(traits()));
    all("lw-clean-token")[2].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    await frame();
    const cols = tid("lw-cols-resid_pre")!.querySelectorAll<HTMLElement>('[data-testid="lw-col-label"]');
    expect(cols[2].classList.contains("lw-active")).toBe(true);
    expect(all("lw-corrupted-token")[2].classList.contains("lw-active")).toBe(true);
  });
});

describe("PatchingHeatmap view: heatmaps", () => {
  it("draws one heatmap per site with the layout data attributes and axis labels", () => {
    mount(new FakeModel(traits()));
    const a = tid<HTMLCanvasElement>("lw-heatmap-resid_pre")!;
    const b = tid<HTMLCanvasElement>("lw-heatmap-attn_head_out_all_pos")!;
    expect(a.tagName).toBe("CANVAS");
    expect(ui.el.querySelectorAll("canvas[data-testid^=lw-heatmap-]").length).toBe(2);
    expect([a.dataset.rows, a.dataset.cols]).toEqual([String(L), String(T)]);
    expect([b.dataset.rows, b.dataset.cols]).toEqual([String(L), String(H)]);
    for (const c of [a, b]) {
      for (const attr of ["data-cell-w", "data-cell-h", "data-gap", "data-origin-x", "data-origin-y"]) {
        expect(Number.isFinite(Number(c.getAttribute(attr))), attr).toBe(true);
      }
      const d = c.dataset;
      expect(parseFloat(c.style.width)).toBeGreaterThanOrEqual(Number(d.originX) + Number(d.cols) * (Number(d.cellW) + Number(d.gap)) - Number(d.gap));
      expect(parseFloat(c.style.height)).toBeGreaterThanOrEqual(Number(d.originY) + Number(d.rows) * (Number(d.cellH) + Number(d.gap)) - Number(d.gap));
    }
    expect(a.dataset.dims).toBe("layer,pos");
    expect(b.dataset.dims).toBe("layer,head");
    const rowLabels = (site: string) => [...tid(`lw-rows-${site}`)!.querySelectorAll("[data-index]")].map((x) => x.textContent);
    const colLabels = (site: string) => [...tid(`lw-cols-${site}`)!.querySelectorAll("[data-index]")].map((x) => x.textContent);
    expect(rowLabels("resid_pre")).toEqual(["L0", "L1"]);
    expect(colLabels("resid_pre")).toEqual(["<bos>", "·When", "·Mary", "<img·src=x·onerror=alert(1)>", "·John"]);
    expect(colLabels("attn_head_out_all_pos")).toEqual(["H0", "H1", "H2"]);
    // Attribution only: marked as approximate; legend symmetric around 0 from max |value|.
    expect(tid("lw-source-resid_pre")!.textContent).toBe("attribution (approximate)");
    expect(a.dataset.source).toBe("attribution");
    const m = Math.max(...Array.from(ATTR.resid_pre, Math.abs));
    expect(Number(tid("lw-legend-resid_pre")!.dataset.max)).toBeCloseTo(m, 5);
    expect(Number(tid("lw-legend-resid_pre")!.dataset.min)).toBeCloseTo(-m, 5);
    expect(tid("lw-agreement-resid_pre")!.hidden).toBe(true);
    expect(tid("lw-hook-resid_pre")!.textContent).toBe("blocks.{layer}.hook_resid_pre");
  });

  it("clicking cell (r, c) sends patch with the index in the site's dims order and outlines it", async () => {
    const m = new FakeModel(traits());
    mount(m);
    clickCell("resid_pre", 1, 3);
    expect(last(m.requests())).toMatchObject({ type: "request", kind: "patch", args: { site: "resid_pre", index: [1, 3] } });
    await frame();
    expect(tid("lw-heatmap-resid_pre")!.dataset.selected).toBe("1,3");
    clickCell("attn_head_out_all_pos", 0, 2);
    expect(last(m.requests()).args).toEqual({ site: "attn_head_out_all_pos", index: [0, 2] });
    await frame();
    expect(tid("lw-heatmap-resid_pre")!.dataset.selected).toBe("");
    expect(tid("lw-heatmap-attn_head_out_all_pos")!.dataset.selected).toBe("0,2");
    // Clicks between cells or outside send nothing.
    const n = m.requests().length;
    const c = tid<HTMLCanvasElement>("lw-heatmap-resid_pre")!;
    c.dispatchEvent(new MouseEvent("click", { clientX: 0, clientY: 0, bubbles: true }));
    expect(m.requests().length).toBe(n);
  });

  it("arrow keys move a cursor over the cells; Enter patches the cell under it", () => {
    const m = new FakeModel(traits());
    mount(m);
    const c = tid<HTMLCanvasElement>("lw-heatmap-resid_pre")!;
    expect(c.tabIndex).toBe(0);
    const key = (k: string) => c.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true }));
    key("ArrowRight"); // first key shows the cursor at (0, 0)
    key("ArrowRight");
    key("ArrowDown");
    key("ArrowDown"); // clamped at the last layer
    expect(tid("lw-tooltip")!.dataset.index).toBe("1,1");
    key("Enter");
    expect(last(m.requests()).args).toEqual({ site: "resid_pre", index: [1, 1] });
    key("Escape");
    expect(tid("lw-tooltip")!.hidden).toBe(true);
  });

  it("the sites menu closes on a click elsewhere", () => {
    mount(new FakeModel(traits()));
    const box = tid<HTMLDetailsElement>("lw-sites")!;
    box.open = true;
    tid("lw-metric-summary")!.click();
    expect(box.open).toBe(false);
  });

  it("the selected trait outlines its cell after a re-display", () => {
    mount(new FakeModel(traits({ selected: { site: "attn_head_out_all_pos", index: [1, 2] } })));
    expect(tid("lw-heatmap-attn_head_out_all_pos")!.dataset.selected).toBe("1,2");
    expect(parseSelected({ site: "x", index: [1, -1] })).toBeNull();
    expect(parseSelected({})).toBeNull();
  });

  it("shows [layer, pos, head] as layer x pos for one head, starting at the largest effect; the index includes the head", async () => {
    const data = new Float32Array(L * T * H).fill(0.1);
    data[(1 * T + 4) * H + 2] = -7; // largest |value| at layer 1, pos 4, head 2
    const m = new FakeModel(
      traits({
        sites: ["attn_head_out_by_pos"],
        attribution: { attn_head_out_by_pos: entry("attn_head_out_by_pos", data) },
      }),
    );
    mount(m);
    const c = tid<HTMLCanvasElement>("lw-heatmap-attn_head_out_by_pos")!;
    expect([c.dataset.rows, c.dataset.cols]).toEqual([String(L), String(T)]);
    expect(c.dataset.slice).toBe('{"head":2}');
    const sel = tid<HTMLSelectElement>("lw-slice-attn_head_out_by_pos-head")!;
    expect(sel.value).toBe("2");
    expect(sel.options.length).toBe(H);
    expect(sel.options[2].textContent).toBe("H2  (max |v| 7.00)");
    clickCell("attn_head_out_by_pos", 1, 4);
    expect(last(m.requests()).args).toEqual({ site: "attn_head_out_by_pos", index: [1, 4, 2] });
    await frame();
    expect(c.dataset.selected).toBe("1,4");
    choose(sel, "0");
    await frame();
    expect(c.dataset.slice).toBe('{"head":0}');
    expect(c.dataset.selected).toBe(""); // the selected cell is in another head
    clickCell("attn_head_out_by_pos", 0, 1);
    expect(last(m.requests()).args).toEqual({ site: "attn_head_out_by_pos", index: [0, 1, 0] });
    // A selection in another head switches the slice to show it.
    m.set("selected", { site: "attn_head_out_by_pos", index: [1, 3, 1] });
    await frame();
    expect(sel.value).toBe("1");
    expect(c.dataset.selected).toBe("1,3");
  });

  it("hover shows a tooltip with hook, layer/pos/head, token, exact and attribution values", async () => {
    const ex = exactOf(ATTR.resid_pre);
    ex[1 * T + 2] = NaN;
    mount(new FakeModel(traits({ exact: { resid_pre: entry("resid_pre", ex, { partial: true }) } })));
    hoverCell("resid_pre", 1, 3);
    const tip = tid("lw-tooltip")!;
    expect(tip.hidden).toBe(false);
    expect(tid("lw-tooltip-hook")!.textContent).toBe("blocks.1.hook_resid_pre");
    expect(tid("lw-tooltip-title")!.textContent).toBe("L1 @ pos 3 “<img·src=x·onerror=alert(1)>”");
    const ev = tip.querySelector<HTMLElement>('[data-testid="lw-tooltip-exact"]')!;
    const av = tip.querySelector<HTMLElement>('[data-testid="lw-tooltip-attribution"]')!;
    expect(Number(ev.dataset.value)).toBe(ex[1 * T + 3]);
    expect(ev.textContent).toBe(ex[1 * T + 3].toFixed(3));
    expect(Number(av.dataset.value)).toBe(ATTR.resid_pre[1 * T + 3]);
    expect(ui.el.querySelector("img")).toBeNull();
    // A differing position names both tokens; an uncomputed exact value says so.
    hoverCell("resid_pre", 1, 2);
    expect(tip.textContent).toContain("(corrupted “·Anna”)");
    expect(tip.querySelector('[data-testid="lw-tooltip-exact"]')!.textContent).toBe("not computed");
    hoverCell("attn_head_out_all_pos", 1, 2);
    expect(tid("lw-tooltip-title")!.textContent).toBe("L1H2");
    expect(tid("lw-tooltip-hook")!.textContent).toBe("blocks.1.attn.hook_z");
    tid("lw-heatmap-attn_head_out_all_pos")!.dispatchEvent(new MouseEvent("mouseleave"));
    expect(tip.hidden).toBe(true);
  });

  it("mixes exact values with attribution where exact is NaN, and marks both", async () => {
    const ex = new Float32Array(L * T).fill(NaN);
    ex[0] = 0.5;
    ex[1] = -0.25;
    const m = new FakeModel(traits({ exact: { resid_pre: entry("resid_pre", ex, { partial: true }) }, sweep_state: "running" }));
    mount(m);
    const c = tid<HTMLCanvasElement>("lw-heatmap-resid_pre")!;
    expect(c.dataset.source).toBe("mixed");
    expect(tid("lw-source-resid_pre")!.textContent).toBe(`exact 2 of ${L * T} cells · rest attribution (hatched)`);
    expect(tid("lw-legend-resid_pre")!.textContent).toContain("attribution (approx.)");
    // "exact only" shows the NaN cells empty.
    const v = tid<HTMLSelectElement>("lw-view-resid_pre")!;
    choose(v, "exact");
    await frame();
    expect(c.dataset.source).toBe("exact");
    expect(tid("lw-source-resid_pre")!.textContent).toBe(`exact · 2 of ${L * T} cells · partial`);
    expect(tid("lw-legend-resid_pre")!.textContent).toContain("not computed");
    expect(Number(tid("lw-legend-resid_pre")!.dataset.max)).toBe(0.5);
    choose(v, "attribution");
    await frame();
    expect(c.dataset.source).toBe("attribution");
    // The site without exact values has no view select.
    expect(tid("lw-view-attn_head_out_all_pos")!.closest("label")!.hidden).toBe(true);
  });

  it("treats an all-NaN exact map as not computed yet, and draws NaN cells without throwing", () => {
    const { ctx, calls } = stubContext();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(ctx as never);
    const nan = new Float32Array(L * T).fill(NaN);
    const m = new FakeModel(
      traits({
        exact: { resid_pre: entry("resid_pre", nan, { partial: true, done: 0 }) },
        attribution: { attn_head_out_all_pos: entry("attn_head_out_all_pos", new Float32Array(L * H).fill(NaN)) },
      }),
    );
    expect(() => mount(m)).not.toThrow();
    expect(tid("lw-heatmap-resid_pre")!.dataset.source).toBe("exact");
    expect(tid("lw-source-resid_pre")!.textContent).toBe(`exact · 0 of ${L * T} cells · partial`);
    expect(tid("lw-heatmap-attn_head_out_all_pos")!.dataset.source).toBe("attribution");
    // Scale falls back to [-1, 1]; every NaN cell is filled and outlined.
    expect(tid("lw-legend-resid_pre")!.dataset.max).toBe("1");
    expect(calls.get("strokeRect")).toBeGreaterThanOrEqual(L * T + L * H);
    hoverCell("resid_pre", 0, 0);
    expect(tid("lw-tooltip")!.querySelector('[data-testid="lw-tooltip-exact"]')!.textContent).toBe("not computed");
    expect(tid("lw-tooltip")!.querySelector('[data-testid="lw-tooltip-attribution"]')!.textContent).toBe("–");
  });

  it("reports an entry whose bytes do not match its shape on its card", () => {
    const bad = { ...entry("resid_pre", ATTR.resid_pre), data: f32Bytes(new Float32Array(3)) };
    mount(new FakeModel(traits({ attribution: { resid_pre: bad } })));
    expect(tid("lw-site-error-resid_pre")!.hidden).toBe(false);
    expect(tid("lw-site-error-resid_pre")!.textContent).toContain("needs 40 bytes, got 12");
    expect(tid("lw-empty-resid_pre")!.hidden).toBe(false);
  });

  it("computes attribution-vs-exact agreement per site", () => {
    const ex = exactOf(ATTR.resid_pre, 0.3);
    ex[4] = NaN;
    const exH = exactOf(ATTR.attn_head_out_all_pos, 0.05);
    mount(
      new FakeModel(
        traits({ exact: { resid_pre: entry("resid_pre", ex), attn_head_out_all_pos: entry("attn_head_out_all_pos", exH) }, sweep_state: "done" }),
      ),
    );
    // Reference: Pearson r and max |diff| over the cells where both are finite, in float64.
    const ref = (x: Float32Array, y: Float32Array) => {
      const idx = [...x.keys()].filter((i) => Number.isFinite(x[i]) && Number.isFinite(y[i]));
      const n = idx.length;
      const mx = idx.reduce((s, i) => s + x[i], 0) / n;
      const my = idx.reduce((s, i) => s + y[i], 0) / n;
      const cov = idx.reduce((s, i) => s + (x[i] - mx) * (y[i] - my), 0);
      const vx = idx.reduce((s, i) => s + (x[i] - mx) ** 2, 0);
      const vy = idx.reduce((s, i) => s + (y[i] - my) ** 2, 0);
      return { n, r: cov / Math.sqrt(vx * vy), max: Math.max(...idx.map((i) => Math.abs(x[i] - y[i]))) };
    };
    for (const [site, e, a] of [
      ["resid_pre", ex, ATTR.resid_pre],
      ["attn_head_out_all_pos", exH, ATTR.attn_head_out_all_pos],
    ] as const) {
      const g = tid(`lw-agreement-${site}`)!;
      const want = ref(e, a);
      expect(g.hidden).toBe(false);
      expect(Number(g.dataset.n)).toBe(want.n);
      expect(Number(g.dataset.r)).toBeCloseTo(want.r, 10);
      expect(Number(g.dataset.maxDiff)).toBeCloseTo(want.max, 10);
      expect(tid(`lw-agreement-r-${site}`)!.textContent).toBe(want.r.toFixed(3));
      expect(tid(`lw-agreement-max-${site}`)!.textContent).toBe(want.max.toFixed(3));
    }
    expect(Number(tid("lw-agreement-resid_pre")!.dataset.n)).toBe(L * T - 1);
    expect(tid("lw-source-resid_pre")!.textContent).toBe(`exact ${L * T - 1} of ${L * T} cells · rest attribution (hatched)`);
    expect(tid("lw-source-attn_head_out_all_pos")!.textContent).toBe("exact");
    expect(agreement([1, 2, 3], [2, 4, 6]).r).toBeCloseTo(1, 12);
  });

  it("coalesces a streaming sweep's many exact updates into one redraw per frame", async () => {
    const m = new FakeModel(traits({ sweep_state: "running" }));
    mount(m);
    const maps = tid("lw-maps")!;
    const before = Number(maps.dataset.redraws);
    const ex = new Float32Array(L * T).fill(NaN);
    for (let k = 0; k < L * T; k++) {
      ex[k] = k / 10;
      m.set("exact", { resid_pre: entry("resid_pre", ex.slice(), { partial: true }) });
    }
    expect(Number(maps.dataset.redraws)).toBe(before);
    await frame();
    expect(Number(maps.dataset.redraws)).toBe(before + 1);
    expect(tid("lw-heatmap-resid_pre")!.dataset.source).toBe("exact");
    // Sites the sweep has not reached count as not done.
    expect(tid("lw-sweep-state")!.textContent).toBe(`exact sweep running: ${L * T} of ${L * T + L * H} cells`);
  });

  it("a site added to `sites` gets a card; a removed one loses it", async () => {
    const m = new FakeModel(traits());
    mount(m);
    m.update({
      sites: ["attn_head_out_all_pos"],
    });
    await frame();
    expect(tid("lw-heatmap-resid_pre")).toBeNull();
    expect(tid("lw-card-attn_head_out_all_pos")).not.toBeNull();
    m.update({ sites: [] });
    await frame();
    expect(tid("lw-maps-empty")!.hidden).toBe(false);
  });
});

describe("PatchingHeatmap view: sweep", () => {
  it("Run exact sweep sends a sweep request with progress and Cancel", async () => {
    const m = new FakeModel(traits());
    mount(m);
    tid("lw-sweep")!.click();
    const r = last(m.requests());
    expect(r).toMatchObject({ kind: "sweep", args: { sites: ["resid_pre", "attn_head_out_all_pos"] } });
    await frame();
    expect(tid<HTMLButtonElement>("lw-sweep")!.disabled).toBe(true);
    m.receive({ type: "progress", id: r.id, done: 4, total: 16, message: "resid_pre" });
    expect(tid("lw-progress")!.hidden).toBe(false);
    expect(tid("lw-progress")!.getAttribute("aria-valuenow")).toBe("25");
    expect(tid("lw-busy-label")!.textContent).toContain("4/16 resid_pre");
    tid("lw-cancel")!.click();
    expect(last(m.sent).content).toEqual({ type: "cancel", id: r.id });
    const ex = new Float32Array(L * T).fill(NaN);
    ex.set([0.1, 0.2, 0.3, 0.4], 0);
    m.update({
      exact: { resid_pre: entry("resid_pre", ex, { partial: true, done: 4, total: L * T }) },
      sweep_state: "partial",
    });
    m.receive({ type: "reply", id: r.id, ok: true, result: { partial: true } });
    await frame();
    expect(tid("lw-busy")!.hidden).toBe(true);
    expect(tid("lw-error")!.hidden).toBe(true);
    const badge = tid("lw-partial")!;
    expect(badge.hidden).toBe(false);
    expect(badge.textContent).toBe(`partial (cancelled): 4 of ${L * T + L * H} cells`);
    expect(badge.dataset.done).toBe("4");
    expect(tid<HTMLButtonElement>("lw-sweep")!.disabled).toBe(false);
    // sweep_state wins over the entries' flags.
    m.set("sweep_state", "done");
    await frame();
    expect(badge.hidden).toBe(true);
    m.set("sweep_state", "partial");
    await frame();
    expect(badge.hidden).toBe(false);
    // A finished sweep (entries no longer partial) drops the badge.
    m.update({ exact: { resid_pre: entry("resid_pre", exactOf(ATTR.resid_pre)) }, sweep_state: "done" });
    await frame();
    expect(badge.hidden).toBe(true);
    expect(tid("lw-sweep-state")!.textContent).toBe("exact sweep done");
  });

  it("shows a sweep it did not start (sweep_progress) with a Cancel that sends cancel_sweep", async () => {
    const m = new FakeModel(traits());
    mount(m);
    expect(tid("lw-sweep-progress")!.hidden).toBe(true);
    m.update({ sweep_state: "running", sweep_progress: { site: "attn_head_out_all_pos", done: 3, total: 6, site_index: 1, n_sites: 2 } });
    await frame();
    expect(tid("lw-sweep-progress")!.hidden).toBe(false);
    expect(tid("lw-sweep-progress-text")!.textContent).toBe("attn_head_out_all_pos 3/6 (site 2 of 2)");
    expect(tid("lw-sweep-bar")!.getAttribute("aria-valuenow")).toBe("50");
    expect(tid<HTMLButtonElement>("lw-sweep")!.disabled).toBe(true);
    tid("lw-cancel-sweep")!.click();
    const r = last(m.requests());
    expect(r).toMatchObject({ kind: "cancel_sweep", args: {} });
    await frame();
    expect(tid<HTMLButtonElement>("lw-cancel-sweep")!.disabled).toBe(true);
    m.receive({ type: "reply", id: r.id, ok: true, result: { cancelled: true } });
    m.update({ sweep_state: "partial", sweep_progress: {} });
    await frame();
    expect(tid("lw-sweep-progress")!.hidden).toBe(true);
    expect(tid("lw-partial")!.hidden).toBe(false);
    // Our own sweep request uses the shared busy bar instead.
    tid("lw-sweep")!.click();
    m.update({ sweep_state: "running", sweep_progress: { site: "resid_pre", done: 1, total: 10 } });
    await frame();
    expect(tid("lw-sweep-progress")!.hidden).toBe(true);
  });

  it("shows the partial badge on a re-display", () => {
    const ex = new Float32Array(L * T).fill(NaN);
    ex[0] = 1;
    const exH = new Float32Array(L * H).fill(NaN);
    exH.set([1, 2, 3], 0);
    mount(
      new FakeModel(
        traits({
          sweep_state: "partial",
          exact: {
            resid_pre: entry("resid_pre", ex, { partial: true }),
            attn_head_out_all_pos: entry("attn_head_out_all_pos", exH, { partial: true }),
          },
        }),
      ),
    );
    expect(tid("lw-partial")!.textContent).toBe(`partial (cancelled): 4 of ${L * T + L * H} cells`);
  });
});

describe("PatchingHeatmap view: cell panel", () => {
  it("draws the cell panel from cell_result with exact numbers", async () => {
    const m = new FakeModel(traits());
    mount(m);
    expect(tid("lw-cell")!.hidden).toBe(true);
    m.update({ cell_result: CELL_RESULT, selected: { site: CELL_RESULT.site, index: CELL_RESULT.index } });
    await frame();
    const p = tid("lw-cell")!;
    expect(p.hidden).toBe(false);
    expect(tid("lw-cell-title")!.textContent).toBe(CELL_RESULT.label);
    expect(tid("lw-cell-hook")!.textContent).toBe(CELL_RESULT.hook);
    const num = (id: string) => tid(id)!;
    expect(Number(num("lw-cell-value").dataset.value)).toBe(CELL_RESULT.value);
    expect(num("lw-cell-value").textContent).toBe("1.235");
    expect(Number(num("lw-cell-clean").dataset.value)).toBe(CELL_RESULT.clean_value);
    expect(num("lw-cell-clean").textContent).toBe("3.600");
    expect(Number(num("lw-cell-corrupted").dataset.value)).toBe(CELL_RESULT.corrupted_value);
    expect(num("lw-cell-corrupted").textContent).toBe("-4.500");
    expect(Number(num("lw-cell-exact").dataset.value)).toBe(CELL_RESULT.exact);
    expect(Number(num("lw-cell-attribution").dataset.value)).toBe(CELL_RESULT.attribution);
    const frac = (CELL_RESULT.value - CELL_RESULT.corrupted_value) / (CELL_RESULT.clean_value - CELL_RESULT.corrupted_value);
    expect(Number(num("lw-cell-recovered").dataset.value)).toBeCloseTo(frac, 12);
    const rows = (id: string) => [...tid(id)!.querySelectorAll<HTMLElement>('[data-testid="lw-top-row"]')];
    expect(rows("lw-cell-top-before").map((r) => Number(r.dataset.value))).toEqual([0.4, 0.0525]);
    expect(rows("lw-cell-top-after").map((r) => Number(r.dataset.value))).toEqual([0.61, 0.2]);
    expect(rows("lw-cell-top-before")[1].querySelector('[data-testid="lw-top-token"]')!.textContent).toBe("<b>");
    expect(rows("lw-cell-top-before")[1].querySelector('[data-testid="lw-top-prob"]')!.textContent).toBe("5.3%");
    expect(ui.el.querySelector("b")).toBeNull();
    expect(tid("lw-cell-top-before")!.querySelector("caption")!.textContent).toBe("unpatched (corrupted run)");
    // The head's pattern on both prompts, T x T, with token labels.
    for (const which of ["clean", "corrupted"]) {
      const c = tid<HTMLCanvasElement>(`lw-cell-pattern-${which}`)!;
      expect([c.dataset.rows, c.dataset.cols]).toEqual([String(T), String(T)]);
    }
    const keys = [...tid("lw-cell-keys-corrupted")!.querySelectorAll("[data-index]")].map((k) => k.textContent);
    expect(keys[2]).toBe("·Anna");
    expect([...tid("lw-cell-queries-clean")!.querySelectorAll("[data-index]")][2].textContent).toBe("·Mary");
    expect(tid("lw-heatmap-attn_head_out_all_pos")!.dataset.selected).toBe("1,2");
    // Hovering a pattern cell reads its weight.
    const pc = tid<HTMLCanvasElement>("lw-cell-pattern-clean")!;
    pc.dispatchEvent(new MouseEvent("mousemove", { ...cellPoint(pc, 3, 1) }));
    expect(tid("lw-cell-pattern-info")!.textContent).toContain(`${PATTERN[3 * T + 1].toFixed(3)}`);
    m.set("cell_result", {});
    await frame();
    expect(p.hidden).toBe(true);
  });

  it("shows a re-displayed widget's cell result at once; non-head sites have no pattern", () => {
    const r = { ...CELL_RESULT, site: "resid_pre", index: [0, 2], head: undefined, hook: "blocks.0.hook_resid_pre" };
    mount(new FakeModel(traits({ cell_result: r, direction: "noise" })));
    expect(tid("lw-cell")!.hidden).toBe(false);
    expect(tid("lw-cell-head")).toBeNull();
    expect(tid("lw-cell-top-before")!.querySelector("caption")!.textContent).toBe("unpatched (clean run)");
  });

  it("reports an undecodable head pattern inside the panel", () => {
    const r = { ...CELL_RESULT, head: { ...CELL_RESULT.head, shape: [T, T + 1] } };
    mount(new FakeModel(traits({ cell_result: r })));
    expect(tid("lw-cell-error")!.textContent).toContain("[T, T]");
    expect(tid("lw-cell-value")!.textContent).toBe("1.235");
  });
});

describe("PatchingHeatmap view: export, theme, cleanup", () => {
  it("exports one SVG with every site's heatmap, labels and legend; tokens escaped", async () => {
    const ex = exactOf(ATTR.resid_pre);
    ex[3] = NaN;
    mount(new FakeModel(traits({ exact: { resid_pre: entry("resid_pre", ex, { partial: true }) } })));
    tid("lw-export")!.click();
    const ids = [...tid("lw-export-menu")!.querySelectorAll<HTMLElement>("[data-testid]")].map((b) => b.dataset.testid);
    expect(ids).toEqual(["lw-export-png", "lw-export-svg"]);
    tid("lw-export")!.click();
    const svg = await exportSvg();
    const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
    expect(doc.querySelector("parsererror")).toBeNull();
    expect(svg).toContain("&lt;img·src=x·onerror=alert(1)&gt;");
    expect(svg).not.toContain("<img");
    expect(svg).toContain(">L1<");
    expect(svg).toContain(">H2<");
    expect(svg).toContain("resid_pre");
    expect(svg).toContain("attn_head_out_all_pos");
    expect(svg).toContain("logit diff (answer − wrong)");
    expect(svg).toContain("url(#lw-pt-hatch)"); // the attribution value filling the NaN exact cell
    expect(svg).not.toContain("not computed");
    expect(svg).toContain("attribution vs exact: r = ");
    // Two legends with distinct gradient ids.
    expect(svg.match(/id="lw-grad-pt\d"/g)).toEqual(['id="lw-grad-pt0"', 'id="lw-grad-pt1"']);
    // "exact only": the NaN cell is empty.
    const v = tid<HTMLSelectElement>("lw-view-resid_pre")!;
    choose(v, "exact");
    await frame();
    const svg2 = await exportSvg();
    expect(svg2).toContain("not computed");
    expect(svg2).not.toContain('fill="url(#lw-pt-hatch)"/>');
  });

  it("draws every canvas with a 2D context, and follows the theme trait", async () => {
    const { ctx, calls } = stubContext();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(ctx as never);
    const ex = new Float32Array(L * T).fill(NaN);
    ex[0] = 2;
    const m = new FakeModel(traits({ exact: { resid_pre: entry("resid_pre", ex) }, cell_result: CELL_RESULT }));
    mount(m);
    expect(calls.get("clip")).toBeGreaterThanOrEqual(1); // hatching of the attribution cells
    expect(calls.get("fillText")).toBeGreaterThanOrEqual(L * T); // values fit in the cells (wide map)
    expect(calls.get("putImageData")).toBeGreaterThanOrEqual(2); // the two head patterns
    m.set("theme", "dark");
    await frame();
    expect(tid("lw-root")!.classList.contains("lw-dark")).toBe(true);
  });

  it("cleanup removes its DOM and model listeners", () => {
    const m = new FakeModel(traits({ cell_result: CELL_RESULT }));
    mount(m);
    expect(m.listenerCount()).toBeGreaterThan(0);
    ui.unmount();
    expect(m.listenerCount()).toBe(0);
    expect(ui.el.children.length).toBe(0);
  });

  it("renders empty traits without throwing", () => {
    const m = new FakeModel({ error: {}, busy: "", theme: "auto" });
    expect(() => mount(m)).not.toThrow();
    expect(tid("lw-maps-empty")!.hidden).toBe(false);
    expect(tid("lw-clean-value")!.textContent).toBe("–");
    expect(tid<HTMLButtonElement>("lw-sweep")!.disabled).toBe(true);
  });
});
