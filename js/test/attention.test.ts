import { describe, expect, it, vi } from "vitest";
import view, { parseFocus } from "../attention";
import { fillAtlas, poolRanges } from "../attention/atlas";
import { headGridLayout, scoreDomain } from "../attention/grid";
import { patternCellSize } from "../attention/focus";
import { topK } from "../attention/focusinfo";
import { resultTitle } from "../attention/result";
import { panWindow, parseBounds, resizeWindow, windowAround, windowShowing } from "../attention/window";
import { cellCenter, gridLayout } from "../lib/heatmap";
import { sequential } from "../lib/colors";
import { FakeModel, captureDownloads, choose, f16Bytes, f32Bytes, fakePatterns, last, stubContext, tick, viewHarness } from "./helpers";

const L = 2;
const H = 4;
const TOKENS = ["<bos>", " The", " cat", "<img src=x onerror=alert(1)>", "\n"];
const T = TOKENS.length;
const SCORE_NAMES = ["previous_token", "induction", "duplicate_token", "first_token", "entropy"];

function scoresArray(): Float32Array {
  const s = new Float32Array(SCORE_NAMES.length * L * H);
  for (let i = 0; i < s.length; i++) s[i] = (i % 7) / 7 + 0.0001 * i;
  return s;
}

const RESULT = {
  layer: 1,
  head: 3,
  label: "L1H3",
  hook: "blocks.1.attn.hook_z",
  mode: "zero",
  tokens: TOKENS,
  next_tokens: TOKENS.slice(1),
  logprob_before: [-3.5, -2.25, -1.0, -0.5],
  logprob_after: [-3.5, -3.484, -1.0, -0.75],
  delta_logprob: [0, -1.2344999999999999, 0.0625, -0.25],
  top_before: [
    { token: " Paris", id: 123, prob: 0.75 },
    { token: "<b>", id: 7, prob: 0.0525 },
  ],
  top_after: [{ token: " Paris", id: 123, prob: 0.42 }],
  mean_delta: -0.35549999999999998,
};

function traits(extra: Record<string, unknown> = {}) {
  return {
    prompt: "The cat",
    tokens: TOKENS,
    n_layers: L,
    n_heads: H,
    patterns: f16Bytes(fakePatterns(L, H, T)),
    patterns_meta: { dtype: "f16", shape: [L, H, T, T], scale: 1, offset: 0 },
    scores: f32Bytes(scoresArray()),
    score_names: SCORE_NAMES,
    color_by: "induction",
    focus: [],
    ablation_mode: "zero",
    last_result: {},
    error: {},
    busy: "",
    theme: "auto",
    ...extra,
  };
}

const ui = viewHarness(view);
const { mount, tid } = ui;

