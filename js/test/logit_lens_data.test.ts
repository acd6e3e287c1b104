import { describe, expect, it } from "vitest";
import {
  cellTop,
  countChanged,
  decodeChanged,
  decodeInt32LE,
  decodeTargetStats,
  decodeTopTable,
  normalizeMode,
  rankStrength,
  shadeValues,
  top1,
  vocabToken,
} from "../logit_lens/data";
import { dlaOrder, dlaSum, isAblatable } from "../logit_lens/detail";
import { fitText } from "../logit_lens/table";
import { cellViewRect, contentSize, hitTestView, maxScroll, scrollToShow, visibleWindow, windowCells } from "../lib/virtual";
import type { VGrid } from "../lib/virtual";
import { f16Bytes, f32Bytes } from "./helpers";
import { i32Bytes } from "./logit_lens_fixtures";

describe("logit lens decoding", () => {
  it("decodes little-endian int32 through a DataView, at any byte offset", () => {
    const vals = [0, 1, -1, 49151, 2 ** 31 - 1, -(2 ** 31)];
    expect(Array.from(decodeInt32LE(i32Bytes(vals), vals.length))).toEqual(vals);
    // Explicit little-endian bytes: 0x01020304 is stored 04 03 02 01.
    const raw = new Uint8Array([0x04, 0x03, 0x02, 0x01]);
    expect(decodeInt32LE(new DataView(raw.buffer), 1)[0]).toBe(0x01020304);
    // Misaligned (a view into a larger buffer at offset 1).
    const big = new Uint8Array(1 + 8);
    const dv = new DataView(big.buffer, 1, 8);
    dv.setInt32(0, 123456, true);
    dv.setInt32(4, -7, true);
    expect(Array.from(decodeInt32LE(dv, 2))).toEqual([123456, -7]);
    expect(() => decodeInt32LE(dv, 3)).toThrow(/12 bytes, got 8/);
  });

  it("decodes the [R, T, k] top table (int32 ids, float16 probs)", () => {
    const R = 2;
    const T = 3;
    const k = 2;
    const ids = Array.from({ length: R * T * k }, (_, i) => 1000 + i);
    const probs = Array.from({ length: R * T * k }, (_, i) => [0.5, 0.25, 0.125, 0.0625, 0.75, 0.001][i % 6]);
    const t = decodeTopTable(i32Bytes(ids), f16Bytes(probs), { shape: [R, T, k] })!;
    expect([t.R, t.T, t.k]).toEqual([R, T, k]);
    expect(Array.from(t.ids)).toEqual(ids);
    // Exact where float16 is exact; 0.001 rounds to the nearest float16.
    expect(t.probs[0]).toBe(0.5);
    expect(t.probs[4]).toBe(0.75);
    expect(t.probs[5]).toBeCloseTo(0.001, 5);
    expect(top1(t, 1, 2)).toBe(1000 + (1 * T + 2) * k);
    expect(cellTop(t, 0, 1)).toEqual([
      { id: 1002, prob: 0.125 },
      { id: 1003, prob: 0.0625 },
    ]);
    expect(decodeTopTable(new DataView(new ArrayBuffer(0)), new DataView(new ArrayBuffer(0)), {})).toBeNull();
    expect(() => decodeTopTable(i32Bytes(ids), f16Bytes(probs), { shape: [R, T] })).toThrow(/\[R, T, k\]/);
    expect(() => decodeTopTable(i32Bytes(ids), f16Bytes(probs.slice(1)), { shape: [R, T, k] })).toThrow(/bytes/);
  });

  it("decodes target stats and the changed mask", () => {
    const s = decodeTargetStats({ prob: f32Bytes([0.1, 0.2, 0.3, 0.4]), rank: f32Bytes([5, 0, 1, 100]), logit: f32Bytes([1, 2, 3, 4]), shape: [2, 2] }, 2, 2)!;
    expect(Array.from(s.rank!)).toEqual([5, 0, 1, 100]);
    expect(s.prob![1]).toBeCloseTo(0.2, 6);
    expect(decodeTargetStats({}, 2, 2)).toBeNull();
    expect(() => decodeTargetStats({ prob: f32Bytes([1]), shape: [1, 1] }, 2, 2)).toThrow(/shape/);
    expect(decodeChanged(new DataView(new ArrayBuffer(0)), 2, 2)).toBeNull();
    const m = decodeChanged(new DataView(new Uint8Array([0, 1, 1, 0]).buffer), 2, 2);
    expect(countChanged(m)).toBe(2);
    expect(() => decodeChanged(new DataView(new Uint8Array(3).buffer), 2, 2)).toThrow(/uint8/);
  });

  it("shades by top-1 prob, target prob, or log rank (rank 0 strongest)", () => {
    const t = decodeTopTable(i32Bytes([1, 2, 3, 4]), f16Bytes([0.5, 0.25, 0.75, 0.125]), { shape: [1, 2, 2] })!;
    expect(Array.from(shadeValues(t, null, "top").values)).toEqual([0.5, 0.75]);
    expect(shadeValues(t, null, "target_prob").ok).toBe(false);
    const stats = { prob: new Float32Array([0.25, 0.5]), rank: new Float32Array([0, 999]), logit: null };
    expect(Array.from(shadeValues(t, stats, "target_prob").values)).toEqual([0.25, 0.5]);
    const r = shadeValues(t, stats, "target_rank");
    expect(r.maxRank).toBe(999);
    expect(r.values[0]).toBe(1);
    expect(r.values[1]).toBe(0);
    expect(rankStrength(0, 1000)).toBe(1);
    expect(rankStrength(9, 999)).toBeCloseTo(1 - Math.log(10) / Math.log(1000), 6);
    expect(rankStrength(1, 1000)).toBeGreaterThan(rankStrength(10, 1000));
    expect(Number.isNaN(rankStrength(NaN, 10))).toBe(true);
    expect(normalizeMode("target_rank")).toBe("target_rank");
    expect(normalizeMode("junk")).toBe("top");
    expect(vocabToken({ "5": " Paris" }, 5)).toBe(" Paris");
    expect(vocabToken({}, 5)).toBe("#5");
  });

  it("orders and sums DLA parts; only heads and MLPs are ablatable", () => {
    expect(dlaOrder([0.5, -2, 1, -0.5])).toEqual([1, 2, 0, 3]);
    expect(dlaSum([0.1, 0.2, -0.3])).toBeCloseTo(0, 12);
    expect(isAblatable("L1H3")).toBe(true);
    expect(isAblatable("mlp12")).toBe(true);
    expect(isAblatable("embed")).toBe(false);
    expect(isAblatable("attn2")).toBe(false);
    expect(isAblatable("L1H3<script>")).toBe(false);
  });

  it("fits text with an ellipsis on whole code points", () => {
    const m = (s: string) => [...s].length * 6;
    expect(fitText("abc", 30, m)).toBe("abc");
    expect(fitText("abcdefghij", 30, m)).toBe("abcd…");
    expect(fitText("😀😀😀😀😀😀", 24, m)).toBe("😀😀😀…");
    expect(fitText("abc", 3, m)).toBe("");
  });
});

