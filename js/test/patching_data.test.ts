import { describe, expect, it } from "vitest";
import {
  ResultMapCache,
  agreement,
  argmaxAbs,
  axisLabels,
  cellHook,
  cellIndex,
  chooseAxes,
  combine,
  componentLabel,
  diffMasks,
  extractSlice,
  flatIndex,
  maxAbsAlong,
  parseEntry,
  recovered,
  sweepCounts,
} from "../patching/data";
import type { SiteEntry } from "../patching/data";
import { cellSize, fmtCell } from "../patching/site";
import { metricLabel } from "../patching";
import { svgSize } from "../lib/raster";
import { f16Bytes, f32Bytes } from "./helpers";

function mk(data: number[], shape: number[], dims: string[], extra: Partial<SiteEntry> = {}): SiteEntry {
  return parseEntry({ data: f32Bytes(data), shape, dims, hook: "blocks.{layer}.hook_resid_pre", ...extra });
}

describe("result map entries", () => {
  it("decodes f32 (and f16) entries and counts done/total", () => {
    const e = mk([1, NaN, 3, 4, 5, NaN], [2, 3], ["layer", "pos"]);
    expect(Array.from(e.data.slice(0, 3))).toEqual([1, NaN, 3]);
    expect([e.done, e.total, e.partial]).toEqual([4, 6, false]);
    const g = parseEntry({ data: f32Bytes([1, 2]), shape: [1, 2], dims: ["layer", "head"], done: 7, total: 9, partial: true });
    expect([g.done, g.total, g.partial]).toEqual([7, 9, true]);
    const h = parseEntry({ data: f16Bytes([0.5, -2]), dtype: "f16", shape: [1, 2], dims: ["layer", "pos"] });
    expect(Array.from(h.data)).toEqual([0.5, -2]);
  });

  it("rejects bad entries with a message", () => {
    expect(() => parseEntry(null)).toThrow("not an object");
    expect(() => parseEntry({ data: f32Bytes([1]), shape: [2], dims: ["layer"] })).toThrow("needs 8 bytes, got 4");
    expect(() => parseEntry({ data: f32Bytes([1, 2]), shape: [2], dims: ["layer", "pos"] })).toThrow("do not match");
    expect(() => parseEntry({ shape: [2], dims: ["layer"] })).toThrow("no data bytes");
    expect(() => parseEntry({ data: f32Bytes([]), shape: [-1], dims: ["layer"] })).toThrow("bad shape");
  });

  it("the cache re-decodes only entries whose bytes changed", () => {
    const cache = new ResultMapCache();
    const a = { data: f32Bytes([1, 2]), shape: [1, 2], dims: ["layer", "pos"], hook: "h" };
    const b = { data: f32Bytes([3, 4]), shape: [1, 2], dims: ["layer", "head"], hook: "h" };
    const r1 = cache.update({ a, b });
    expect([...r1.changed].sort()).toEqual(["a", "b"]);
    // A new map object with the same entry objects (or copies sharing the bytes): nothing changes.
    const r2 = cache.update({ a: { ...a }, b });
    expect(r2.changed.size).toBe(0);
    expect(r2.entries.get("a")).toBe(r1.entries.get("a"));
    const r3 = cache.update({ a: { ...a, data: f32Bytes([9, 9]) } });
    expect([...r3.changed].sort()).toEqual(["a", "b"]);
    expect(Array.from(r3.entries.get("a")!.data)).toEqual([9, 9]);
    const r4 = cache.update({ a: { ...a, shape: [3] } });
    expect(r4.errors.get("a")).toContain("do not match");
    expect(cache.update("junk").entries.size).toBe(0);
  });
});