describe("AttentionGrid view", () => {
  it("renders the chrome and an empty state before the first run", () => {
    const m = new FakeModel(traits({ patterns: new DataView(new ArrayBuffer(0)), patterns_meta: {}, tokens: [] }));
    mount(m);
    expect(tid("lw-root")).not.toBeNull();
    expect(tid<HTMLTextAreaElement>("lw-prompt")!.value).toBe("The cat");
    expect(tid("lw-run")).not.toBeNull();
    expect(tid("lw-empty")!.hidden).toBe(false);
    expect(tid("lw-grid")!.hidden).toBe(true);
    expect(tid("lw-focus")!.hidden).toBe(true);
    expect(tid("lw-result")!.hidden).toBe(true);
    expect(tid("lw-error")!.hidden).toBe(true);
    expect(tid("lw-busy")!.hidden).toBe(true);
  });

  it("exposes the grid layout on the canvas", () => {
    mount(new FakeModel(traits()));
    const c = tid<HTMLCanvasElement>("lw-grid")!;
    expect(c.tagName).toBe("CANVAS");
    expect(c.hidden).toBe(false);
    expect(ui.el.querySelectorAll("canvas[data-testid=lw-grid]").length).toBe(1);
    expect(c.dataset.rows).toBe(String(L));
    expect(c.dataset.cols).toBe(String(H));
    for (const a of ["data-cell", "data-gap", "data-origin-x", "data-origin-y"]) {
      expect(Number.isFinite(Number(c.getAttribute(a))), a).toBe(true);
    }
    const cell = Number(c.dataset.cell);
    const gap = Number(c.dataset.gap);
    const ox = Number(c.dataset.originX);
    const oy = Number(c.dataset.originY);
    expect(cell).toBeGreaterThanOrEqual(20);
    // The canvas is big enough for every cell.
    expect(parseFloat(c.style.width)).toBeGreaterThanOrEqual(ox + H * cell + (H - 1) * gap);
    expect(parseFloat(c.style.height)).toBeGreaterThanOrEqual(oy + L * cell + (L - 1) * gap);
    expect(tid("lw-summary")!.textContent).toBe(`${T} tokens · ${L} layers × ${H} heads`);
  });

  it("clicking the centre of head (l, h) sets focus and saves", async () => {
    const m = new FakeModel(traits());
    mount(m);
    const c = tid<HTMLCanvasElement>("lw-grid")!;
    const d = c.dataset;
    const [l, h] = [1, 2];
    const x = Number(d.originX) + h * (Number(d.cell) + Number(d.gap)) + Number(d.cell) / 2;
    const y = Number(d.originY) + l * (Number(d.cell) + Number(d.gap)) + Number(d.cell) / 2;
    c.dispatchEvent(new MouseEvent("click", { clientX: x, clientY: y, bubbles: true }));
    expect(m.get("focus")).toEqual([1, 2]);
    expect(m.saves).toBe(1);
    await tick();
    expect(tid("lw-focus")!.hidden).toBe(false);
  });

  it("shows a tooltip with L{l}H{h} and all scores to 3 decimals on hover", () => {
    const m = new FakeModel(traits());
    mount(m);
    const c = tid<HTMLCanvasElement>("lw-grid")!;
    const { x, y } = cellCenter(headGridLayout(L, H, Number(c.dataset.cell)), 0, 3);
    c.dispatchEvent(new MouseEvent("mousemove", { clientX: x, clientY: y }));
    const tip = tid("lw-tooltip")!;
    expect(tip.hidden).toBe(false);
    expect(tip.querySelector(".lw-tooltip-title")!.textContent).toBe("L0H3");
    const rows = [...tip.querySelectorAll<HTMLElement>(".lw-tooltip-row")];
    expect(rows.map((r) => r.dataset.score)).toEqual(SCORE_NAMES);
    const s = scoresArray();
    SCORE_NAMES.forEach((_, k) => {
      const v = s[(k * L + 0) * H + 3];
      expect(rows[k].querySelector(".lw-tooltip-value")!.textContent).toBe(v.toFixed(3));
    });
    expect(rows[1].classList.contains("lw-current")).toBe(true);
    c.dispatchEvent(new MouseEvent("mouseleave"));
    expect(tip.hidden).toBe(true);
  });

  it("shows the focus panel for the focus trait, with tokens on both axes", async () => {
    const m = new FakeModel(traits());
    mount(m);
    m.set("focus", [1, 3]);
    await tick();
    const f = tid("lw-focus")!;
    expect(f.hidden).toBe(false);
    expect(tid("lw-focus-title")!.textContent).toBe("L1H3");
    expect(tid("lw-focus-hook")!.textContent).toBe("blocks.1.attn.hook_pattern");
    expect(tid("lw-ablate")!.textContent).toBe("Ablate L1H3");
    const pat = tid<HTMLCanvasElement>("lw-pattern")!;
    expect(pat.dataset.rows).toBe(String(T));
    expect(pat.dataset.cols).toBe(String(T));
    const queries = ui.el.querySelectorAll('[data-testid="lw-query"]');
    const keys = ui.el.querySelectorAll('[data-testid="lw-key"]');
    expect(queries.length).toBe(T);
    expect(keys.length).toBe(T);
    expect(queries[1].textContent).toBe("·The");
    expect(queries[4].textContent).toBe("↵");
    // The XSS token is text.
    expect(ui.el.querySelector("img")).toBeNull();
    expect(queries[3].textContent).toBe("<img·src=x·onerror=alert(1)>");
    m.set("focus", []);
    await tick();
    expect(f.hidden).toBe(true);
  });

  it("ignores a focus outside the grid", async () => {
    const m = new FakeModel(traits({ focus: [9, 9] }));
    mount(m);
    expect(tid("lw-focus")!.hidden).toBe(true);
    expect(parseFocus([1, 2], 2, 3)).toEqual([1, 2]);
    expect(parseFocus([2, 0], 2, 3)).toBeNull();
    expect(parseFocus(["a", 0], 2, 3)).toBeNull();
    expect(parseFocus([], 2, 3)).toBeNull();
  });

  it("hovering a query lists its top keys; click locks; Esc unlocks, then clears focus", async () => {
    const m = new FakeModel(traits({ focus: [0, 1] }));
    mount(m);
    const queries = ui.el.querySelectorAll<HTMLElement>('[data-testid="lw-query"]');
    queries[3].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    const info = tid("lw-focus-info")!;
    const items = [...info.querySelectorAll<HTMLElement>('[data-testid="lw-attend-item"]')];
    // Head (0, 1): query 3 attends mostly to key 2 (fakePatterns).
    expect(items[0].dataset.index).toBe("2");
    expect(Number(items[0].dataset.value)).toBeCloseTo(0.75, 3);
    expect(queries[3].classList.contains("lw-active")).toBe(true);

    queries[3].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(tid("lw-focus")!.dataset.locked).toBe("row:3");
    expect(queries[3].classList.contains("lw-locked")).toBe(true);
    // Hovering elsewhere does not move a locked highlight.
    queries[1].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    expect(queries[1].classList.contains("lw-active")).toBe(false);

    const keys = ui.el.querySelectorAll<HTMLElement>('[data-testid="lw-key"]');
    keys[0].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(tid("lw-focus")!.dataset.locked).toBe("col:0");
    expect(info.textContent).toContain("is attended by");
    keys[0].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(tid("lw-focus")!.dataset.locked).toBe("");

    keys[2].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    const root = tid("lw-root")!;
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(tid("lw-focus")!.dataset.locked).toBe("");
    expect(m.get("focus")).toEqual([0, 1]);
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(m.get("focus")).toEqual([]);
    await tick();
    expect(tid("lw-focus")!.hidden).toBe(true);
  });

  it("hovering a prompt token marks its query row in the grid", () => {
    mount(new FakeModel(traits()));
    const toks = ui.el.querySelectorAll<HTMLElement>('[data-testid="lw-prompt-token"]');
    expect(toks.length).toBe(T);
    toks[2].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    expect(tid("lw-grid")!.dataset.query).toBe("2");
    tid("lw-prompt-tokens")!.dispatchEvent(new MouseEvent("mouseleave"));
    expect(tid("lw-grid")!.dataset.query).toBe("");
  });

  it("Esc typed in the prompt does not clear focus", () => {
    const m = new FakeModel(traits({ focus: [0, 1] }));
    mount(m);
    tid("lw-prompt")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(m.get("focus")).toEqual([0, 1]);
  });

  it("Run sends a run request; Ctrl+Enter too", () => {
    const m = new FakeModel(traits());
    mount(m);
    ui.expectPromptRuns(m);
  });

  it("Ablate and Clear send their requests with the focused head and mode", async () => {
    const m = new FakeModel(traits({ focus: [1, 2], ablation_mode: "mean" }));
    mount(m);
    expect(tid<HTMLSelectElement>("lw-mode")!.value).toBe("mean");
    tid("lw-ablate")!.click();
    const r = last(m.requests());
    expect(r).toMatchObject({ kind: "ablate", args: { layer: 1, head: 2, mode: "mean" } });
    m.receive({ type: "reply", id: r.id, ok: true, result: RESULT });
    tid("lw-clear")!.click();
    expect(last(m.requests())).toMatchObject({ kind: "clear", args: {} });
  });

  it("selects set color_by and ablation_mode and save", () => {
    const m = new FakeModel(traits());
    mount(m);
    const cb = tid<HTMLSelectElement>("lw-color-by")!;
    expect([...cb.options].map((o) => o.value)).toEqual(SCORE_NAMES);
    expect(cb.value).toBe("induction");
    choose(cb, "entropy");
    expect(m.get("color_by")).toBe("entropy");
    const mode = tid<HTMLSelectElement>("lw-mode")!;
    choose(mode, "mean");
    expect(m.get("ablation_mode")).toBe("mean");
    expect(m.saves).toBe(2);
  });

  it("draws the result panel from last_result with exact numbers", async () => {
    const m = new FakeModel(traits());
    mount(m);
    m.set("last_result", RESULT);
    await tick();
    const panel = tid("lw-result")!;
    expect(panel.hidden).toBe(false);
    expect(tid("lw-result-title")!.textContent).toBe("Zero-ablating L1H3 (blocks.1.attn.hook_z)");
    const deltas = [...ui.el.querySelectorAll<HTMLElement>('[data-testid="lw-delta"]')];
    expect(deltas.length).toBe(RESULT.delta_logprob.length);
    RESULT.delta_logprob.forEach((v, p) => {
      const d = ui.el.querySelector<HTMLElement>(`[data-testid="lw-delta"][data-pos="${p}"]`)!;
      expect(Number(d.dataset.value)).toBe(v);
      expect(d.textContent).toBe(v.toFixed(3));
    });
    expect(ui.el.querySelector<HTMLElement>('[data-testid="lw-delta"][data-pos="1"]')!.textContent).toBe("-1.234");
    const mean = tid("lw-mean-delta")!;
    expect(Number(mean.dataset.value)).toBe(RESULT.mean_delta);
    expect(mean.textContent).toBe("-0.355");
    const before = [...tid("lw-top-before")!.querySelectorAll<HTMLElement>("tr[data-value]")];
    expect(before.map((r) => Number(r.dataset.value))).toEqual([0.75, 0.0525]);
    expect(before[0].textContent).toContain("·Paris");
    expect(before[0].textContent).toContain("75.0%");
    expect(before[1].querySelector('[data-testid="lw-top-prob"]')!.textContent).toBe("5.3%");
    expect(before[1].querySelector('[data-testid="lw-top-token"]')!.textContent).toBe("<b>");
    expect(tid("lw-top-after")!.querySelectorAll("tr[data-value]").length).toBe(1);
    expect(ui.el.querySelector("b")).toBeNull();
    m.set("last_result", {});
    await tick();
    expect(panel.hidden).toBe(true);
  });

  it("shows a re-displayed widget's last result at once", () => {
    mount(new FakeModel(traits({ last_result: RESULT, focus: [1, 3] })));
    expect(tid("lw-result")!.hidden).toBe(false);
    expect(tid("lw-focus")!.hidden).toBe(false);
    expect(resultTitle({ ...RESULT, mode: "mean" })).toBe("Mean-ablating L1H3 (blocks.1.attn.hook_z)");
  });

  it("shows rejected requests in the error banner; dismiss hides it", async () => {
    const m = new FakeModel(traits());
    mount(m);
    tid("lw-run")!.click();
    const id = last(m.requests()).id;
    m.receive({ type: "reply", id, ok: false, error: { kind: "input", message: "The prompt is empty.", details: { hint: "type" } } });
    await tick();
    const banner = tid("lw-error")!;
    expect(banner.hidden).toBe(false);
    expect(banner.getAttribute("role")).toBe("alert");
    expect(tid("lw-error-message")!.textContent).toBe("The prompt is empty.");
    expect(tid("lw-error-details")!.textContent).toContain('"hint": "type"');
    tid("lw-error-dismiss")!.click();
    expect(banner.hidden).toBe(true);
  });

  it("shows the error trait, and hides the banner when it clears", () => {
    const m = new FakeModel(traits({ error: { kind: "model", message: "<b>no weights</b>", details: {} } }));
    mount(m);
    expect(tid("lw-error")!.hidden).toBe(false);
    expect(tid("lw-error-message")!.textContent).toBe("<b>no weights</b>");
    expect(ui.el.querySelector("b")).toBeNull();
    m.set("error", {});
    expect(tid("lw-error")!.hidden).toBe(true);
  });

  it("shows progress with a Cancel button that sends cancel", () => {
    const m = new FakeModel(traits({ focus: [0, 0] }));
    mount(m);
    tid("lw-ablate")!.click();
    const id = last(m.requests()).id;
    expect(tid("lw-cancel")!.hidden).toBe(true);
    m.receive({ type: "progress", id, done: 3, total: 12, message: "layer 0" });
    expect(tid("lw-busy")!.hidden).toBe(false);
    expect(tid("lw-progress")!.hidden).toBe(false);
    expect(tid("lw-progress")!.getAttribute("aria-valuenow")).toBe("25");
    expect(tid("lw-busy-label")!.textContent).toContain("3/12");
    tid("lw-cancel")!.click();
    expect(last(m.sent)!.content).toEqual({ type: "cancel", id });
    m.receive({ type: "reply", id, ok: false, error: { kind: "cancelled", message: "Cancelled." } });
    expect(tid("lw-busy")!.hidden).toBe(true);
    expect(tid("lw-error")!.hidden).toBe(true);
  });

  it("shows the busy trait", () => {
    const m = new FakeModel(traits());
    mount(m);
    m.set("busy", "run");
    expect(tid("lw-busy")!.hidden).toBe(false);
    expect(tid("lw-busy-label")!.textContent).toContain("run");
    m.set("busy", "");
    expect(tid("lw-busy")!.hidden).toBe(true);
  });

  it("redraws when patterns change (new run) and decodes u8", async () => {
    const m = new FakeModel(traits());
    mount(m);
    const T2 = 3;
    const vals = fakePatterns(3, 2, T2);
    const u8 = new Uint8Array(vals.length).map((_, i) => Math.round(vals[i] * 255));
    m.update({
      n_layers: 3,
      n_heads: 2,
      tokens: ["a", "b", "c"],
      patterns: new DataView(u8.buffer),
      patterns_meta: { dtype: "u8", shape: [3, 2, T2, T2], scale: 1 / 255, offset: 0 },
      scores: f32Bytes(new Float32Array(5 * 3 * 2)),
      focus: [2, 1],
    });
    await tick();
    const c = tid<HTMLCanvasElement>("lw-grid")!;
    expect(c.dataset.rows).toBe("3");
    expect(c.dataset.cols).toBe("2");
    expect(ui.el.querySelectorAll('[data-testid="lw-query"]').length).toBe(3);
    expect(tid("lw-focus-title")!.textContent).toBe("L2H1");
  });

  it("reports undecodable patterns in the banner instead of throwing", () => {
    const m = new FakeModel(traits({ patterns_meta: { dtype: "f16", shape: [L, H, T, T + 1] } }));
    expect(() => mount(m)).not.toThrow();
    expect(tid("lw-error")!.hidden).toBe(false);
    expect(tid("lw-error-message")!.textContent).toContain("Could not decode");
  });

  it("draws every canvas with a 2D context", async () => {
    const { ctx, calls } = stubContext();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(ctx as never);
    const m = new FakeModel(traits({ focus: [1, 1], last_result: RESULT }));
    mount(m);
    expect(calls.get("putImageData")).toBeGreaterThanOrEqual(2); // atlas + pattern
    expect(calls.get("drawImage")).toBeGreaterThanOrEqual(L * H + 1);
    expect(calls.get("fillText")).toBe(L + H);
    const c = tid<HTMLCanvasElement>("lw-grid")!;
    const { x, y } = cellCenter(headGridLayout(L, H, Number(c.dataset.cell)), 1, 1);
    c.dispatchEvent(new MouseEvent("mousemove", { clientX: x, clientY: y }));
    const pat = tid<HTMLCanvasElement>("lw-pattern")!;
    pat.dispatchEvent(new MouseEvent("mousemove", { clientX: 5, clientY: 5 }));
    expect(tid("lw-focus-info")!.textContent).toContain("→");
    m.set("theme", "dark");
    await tick();
    expect(tid("lw-root")!.classList.contains("lw-dark")).toBe(true);
    expect(tid("lw-root")!.classList.contains("lw-forced")).toBe(true);
  });

  it("offers PNG and SVG exports; the SVGs escape tokens", async () => {
    const m = new FakeModel(traits({ focus: [0, 0] }));
    mount(m);
    tid("lw-export")!.click();
    const menu = tid("lw-export-menu")!;
    expect(menu.hidden).toBe(false);
    const ids = [...menu.querySelectorAll<HTMLElement>("[data-testid]")].map((b) => b.dataset.testid);
    expect(ids).toEqual(["lw-export-png", "lw-export-svg", "lw-export-focus-png", "lw-export-focus-svg"]);
    const created = await captureDownloads(async () => {
      tid("lw-export-focus-svg")!.click();
      await tick();
      tid("lw-export")!.click();
      tid("lw-export-svg")!.click();
      await tick();
    });
    expect(created.length).toBe(2);
    const focusSvg = await created[0].text();
    expect(focusSvg).toContain("&lt;img·src=x·onerror=alert(1)&gt;");
    expect(focusSvg).not.toContain("<img");
    expect(focusSvg).toContain("blocks.0.attn.hook_pattern");
    const gridSvg = await created[1].text();
    expect(gridSvg).toContain(">L1<");
    expect(gridSvg).toContain(">H3<");
    const doc = new DOMParser().parseFromString(gridSvg, "image/svg+xml");
    expect(doc.querySelector("parsererror")).toBeNull();
  });

  it("cleanup removes its DOM and its model listeners", () => {
    const m = new FakeModel(traits());
    mount(m);
    expect(m.listenerCount()).toBeGreaterThan(0);
    ui.unmount();
    expect(m.listenerCount()).toBe(0);
    expect(ui.el.children.length).toBe(0);
  });
});