describe("virtual window math", () => {
  const g: VGrid = { rows: 31, cols: 512, cellW: 64, cellH: 20, labelW: 48, headerH: 34 };

  it("sizes the content", () => {
    expect(contentSize(g)).toEqual({ width: 48 + 512 * 64, height: 34 + 31 * 20 });
    expect(maxScroll(g, 960, 400)).toEqual({ x: 48 + 512 * 64 - 960, y: 34 + 620 - 400 });
  });

  it("finds the visible rows and columns for a scroll offset", () => {
    expect(visibleWindow(g, { scrollX: 0, scrollY: 0, viewW: 960, viewH: 654 })).toEqual({ r0: 0, r1: 31, c0: 0, c1: 15 });
    // Scrolled by 100.5 columns and 10.5 rows: partly visible cells count.
    const w = visibleWindow(g, { scrollX: 6432, scrollY: 210, viewW: 960, viewH: 300 });
    expect(w).toEqual({ r0: 10, r1: 24, c0: 100, c1: 115 });
    expect(windowCells(w)).toBe(14 * 15);
    // At the end: the last column and row are the last drawn.
    const m = maxScroll(g, 960, 300);
    const end = visibleWindow(g, { scrollX: m.x, scrollY: m.y, viewW: 960, viewH: 300 });
    expect(end.c1).toBe(512);
    expect(end.r1).toBe(31);
    expect(end.c0).toBe(512 - Math.ceil((960 - 48) / 64));
  });

  it("hit-tests cells, frozen labels and headers under scrolling", () => {
    const sx = 6432;
    const sy = 210;
    for (const [r, c] of [
      [11, 101],
      [12, 110],
      [23, 114],
    ]) {
      const rect = cellViewRect(g, sx, sy, r, c);
      expect(hitTestView(g, sx, sy, rect.x + rect.w / 2, rect.y + rect.h / 2)).toEqual({ kind: "cell", row: r, col: c });
      expect(hitTestView(g, sx, sy, rect.x, rect.y)).toEqual({ kind: "cell", row: r, col: c });
    }
    expect(hitTestView(g, sx, sy, 10, 100)).toEqual({ kind: "row-label", row: Math.floor((100 - 34 + sy) / 20) });
    expect(hitTestView(g, sx, sy, 100, 10)).toEqual({ kind: "col-header", col: Math.floor((100 - 48 + sx) / 64) });
    expect(hitTestView(g, sx, sy, 10, 10)).toEqual({ kind: "corner" });
    expect(hitTestView(g, 0, 0, 48 + 512 * 64 + 1, 50)).toBeNull();
    expect(hitTestView(g, 0, 0, -1, 50)).toBeNull();
  });

  it("scrolls a cell into view with the least movement", () => {
    const v = { scrollX: 0, scrollY: 0, viewW: 960, viewH: 300 };
    expect(scrollToShow(g, v, 0, 0)).toEqual({ x: 0, y: 0 });
    // Column 200 to the right edge; row 30 to the bottom edge.
    const s = scrollToShow(g, v, 30, 200);
    expect(s.x).toBe(201 * 64 - (960 - 48));
    expect(s.y).toBe(31 * 20 - (300 - 34));
    const rect = cellViewRect(g, s.x, s.y, 30, 200);
    expect(rect.x + rect.w).toBe(960);
    expect(rect.y + rect.h).toBe(300);
    // Back to the left: the cell lands just right of the frozen labels.
    const back = scrollToShow(g, { ...v, scrollX: s.x, scrollY: s.y }, 0, 150);
    expect(cellViewRect(g, back.x, back.y, 0, 150).x).toBe(48);
    expect(cellViewRect(g, back.x, back.y, 0, 150).y).toBe(34);
    // Already visible: unchanged.
    expect(scrollToShow(g, { ...v, scrollX: 640, scrollY: 20 }, 5, 12)).toEqual({ x: 640, y: 20 });
  });
});