describe("axes and slices", () => {
  it("chooses rows = layer, columns = a position axis, else head", () => {
    expect(chooseAxes(["layer", "pos"])).toEqual({ row: 0, col: 1, extra: [] });
    expect(chooseAxes(["layer", "head"])).toEqual({ row: 0, col: 1, extra: [] });
    expect(chooseAxes(["layer", "pos", "head"])).toEqual({ row: 0, col: 1, extra: [2] });
    expect(chooseAxes(["layer", "head", "dest_pos"])).toEqual({ row: 0, col: 2, extra: [1] });
    expect(chooseAxes(["layer", "head", "dest_pos", "src_pos"])).toEqual({ row: 0, col: 2, extra: [1, 3] });
    expect(chooseAxes(["patch_type", "layer", "pos"])).toEqual({ row: 1, col: 2, extra: [0] });
    expect(chooseAxes(["layer"])).toEqual({ row: 0, col: -1, extra: [] });
    expect(chooseAxes([])).toEqual({ row: -1, col: -1, extra: [] });
  });

  it("extracts a layer x pos slice of [layer, pos, head] for one head, and maps cells back", () => {
    const shape = [2, 3, 4];
    const vals = Array.from({ length: 24 }, (_, i) => i);
    const axes = chooseAxes(["layer", "pos", "head"]);
    const fixed = [0, 0, 3];
    const s = extractSlice(vals, shape, axes, fixed);
    // value at (l, p, h) = (l * 3 + p) * 4 + h
    expect(Array.from(s)).toEqual([3, 7, 11, 15, 19, 23]);
    const idx = cellIndex(shape, axes, fixed, 1, 2);
    expect(idx).toEqual([1, 2, 3]);
    expect(vals[flatIndex(shape, idx)]).toBe(s[1 * 3 + 2]);
  });

  it("finds the largest effect and the peak of each slice", () => {
    const shape = [2, 3];
    expect(argmaxAbs([0.1, -5, 2, NaN, 4, 1], shape)).toEqual([0, 1]);
    expect(argmaxAbs([NaN, NaN], [1, 2])).toEqual([0, 0]);
    expect(Array.from(maxAbsAlong([0.1, -5, 2, NaN, 4, 1], shape, 1))).toEqual([0.1, 5, 2]);
  });
});

describe("exact vs attribution", () => {
  const attr = mk([1, 2, 3, 4], [2, 2], ["layer", "pos"]);
  it("mixes exact where computed with flagged attribution elsewhere", () => {
    const exact = mk([10, NaN, NaN, 40], [2, 2], ["layer", "pos"], { partial: true } as never);
    const c = combine(exact, attr, "mixed");
    expect(Array.from(c.values)).toEqual([10, 2, 3, 40]);
    expect(Array.from(c.approx!)).toEqual([0, 1, 1, 0]);
    expect([c.source, c.exactCells, c.approxCells]).toEqual(["mixed", 2, 2]);
    expect(combine(exact, attr, "exact").source).toBe("exact");
    expect(Array.from(combine(exact, attr, "exact").values)).toEqual([10, NaN, NaN, 40]);
    expect(combine(exact, attr, "attribution").values).toBe(attr.data);
  });

  it("shows attribution alone, exact alone, or nothing", () => {
    expect(combine(null, attr, "mixed")).toMatchObject({ source: "attribution", approx: null });
    const full = mk([1, 1, 1, 1], [2, 2], ["layer", "pos"]);
    expect(combine(full, attr, "mixed")).toMatchObject({ source: "exact", approx: null, exactCells: 4 });
    const none = mk([NaN, NaN, NaN, NaN], [2, 2], ["layer", "pos"]);
    expect(combine(none, attr, "mixed")).toMatchObject({ source: "attribution", exactCells: 0 });
    expect(combine(none, null, "mixed")).toMatchObject({ source: "exact", exactCells: 0 });
    expect(combine(null, null, "mixed").source).toBe("none");
    // A shape mismatch never mixes.
    const other = mk([1, 2, 3], [1, 3], ["layer", "pos"]);
    expect(combine(none, other, "mixed").source).toBe("exact");
  });

  it("agreement: Pearson r, max and mean |diff| over cells where both are finite", () => {
    const a = agreement([1, 2, 3, NaN, 5], [2, 4, 7, 1, NaN]);
    expect(a.n).toBe(3);
    // x = [1, 2, 3], y = [2, 4, 7]: r = cov / sqrt(vx vy) = 5 / sqrt(2 * 12.6667)
    expect(a.r).toBeCloseTo(5 / Math.sqrt(2 * (38 / 3)), 12);
    expect(a.maxAbsDiff).toBe(4);
    expect(a.meanAbsDiff).toBeCloseTo((1 + 2 + 4) / 3, 12);
    expect(agreement([1, -1], [-2, 2]).r).toBeCloseTo(-1, 12);
    expect(agreement([1, 1, 1], [1, 2, 3]).r).toBeNaN();
    expect(agreement([NaN], [1])).toMatchObject({ n: 0 });
  });

  it("counts the sweep's cells over the sites shown", () => {
    const e1 = mk([1, NaN], [1, 2], ["layer", "pos"], {} as never);
    const e2 = parseEntry({ data: f32Bytes([1, 2, 3]), shape: [1, 3], dims: ["layer", "head"], partial: true, done: 3, total: 3 });
    const m = new Map([
      ["a", e1],
      ["b", e2],
    ]);
    expect(sweepCounts(m, ["a", "b", "c"])).toEqual({ done: 4, total: 5, partial: true });
    expect(sweepCounts(m, ["a"])).toEqual({ done: 1, total: 2, partial: false });
    // A site not reached yet counts its attribution map's cells as not done.
    const attr = new Map([["c", mk([1, 2, 3, 4, 5, 6], [2, 3], ["layer", "pos"])]]);
    expect(sweepCounts(m, ["a", "b", "c"], attr)).toEqual({ done: 4, total: 11, partial: true });
  });
});