describe("grid helpers", () => {
  it("pools ranges cover all items", () => {
    const { starts, ends } = poolRanges(10, 4);
    expect(Array.from(starts)).toEqual([0, 2, 5, 7]);
    expect(Array.from(ends)).toEqual([2, 5, 7, 10]);
    const same = poolRanges(3, 3);
    expect(Array.from(same.ends)).toEqual([1, 2, 3]);
  });

  it("fills the atlas with max-pooled thumbnails", () => {
    const scale = sequential("light");
    // One head, T = 4, one hot value at (3, 0): pooled to 2x2 it lands in bin (1, 0).
    const p = new Float32Array(16);
    p[3 * 4 + 0] = 1;
    const px = fillAtlas(p, 1, 1, 4, 2, scale);
    const at = (r: number, c: number) => Array.from(px.slice((r * 2 + c) * 4, (r * 2 + c) * 4 + 3));
    expect(at(1, 0)).toEqual(scale.rgb(1));
    expect(at(0, 0)).toEqual(scale.rgb(0));
    expect(at(1, 1)).toEqual(scale.rgb(0));
  });

  it("fills a 30 x 9 grid at T = 30 fast, and T = 512 within reason", () => {
    const scale = sequential("light");
    const p = fakePatterns(30, 9, 30);
    let t0 = performance.now();
    fillAtlas(p, 30, 9, 30, 30, scale);
    const small = performance.now() - t0;
    expect(small).toBeLessThan(100);
    const big = new Float32Array(2 * 2 * 512 * 512).fill(0.01);
    t0 = performance.now();
    fillAtlas(big, 2, 2, 512, 64, scale);
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it("score domains include 0", () => {
    expect(scoreDomain([0.2, 0.9])).toEqual([0, 0.9]);
    expect(scoreDomain([-0.5, 0.4])).toEqual([-0.5, 0.4]);
    expect(scoreDomain([0, 0])).toEqual([0, 1]);
  });

  it("pattern cells and topK", () => {
    expect(patternCellSize(30, 440)).toBe(14);
    expect(patternCellSize(4, 440)).toBe(22);
    expect(patternCellSize(512, 440)).toBe(1);
    expect(topK([0.1, 0.5, NaN, 0.5, 0.2], 3)).toEqual([
      [1, 0.5],
      [3, 0.5],
      [4, 0.2],
    ]);
  });
});

describe("AttentionGrid on a long prompt (pooled thumbnails)", () => {
  /** Lower triangle of [count, n, n] row by row (what encode_tril sends). */
  function tril(full: Float32Array, count: number, n: number): Float32Array {
    const out: number[] = [];
    for (let m = 0; m < count; m++) for (let q = 0; q < n; q++) for (let k = 0; k <= q; k++) out.push(full[m * n * n + q * n + k]);
    return new Float32Array(out);
  }

  it("decodes triangles, asks for a focused head's full pattern (a window of all of it) and draws it with every token", async () => {
    const P = 12; // tokens
    const S = 3; // thumbnail side, 4 tokens a cell
    const toks = Array.from({ length: P }, (_, i) => ` t${i}`);
    const thumbs = fakePatterns(L, H, S);
    const m = new FakeModel(
      traits({
        tokens: toks,
        patterns: f16Bytes(tril(thumbs, L * H, S)),
        patterns_meta: { dtype: "f16", shape: [L, H, (S * (S + 1)) / 2], scale: 1, offset: 0, layout: "tril", size: S, pos: P, pooled: true, bin: 4, window_max: 256 },
      }),
    );
    mount(m);
    expect(tid("lw-summary")!.textContent).toContain("12 tokens");
    m.set("focus", [1, 2]);
    await tick();
    const req = last(m.requests());
    expect(req.kind).toBe("window");
    expect(req.args).toEqual({ layer: 1, head: 2, q0: 0, q1: P, k0: 0, k1: P });
    expect(m.requests().some((r) => r.kind === "overview")).toBe(false); // short enough: no overview
    expect(tid("lw-focus")!.hidden).toBe(true); // nothing drawn until the pattern comes
    const fullPattern = fakePatterns(1, 1, P);
    m.receive(
      { type: "reply", id: req.id, ok: true, result: { layer: 1, head: 2, q0: 0, q1: P, k0: 0, k1: P, meta: { dtype: "f32", shape: [P, P], scale: 1, offset: 0 } } },
      [f32Bytes(fullPattern)],
    );
    await tick();
    await tick();
    expect(tid("lw-focus")!.hidden).toBe(false);
    expect(tid("lw-overview-panel")!.hidden).toBe(true);
    const queries = ui.el.querySelectorAll<HTMLElement>('[data-testid="lw-query"]');
    expect(queries.length).toBe(P);
    queries[10].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    const items = [...tid("lw-focus-info")!.querySelectorAll<HTMLElement>('[data-testid="lw-attend-item"]')];
    // query 10 of the full pattern (not of a thumbnail): its top key and weight, exact (f32)
    const row10 = Array.from(fullPattern.subarray(10 * P, 11 * P));
    expect(Number(items[0].dataset.index)).toBe(row10.indexOf(Math.max(...row10)));
    expect(Number(items[0].dataset.value)).toBe(Math.max(...row10));
    // the hovered token marks its thumbnail row (token 10 is in cell 2)
    expect(tid<HTMLCanvasElement>("lw-grid")?.dataset.query ?? ui.el.querySelector<HTMLCanvasElement>("canvas")!.dataset.query).toBe("2");
  });

  it("longer than window_max: an overview and a window with token labels; overview click, Find and wheel move the window", async () => {
    const P = 40;
    const WMAX = 16;
    const S = 10; // thumbnails, 4 tokens a cell
    const toks = Array.from({ length: P }, (_, i) => ` w${i}x`);
    const m = new FakeModel(
      traits({
        tokens: toks,
        patterns: f16Bytes(tril(fakePatterns(L, H, S), L * H, S)),
        patterns_meta: { dtype: "f16", shape: [L, H, (S * (S + 1)) / 2], scale: 1, offset: 0, layout: "tril", size: S, pos: P, pooled: true, bin: 4, window_max: WMAX },
      }),
    );
    mount(m);
    m.set("focus", [1, 2]);
    await tick();
    const reqs = m.requests();
    const ov = reqs.find((r) => r.kind === "overview")!;
    const wq = reqs.find((r) => r.kind === "window")!;
    expect(ov.args).toEqual({ layer: 1, head: 2 });
    expect(wq.args).toEqual({ layer: 1, head: 2, q0: 0, q1: WMAX, k0: 0, k1: WMAX }); // side capped at window_max
    const OS = 20; // overview: 2 tokens a cell
    const overFull = fakePatterns(1, 1, OS);
    m.receive(
      { type: "reply", id: ov.id, ok: true, result: { layer: 1, head: 2, meta: { dtype: "f16", shape: [(OS * (OS + 1)) / 2], scale: 1, offset: 0, layout: "tril", size: OS, pos: P, bin: 2, pooled: true } } },
      [f16Bytes(tril(overFull, 1, OS))],
    );
    const winVals = (q0: number, k0: number) => {
      const v = new Float32Array(WMAX * WMAX);
      for (let i = 0; i < WMAX; i++) for (let j = 0; j < WMAX; j++) v[i * WMAX + j] = k0 + j <= q0 + i ? 0.001 * (q0 + i) + 0.0001 * (k0 + j) + 1e-7 : 0;
      return v;
    };
    const reply = (id: string, q0: number, k0: number) =>
      m.receive(
        { type: "reply", id, ok: true, result: { layer: 1, head: 2, q0, q1: q0 + WMAX, k0, k1: k0 + WMAX, meta: { dtype: "f32", shape: [WMAX, WMAX], scale: 1, offset: 0 } } },
        [f32Bytes(winVals(q0, k0))],
      );
    reply(wq.id, 0, 0);
    await tick();
    await tick();
    const panel = tid("lw-overview-panel")!;
    expect(panel.hidden).toBe(false);
    expect(panel.dataset.bin).toBe("2");
    expect(panel.dataset.window).toBe("0,16,0,16");
    expect(tid("lw-focus")!.dataset.window).toBe("0,16,0,16");
    expect(tid("lw-focus")!.dataset.partial).toBe("true");
    // overview hover: the bin's tokens, its max, and that it is the float16 overview
    const oc = tid<HTMLCanvasElement>("lw-overview")!;
    const ocell = Number(oc.dataset.cell);
    let pt = cellCenter(gridLayout(OS, OS, ocell, ocell, 0, Number(oc.dataset.originX), Number(oc.dataset.originY)), 15, 10);
    oc.dispatchEvent(new MouseEvent("mousemove", { clientX: pt.x, clientY: pt.y }));
    const oinfo = tid("lw-overview-info")!;
    expect(oinfo.textContent).toContain("queries #30–#31 → keys #20–#21");
    expect(oinfo.textContent).toContain("float16");
    expect(Number(oinfo.dataset.value)).toBeCloseTo(overFull[15 * OS + 10], 3);
    // click it: a window centred on those tokens
    oc.dispatchEvent(new MouseEvent("click", { clientX: pt.x, clientY: pt.y }));
    await tick();
    const moved = last(m.requests());
    expect(moved.kind).toBe("window");
    expect(moved.args).toEqual({ layer: 1, head: 2, q0: 23, q1: 39, k0: 13, k1: 29 }); // centred on tokens 31, 21
    reply(moved.id, 23, 13);
    await tick();
    await tick();
    expect(tid("lw-focus")!.dataset.window).toBe("23,39,13,29");
    const q = ui.el.querySelectorAll<HTMLElement>('[data-testid="lw-query"]');
    expect(q.length).toBe(WMAX);
    expect(q[0].dataset.index).toBe("23"); // labels carry the prompt's indices
    expect(q[0].title).toBe('#23 " w23x"');
    expect(q[0].textContent!.endsWith("w23x")).toBe(true);
    // hover a window cell: the exact f32 value at the prompt's (query, key)
    const pc = tid<HTMLCanvasElement>("lw-pattern")!;
    const cw = Number(pc.dataset.cell);
    pt = cellCenter(gridLayout(WMAX, WMAX, cw, cw, 0, Number(pc.dataset.originX), Number(pc.dataset.originY)), 5, 3);
    pc.dispatchEvent(new MouseEvent("mousemove", { clientX: pt.x, clientY: pt.y }));
    const info = tid("lw-focus-info")!;
    expect([info.dataset.q, info.dataset.k]).toEqual(["28", "16"]);
    expect(Number(info.dataset.value)).toBe(winVals(23, 13)[5 * WMAX + 3]);
    expect(info.textContent).toContain("#28");
    // Find a token outside the window: the window moves there, the row stays locked
    const find = tid<HTMLInputElement>("lw-find")!;
    find.value = "W5X";
    find.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    await tick();
    const found = last(m.requests());
    expect(found.args).toEqual({ layer: 1, head: 2, q0: 0, q1: 16, k0: 0, k1: 16 });
    expect(tid("lw-focus")!.dataset.locked).toBe("row:5");
    reply(found.id, 0, 0);
    await tick();
    await tick();
    const items = [...info.querySelectorAll<HTMLElement>('[data-testid="lw-attend-item"]')];
    expect(Number(items[0].dataset.index)).toBe(5); // row 5's largest weight in the window: the diagonal
    expect(Number(items[0].dataset.value)).toBe(winVals(0, 0)[5 * WMAX + 5]);
    // the wheel pans by a quarter window
    pc.dispatchEvent(new WheelEvent("wheel", { deltaY: 100, bubbles: true, cancelable: true }));
    await tick();
    expect(last(m.requests()).args).toEqual({ layer: 1, head: 2, q0: 4, q1: 20, k0: 0, k1: 16 });
    reply(last(m.requests()).id, 4, 0);
    await tick();
    // another head: its overview is drawn at once, its window (same place) when the kernel sends it
    m.set("focus", [0, 1]);
    await tick();
    const ov2 = last(m.requests().filter((r) => r.kind === "overview"));
    const w2 = last(m.requests().filter((r) => r.kind === "window"));
    expect(ov2.args).toEqual({ layer: 0, head: 1 });
    expect(w2.args).toEqual({ layer: 0, head: 1, q0: 4, q1: 20, k0: 0, k1: 16 });
    m.receive(
      { type: "reply", id: ov2.id, ok: true, result: { layer: 0, head: 1, meta: { dtype: "f16", shape: [(OS * (OS + 1)) / 2], scale: 1, offset: 0, layout: "tril", size: OS, pos: P, bin: 2, pooled: true } } },
      [f16Bytes(tril(overFull, 1, OS))],
    );
    await tick();
    await tick();
    expect(tid("lw-focus")!.hidden).toBe(false);
    expect(tid("lw-focus")!.dataset.head).toBe("0,1");
    expect(tid("lw-overview-panel")!.dataset.head).toBe("0,1");
    expect(tid("lw-focus")!.dataset.window).toBe("4,4,0,0"); // no values yet
    expect(tid("lw-focus-info")!.textContent!.toLowerCase()).toContain("loading"); // (row 5 is still locked)
  });
});

describe("focus panel find box", () => {
  it("Enter locks the next query token containing the text, wrapping; its top keys are listed", async () => {
    const m = new FakeModel(traits({ focus: [0, 1] }));
    mount(m);
    const find = tid<HTMLInputElement>("lw-find")!;
    find.value = "CAT";
    find.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(tid("lw-focus")!.dataset.locked).toBe("row:2");
    expect(tid("lw-focus")!.dataset.found).toBe("2");
    const items = tid("lw-focus-info")!.querySelectorAll('[data-testid="lw-attend-item"]');
    expect(items.length).toBeGreaterThan(0);
    find.value = "t"; // after 2: "<img ... alert(1)>" (3), then wraps to " The" (1)
    find.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(tid("lw-focus")!.dataset.locked).toBe("row:3");
    find.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(tid("lw-focus")!.dataset.locked).toBe("row:1");
    find.value = "zzz";
    find.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(tid("lw-focus")!.dataset.found).toBe("");
  });
});

describe("focus window bounds", () => {
  it("stay inside the pattern, keep their size when moved, and parse only valid traits", () => {
    expect(windowAround(0, 0, 64, 1000)).toEqual([0, 64, 0, 64]);
    expect(windowAround(999, 500, 64, 1000)).toEqual([936, 1000, 468, 532]);
    expect(windowAround(5, 5, 64, 20)).toEqual([0, 20, 0, 20]); // a short prompt: all of it
    expect(panWindow([936, 1000, 0, 64], 16, -16, 1000)).toEqual([936, 1000, 0, 64]);
    expect(panWindow([100, 164, 100, 164], -16, 8, 1000)).toEqual([84, 148, 108, 172]);
    expect(resizeWindow([100, 164, 100, 164], 32, 1000)).toEqual([116, 148, 116, 148]);
    expect(windowShowing([100, 164, 0, 64], 120, 64, 1000)).toEqual([100, 164, 0, 64]); // already shown
    expect(windowShowing([100, 164, 0, 64], 500, 64, 1000)).toEqual([468, 532, 468, 532]);
    expect(parseBounds([0, 10, 0, 10], 40, 16)).toEqual([0, 10, 0, 10]);
    expect(parseBounds([0, 20, 0, 10], 40, 16)).toBeNull(); // over window_max
    expect(parseBounds([5, 5, 0, 10], 40, 16)).toBeNull();
    expect(parseBounds([0, 41, 0, 10], 40, 64)).toBeNull();
    expect(parseBounds([], 40, 16)).toBeNull();
  });
});
