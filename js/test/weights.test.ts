import { describe, expect, it, vi } from "vitest";
import view from "../weights";
import { cellOfPair, compDomain, decodeComposition, headLabel, legendFraction, pairOfCell, squareMatrix } from "../weights/data";
import { cellCenter, gridLayout } from "../lib/heatmap";
import { FakeModel, f32Bytes, last, stubContext, viewHarness } from "./helpers";

const L = 2;
const H = 2;
const N = L * H;
const TOKENS = ["<bos>", "red", "<img src=x onerror=alert(1)>"];
const T = TOKENS.length;

function compValues(): Float32Array {
  const v = new Float32Array(N * N);
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) v[i * N + j] = Math.floor(i / H) < Math.floor(j / H) ? 0.1 + 0.01 * (i * N + j) : 0;
  return v;
}

const PAIR = {
  kind: "k",
  src: "L0H1",
  dst: "L1H0",
  index: [0, 1, 1, 0],
  score: 0.25832948088645935,
  scores: { q: 0.11, k: 0.25832948088645935, v: 0.09 },
  baseline_mean: 0.125,
  baseline_std: 0.0068,
  z: { q: -2.2, k: 19.6, v: -5 },
  tokens: TOKENS,
  hooks: ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"],
  src_pattern: f32Bytes(new Float32Array(T * T).fill(0.3)),
  dst_pattern: f32Bytes(new Float32Array(T * T).fill(0.5)),
  shape: [T, T],
};

const HEAD = {
  layer: 1,
  head: 0,
  label: "L1H0",
  copying: 0.9994,
  ov: {
    what: "ov L1H0",
    label: "L1H0",
    rows: [
      { source: "red", source_id: 7, top: [{ token: "red", id: 7, value: 1.5 }, { token: "<b>", id: 9, value: 0.5 }], bottom: [{ token: "x", id: 3, value: -1 }], self_value: 1.5, self_rank: 0 },
    ],
  },
  qk: f32Bytes(Float32Array.from({ length: T * T }, (_, i) => i - 4)),
  qk_shape: [T, T],
  tokens: TOKENS,
  promoted: { pos: 2, promoted: [{ token: " Paris", id: 5, value: 2.5 }], suppressed: [] },
};

function traits(extra: Record<string, unknown> = {}) {
  return {
    prompt: "red",
    tokens: TOKENS,
    n_layers: L,
    n_heads: H,
    labels: ["L0H0", "L0H1", "L1H0", "L1H1"],
    kind: "k",
    comp: f32Bytes(compValues()),
    comp_meta: { dtype: "f32", shape: [N, N], scale: 1, offset: 0 },
    baseline: { mean: 0.125, std: 0.0068, max: { q: 0.14, k: 0.26, v: 0.12 } },
    copying: f32Bytes(new Float32Array([-0.6, -0.5, 0.99, 0.98])),
    copying_meta: { dtype: "f32", shape: [L, H], scale: 1, offset: 0 },
    k: 8,
    selected_pair: [],
    pair_result: {},
    selected_head: [],
    head_result: {},
    error: {},
    busy: "",
    theme: "auto",
    ...extra,
  };
}

describe("weights data", () => {
  it("masks cells that are not earlier -> later and names heads", () => {
    const d = decodeComposition(f32Bytes(compValues()), { dtype: "f32", shape: [N, N] }, L, H);
    expect(Number.isNaN(d[0])).toBe(true); // L0H0 -> L0H0
    expect(Number.isNaN(d[2 * N + 0])).toBe(true); // L1H0 -> L0H0
    expect(d[1 * N + 2]).toBeCloseTo(0.1 + 0.01 * 6);
    expect(headLabel(3, H)).toBe("L1H1");
    expect(() => decodeComposition(f32Bytes(new Float32Array(9)), { dtype: "f32", shape: [3, 3] }, L, H)).toThrow(/expected \[4, 4\]/);
  });

  it("maps cells to pairs and back", () => {
    expect(pairOfCell(1, 2, L, H)).toEqual({ src: [0, 1], dst: [1, 0] });
    expect(pairOfCell(2, 1, L, H)).toBeNull();
    expect(pairOfCell(0, 1, L, H)).toBeNull();
    expect(pairOfCell(0, 9, L, H)).toBeNull();
    expect(cellOfPair([0, 1, 1, 0], L, H)).toEqual({ row: 1, col: 2 });
    expect(cellOfPair([1, 1, 1, 0], L, H)).toBeNull();
    expect(cellOfPair("junk", L, H)).toBeNull();
  });

  it("keeps the baseline on the scale", () => {
    expect(compDomain(0.26, 0.125, 0.0068)).toEqual([0, 0.26]);
    expect(compDomain(0.1, 0.125, 0.01)[1]).toBeCloseTo(0.155);
    expect(legendFraction(0.13, [0, 0.26])).toBeCloseTo(0.5);
    expect(legendFraction(5, [0, 1])).toBe(1);
    const m = squareMatrix(f32Bytes(new Float32Array([1, 2, 3, 4])), [2, 2], true);
    expect(Number.isNaN(m.data[1])).toBe(true);
    expect(m.data[2]).toBe(3);
    expect(() => squareMatrix(f32Bytes(new Float32Array(6)), [2, 3])).toThrow(/square/);
  });
});