describe("labels", () => {
  it("labels axes: L{l}, clean tokens, H{h}, or Python's labels", () => {
    expect(axisLabels("layer", 2, null, [])).toEqual(["L0", "L1"]);
    expect(axisLabels("pos", 3, null, ["a", " b"])).toEqual(["a", " b", "#2"]);
    expect(axisLabels("head", 2, null, [])).toEqual(["H0", "H1"]);
    const kv = parseEntry({ data: f32Bytes([0, 0]), shape: [1, 2], dims: ["layer", "head"], labels: { head: ["KV0", "KV1"] } });
    expect(axisLabels("head", 2, kv, [])).toEqual(["KV0", "KV1"]);
    expect(componentLabel(["layer", "head"], [3, 1], kv)).toBe("L3KV1");
    expect(componentLabel(["layer", "pos", "head"], [3, 0, 2], null)).toBe("L3H2");
    expect(componentLabel(["layer", "pos"], [3, 0], null)).toBe("L3");
  });

  it("fills the hook pattern of a cell", () => {
    expect(cellHook("blocks.{layer}.attn.hook_z", ["layer", "head"], [4, 1])).toBe("blocks.4.attn.hook_z");
    expect(cellHook("blocks.{layer}.hook_resid_pre | blocks.{layer}.hook_attn_out", ["patch_type", "layer", "pos"], [0, 2, 1])).toBe(
      "blocks.2.hook_resid_pre | blocks.2.hook_attn_out",
    );
    expect(cellHook("blocks.{layer}.{x}", ["layer"], [1])).toBe("blocks.1.{x}");
  });

  it("marks differing tokens: per position, or the differing middle when lengths differ", () => {
    expect(diffMasks(["a", "b", "c"], ["a", "x", "c"])).toEqual([
      [false, true, false],
      [false, true, false],
    ]);
    expect(diffMasks(["a", "b", "c"], ["a", "x", "y", "c"])).toEqual([
      [false, true, false],
      [false, true, true, false],
    ]);
    expect(diffMasks(["a"], ["a", "b"])).toEqual([[false], [false, true]]);
  });

  it("formats and sizes", () => {
    expect(recovered(1, 3, -1)).toBe(0.5);
    expect(recovered(1, 2, 2)).toBeNaN();
    expect(fmtCell(0.123)).toBe("0.12");
    expect(fmtCell(-12.34)).toBe("-12.3");
    expect(fmtCell(123.4)).toBe("123");
    expect(cellSize(2, 5, 0)).toEqual({ w: 48, h: 30 });
    expect(cellSize(30, 42, 800).w).toBe(Math.floor((800 - 48 - 24) / 42) - 1);
    expect(cellSize(30, 42, 800).h).toBe(14);
    expect(cellSize(12, 500, 800).w).toBe(6);
    expect(metricLabel("normalized")).toContain("0 = corrupted");
    expect(svgSize('<svg xmlns="x" width="120.5" height="40" viewBox="0 0 1 1">')).toEqual({ width: 120.5, height: 40 });
  });
});
