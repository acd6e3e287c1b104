import { describe, expect, it } from "vitest";
import {
  MISSING,
  RAMPS,
  contrastText,
  diverging,
  extent,
  gradientCss,
  interpolate,
  maxAbs,
  parseHex,
  rgbCss,
  sequential,
} from "../lib/colors";

describe("sequential scale", () => {
  it("maps the domain ends to the ramp ends and clamps outside", () => {
    for (const theme of ["light", "dark"] as const) {
      const s = sequential(theme);
      const stops = RAMPS.blues[theme].map(parseHex);
      expect(s.rgb(0)).toEqual(stops[0]);
      expect(s.rgb(1)).toEqual(stops[stops.length - 1]);
      expect(s.rgb(-5)).toEqual(stops[0]);
      expect(s.rgb(7)).toEqual(stops[stops.length - 1]);
      expect(s.rgb(0.5)).toEqual(stops[2]);
    }
  });

  it("is monotonic in lightness (light: darker with value; dark: brighter)", () => {
    const lum = ([r, g, b]: number[]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;
    const light = sequential("light");
    const dark = sequential("dark");
    let prevL = Infinity;
    let prevD = -Infinity;
    for (let v = 0; v <= 1.0001; v += 0.05) {
      const l = lum(light.rgb(v));
      const d = lum(dark.rgb(v));
      expect(l).toBeLessThanOrEqual(prevL + 1e-9);
      expect(d).toBeGreaterThanOrEqual(prevD - 1e-9);
      prevL = l;
      prevD = d;
    }
  });

  it("uses a custom domain and ramp", () => {
    const s = sequential("light", [2, 4], "oranges");
    expect(s.rgb(2)).toEqual(parseHex(RAMPS.oranges.light[0]));
    expect(s.rgb(4)).toEqual(parseHex(RAMPS.oranges.light[4]));
    expect(s.domain).toEqual([2, 4]);
  });

  it("has a 256-entry LUT matching rgb() and a NaN index of -1", () => {
    const s = sequential("dark");
    expect(s.lut.length).toBe(1024);
    const i = s.lutIndex(0.25);
    expect(i).toBe(Math.round(0.25 * 255));
    const c = s.rgb(i / 255);
    expect([s.lut[i * 4], s.lut[i * 4 + 1], s.lut[i * 4 + 2], s.lut[i * 4 + 3]]).toEqual([...c, 255]);
    expect(s.lutIndex(NaN)).toBe(-1);
    expect(s.lutIndex(-1)).toBe(0);
    expect(s.lutIndex(9)).toBe(255);
  });

  it("shows NaN in the theme's missing colour", () => {
    expect(sequential("light").rgb(NaN)).toEqual(MISSING.light);
    expect(sequential("dark").rgb(NaN)).toEqual(MISSING.dark);
  });
});

describe("diverging scale", () => {
  it("is centred on zero and symmetric in its domain", () => {
    for (const theme of ["light", "dark"] as const) {
      const s = diverging(theme, 2);
      const stops = RAMPS.rdbu[theme].map(parseHex);
      expect(s.domain).toEqual([-2, 2]);
      expect(s.rgb(0)).toEqual(stops[2]);
      expect(s.rgb(-2)).toEqual(stops[0]);
      expect(s.rgb(2)).toEqual(stops[4]);
      expect(s.rgb(-100)).toEqual(stops[0]);
      expect(s.lutIndex(0)).toBe(128);
    }
  });

  it("negative is red, positive is blue", () => {
    const s = diverging("light", 1);
    const [r1, , b1] = s.rgb(-1);
    const [r2, , b2] = s.rgb(1);
    expect(r1).toBeGreaterThan(b1);
    expect(b2).toBeGreaterThan(r2);
  });

  it("falls back to a unit domain for a zero or bad max", () => {
    expect(diverging("light", 0).domain).toEqual([-1, 1]);
    expect(diverging("light", NaN).domain).toEqual([-1, 1]);
  });

  it("light and dark variants differ where the background shows", () => {
    expect(diverging("light").rgb(0)).not.toEqual(diverging("dark").rgb(0));
    expect(sequential("light").rgb(0)).not.toEqual(sequential("dark").rgb(0));
  });
});

describe("helpers", () => {
  it("parse, format and interpolate colours", () => {
    expect(parseHex("#ff8000")).toEqual([255, 128, 0]);
    expect(parseHex("#fff")).toEqual([255, 255, 255]);
    expect(rgbCss([1, 2, 3])).toBe("rgb(1,2,3)");
    expect(interpolate([[0, 0, 0], [100, 200, 50]], 0.5)).toEqual([50, 100, 25]);
  });

  it("extent and maxAbs skip non-finite values", () => {
    expect(extent([3, -1, NaN, 2, Infinity])).toEqual([-1, 3]);
    expect(extent([])).toEqual([0, 0]);
    expect(maxAbs([-3, 2])).toBe(3);
  });

  it("picks readable text", () => {
    expect(contrastText([255, 255, 255])).toBe("#000000");
    expect(contrastText([8, 48, 107])).toBe("#ffffff");
  });

  it("makes a CSS gradient", () => {
    expect(gradientCss(sequential("light"))).toMatch(/^linear-gradient\(to right, rgb\(247,251,255\) 0\.0%/);
  });
});
