import { describe, expect, it } from "vitest";
import { decodeTensor, f16ToF32, f16ToNumber, hasTensor, numel } from "../lib/buffers";
import { f16Bytes, toF16Bits } from "./helpers";

// Known IEEE-754 binary16 bit patterns and their values.
const KNOWN: Array<[number, number]> = [
  [0x0000, 0],
  [0x3c00, 1],
  [0x3800, 0.5],
  [0x7bff, 65504],
  [0x0001, 2 ** -24], // smallest subnormal, 5.960464477539063e-8
  [0x03ff, 1023 * 2 ** -24], // largest subnormal
  [0x0400, 2 ** -14], // smallest normal
  [0x8001, -(2 ** -24)], // negative subnormal
  [0xc000, -2],
  [0xbc00, -1],
  [0xfbff, -65504],
  [0x3555, 0.333251953125],
  [0x3bff, 0.99951171875],
  [0x7c00, Infinity],
  [0xfc00, -Infinity],
];

function bytesOf(bits: number[]): Uint8Array {
  return new Uint8Array(new Uint16Array(bits).buffer);
}

describe("float16 decoding", () => {
  it("decodes known bit patterns exactly", () => {
    const t = decodeTensor(bytesOf(KNOWN.map(([b]) => b)), { dtype: "f16", shape: [KNOWN.length] });
    KNOWN.forEach(([bits, v], i) => {
      expect(t.data[i], `0x${bits.toString(16)}`).toBe(v);
      expect(f16ToNumber(bits)).toBe(v);
    });
  });

  it("keeps the sign of zero and decodes NaN", () => {
    const t = decodeTensor(bytesOf([0x8000, 0x7e00, 0xfe01]), { dtype: "f16", shape: [3] });
    expect(Object.is(t.data[0], -0)).toBe(true);
    expect(Number.isNaN(t.data[1])).toBe(true);
    expect(Number.isNaN(t.data[2])).toBe(true);
  });

  it("agrees with the reference decoder on all 65536 bit patterns", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const out = f16ToF32(all);
    const bad: number[] = [];
    for (let i = 0; i < 65536; i++) {
      const ref = f16ToNumber(i);
      const ok = Number.isNaN(ref) ? Number.isNaN(out[i]) : Object.is(out[i], ref);
      if (!ok) bad.push(i);
    }
    expect(bad).toEqual([]);
  });

  it("round-trips through the test encoder", () => {
    const vals = [0, 1, -1, 0.5, 0.1, 1e-5, 65504, -3.140625, 2 ** -20];
    const t = decodeTensor(f16Bytes(vals), { dtype: "f16", shape: [vals.length] });
    vals.forEach((v, i) => expect(toF16Bits(t.data[i])).toBe(toF16Bits(v)));
  });

  it("accepts a DataView with an odd byte offset (copies to align)", () => {
    const buf = new Uint8Array(7);
    buf.set(bytesOf([0x3c00, 0x3800, 0xc000]), 1);
    const t = decodeTensor(new DataView(buf.buffer, 1, 6), { dtype: "f16", shape: [3] });
    expect(Array.from(t.data)).toEqual([1, 0.5, -2]);
  });
});

describe("decodeTensor", () => {
  it("decodes f32 as a view with the given shape", () => {
    const src = new Float32Array([1.5, -2, 3.25, 0, 7, 8]);
    const t = decodeTensor(new DataView(src.buffer), { dtype: "f32", shape: [2, 3] });
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(t.data)).toEqual([1.5, -2, 3.25, 0, 7, 8]);
  });

  it("decodes u8 as offset + scale * byte", () => {
    const t = decodeTensor(new Uint8Array([0, 1, 128, 255]), { dtype: "u8", shape: [4], scale: 1 / 255, offset: 0 });
    expect(t.data[0]).toBe(0);
    expect(t.data[1]).toBeCloseTo(1 / 255, 7);
    expect(t.data[2]).toBeCloseTo(128 / 255, 7);
    expect(t.data[3]).toBeCloseTo(1, 7);
    const t2 = decodeTensor(new Uint8Array([0, 10, 255]).buffer, { dtype: "u8", shape: [3], scale: 0.5, offset: -2 });
    expect(Array.from(t2.data)).toEqual([-2, 3, 125.5]);
  });

  it("defaults u8 scale to 1 and offset to 0", () => {
    const t = decodeTensor(new Uint8Array([3, 200]), { dtype: "u8", shape: [2] });
    expect(Array.from(t.data)).toEqual([3, 200]);
  });

  it("rejects a byte count that does not match the shape", () => {
    expect(() => decodeTensor(new Uint8Array(6), { dtype: "f16", shape: [2, 2] })).toThrow(/needs 8 bytes, got 6/);
    expect(() => decodeTensor(new Uint8Array(4), { dtype: "f32", shape: [2] })).toThrow(/needs 8 bytes/);
  });

  it("rejects unknown dtypes and bad shapes", () => {
    expect(() => decodeTensor(new Uint8Array(4), { dtype: "f64" as never, shape: [1] })).toThrow(/unknown dtype/);
    expect(() => decodeTensor(new Uint8Array(4), { dtype: "u8", shape: [-4] })).toThrow(/bad shape/);
  });

  it("handles empty and scalar shapes", () => {
    expect(decodeTensor(new Uint8Array(0), { dtype: "f16", shape: [0, 3] }).data.length).toBe(0);
    expect(Array.from(decodeTensor(new Uint8Array(bytesOf([0x3c00])), { dtype: "f16", shape: [] }).data)).toEqual([1]);
    expect(numel([2, 3, 4])).toBe(24);
    expect(numel([])).toBe(1);
  });

  it("hasTensor is false for the empty initial state", () => {
    expect(hasTensor(new DataView(new ArrayBuffer(0)), {})).toBe(false);
    expect(hasTensor(null, { dtype: "f16" })).toBe(false);
    expect(hasTensor(new DataView(new ArrayBuffer(2)), { dtype: "f16", shape: [1] })).toBe(true);
  });
});