describe("WeightsView", () => {
  const { mount, tid, all } = viewHarness(view);

  it("clicks a cell of the earlier -> later part and sends a pair request; ignores the rest", () => {
    const { ctx } = stubContext();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(ctx as never);
    const m = new FakeModel(traits());
    mount(m);
    const c = tid<HTMLCanvasElement>("lw-wt-comp")!;
    const cell = Number(c.dataset.cell);
    const lay = gridLayout(N, N, cell, cell, 0, 2, 2, 2, 2);
    let p = cellCenter(lay, 1, 2);
    c.dispatchEvent(new MouseEvent("click", { clientX: p.x, clientY: p.y }));
    expect(last(m.requests())).toMatchObject({ kind: "pair", args: { src_layer: 0, src_head: 1, dst_layer: 1, dst_head: 0 } });
    c.dispatchEvent(new MouseEvent("mousemove", { clientX: p.x, clientY: p.y }));
    expect(tid("lw-wt-hover")!.textContent).toBe("L0H1 → L1H0: 0.160");
    p = cellCenter(lay, 2, 1);
    c.dispatchEvent(new MouseEvent("click", { clientX: p.x, clientY: p.y }));
    expect(m.requests().length).toBe(1);
    expect(tid("lw-wt-baseline")!.textContent).toBe("random baseline 0.125 ± 0.007");
    expect(tid("lw-wt-legend-baseline")!.dataset.value).toBe("0.125");
    expect(tid("lw-wt-legend-baseline")!.style.left).toBe(`${((100 * 0.125) / 0.26).toFixed(2)}%`);
  });

  it("tabs set the kind trait and show which is pressed", () => {
    const m = new FakeModel(traits());
    mount(m);
    expect(tid("lw-wt-kind-k")!.getAttribute("aria-pressed")).toBe("true");
    tid("lw-wt-kind-v")!.click();
    expect(m.get("kind")).toBe("v");
    expect(m.saves).toBe(1);
    expect(tid("lw-wt-kind-v")!.getAttribute("aria-pressed")).toBe("true");
    expect(tid("lw-wt-kind-k")!.getAttribute("aria-pressed")).toBe("false");
  });

  it("draws the pair and head panels from their traits, tokens as text", () => {
    const m = new FakeModel(traits());
    mount(m);
    expect(tid("lw-wt-pair")!.hidden).toBe(true);
    m.update({ pair_result: PAIR, selected_pair: [0, 1, 1, 0] });
    expect(tid("lw-wt-pair-title")!.textContent).toBe("L0H1 → L1H0 (K-composition)");
    expect(tid("lw-wt-pair-score")!.dataset.value).toBe(String(PAIR.score));
    expect(tid("lw-wt-pair-z")!.textContent).toBe("19.6");
    expect(tid("lw-wt-pair-kind-q")!.dataset.value).toBe("0.11");
    expect(tid("lw-wt-src-pattern")).not.toBeNull();
    m.update({ head_result: HEAD, selected_head: [1, 0] });
    expect(tid("lw-wt-head-copying")!.dataset.value).toBe("0.9994");
    const rows = all("lw-wt-ov-row");
    expect(rows.length).toBe(1);
    expect(rows[0].dataset.sourceId).toBe("7");
    const tops = all("lw-wt-ov-top");
    expect(tops.map((t) => t.dataset.id)).toEqual(["7", "9"]);
    expect(tops[1].textContent).toBe("<b>");
    expect(tid("lw-wt-head")!.querySelector("b")).toBeNull();
    expect(all("lw-wt-promoted-row")[0].dataset.value).toBe("2.5");
    expect(tid("lw-wt-qk")).not.toBeNull();
    m.update({ head_result: {} });
    expect(tid("lw-wt-head")!.hidden).toBe(true);
  });

  it("clicks a head of the copying strip", () => {
    const { ctx } = stubContext();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(ctx as never);
    const m = new FakeModel(traits());
    mount(m);
    const c = tid<HTMLCanvasElement>("lw-wt-copying")!;
    const lay = gridLayout(L, H, Number(c.dataset.cell), Number(c.dataset.cellH ?? c.dataset.cell), Number(c.dataset.gap), 2, 2, 2, 2);
    const p = cellCenter(lay, 1, 0);
    c.dispatchEvent(new MouseEvent("click", { clientX: p.x, clientY: p.y }));
    expect(last(m.requests())).toMatchObject({ kind: "head", args: { layer: 1, head: 0 } });
  });

  it("shows undecodable composition bytes in the banner", () => {
    const m = new FakeModel(traits({ comp_meta: { dtype: "f32", shape: [3, 3] } }));
    expect(() => mount(m)).not.toThrow();
    expect(tid("lw-error")!.hidden).toBe(false);
    expect(tid("lw-error-message")!.textContent).toContain("Could not decode");
  });
});
