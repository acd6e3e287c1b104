// Colour scales: value -> rgb. Colour-blind-friendly ramps (single-hue lightness ramps for
// sequential data; ColorBrewer RdBu-style for diverging data), each with a light and a dark
// variant so that "nothing" is close to the page background in both themes.

export type Theme = "light" | "dark";
export type RGB = [number, number, number];

export interface ColorScale {
  kind: "sequential" | "diverging";
  theme: Theme;
  /** [min, max]; diverging scales are symmetric: [-m, m] with 0 in the middle. */
  domain: [number, number];
  rgb(v: number): RGB;
  css(v: number): string;
  /** 256 RGBA entries for fast pixel fills: index with `lutIndex(v)`. */
  lut: Uint8ClampedArray;
  lutIndex(v: number): number;
}

/** Named ramps: stops from low to high (sequential) or negative -> zero -> positive (diverging). */
export const RAMPS = {
  // ColorBrewer Blues (light) and a blue-cyan lightness ramp from near-black (dark): attention, probabilities.
  blues: {
    light: ["#f7fbff", "#c6dbef", "#6baed6", "#2171b5", "#08306b"],
    dark: ["#15181e", "#153a5c", "#1f6fa3", "#4fb0d8", "#d2f1ff"],
  },
  // ColorBrewer Oranges and a dark counterpart: emphasis that must not be confused with blues (head scores).
  oranges: {
    light: ["#fff5eb", "#fdd0a2", "#fd8d3c", "#d94801", "#7f2704"],
    dark: ["#221a14", "#5c2f10", "#a14d12", "#eb8a2e", "#ffd9a8"],
  },
  // ColorBrewer RdBu, negative red and positive blue (TransformerLens's habit); zero = background-ish.
  rdbu: {
    light: ["#b2182b", "#ef8a62", "#f7f7f7", "#67a9cf", "#2166ac"],
    dark: ["#f4846a", "#a3402f", "#26282e", "#2b6f9e", "#7cc0f0"],
  },
} satisfies Record<string, Record<Theme, string[]>>;

export type RampName = keyof typeof RAMPS;

/** NaN / missing values. */
export const MISSING: Record<Theme, RGB> = { light: [204, 204, 204], dark: [72, 72, 78] };

export function parseHex(hex: string): RGB {
  const h = hex.replace("#", "");
  const full = h.length === 3 ? h.split("").map((c) => c + c).join("") : h;
  const n = parseInt(full, 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

export function rgbCss([r, g, b]: RGB): string {
  return `rgb(${r},${g},${b})`;
}

/** Relative luminance (sRGB, WCAG). */
export function luminance([r, g, b]: RGB): number {
  const lin = (c: number) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/** Black or white, whichever reads better on `bg`. */
export function contrastText(bg: RGB): string {
  return luminance(bg) > 0.25 ? "#000000" : "#ffffff";
}

/** Piecewise-linear interpolation through `stops` at t in [0, 1] (clamped). */
export function interpolate(stops: RGB[], t: number): RGB {
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const a = stops[i];
  const b = stops[i + 1];
  return [
    Math.round(a[0] + (b[0] - a[0]) * f),
    Math.round(a[1] + (b[1] - a[1]) * f),
    Math.round(a[2] + (b[2] - a[2]) * f),
  ];
}

function makeScale(kind: ColorScale["kind"], ramp: RampName, theme: Theme, domain: [number, number]): ColorScale {
  const stops = RAMPS[ramp][theme].map(parseHex);
  const [lo, hi] = domain;
  const span = hi - lo;
  const t = (v: number) => (span > 0 ? (v - lo) / span : kind === "diverging" ? 0.5 : v > lo ? 1 : 0);
  const missing = MISSING[theme];
  const lut = new Uint8ClampedArray(256 * 4);
  for (let i = 0; i < 256; i++) {
    const c = interpolate(stops, i / 255);
    lut.set([c[0], c[1], c[2], 255], i * 4);
  }
  const rgb = (v: number): RGB => (Number.isFinite(v) || Math.abs(v) === Infinity ? interpolate(stops, t(v)) : [...missing]);
  return {
    kind,
    theme,
    domain: [lo, hi],
    rgb,
    css: (v) => rgbCss(rgb(v)),
    lut,
    lutIndex: (v) => {
      if (v !== v) return -1; // NaN
      const i = Math.round(t(v) * 255);
      return i < 0 ? 0 : i > 255 ? 255 : i;
    },
  };
}

/** Sequential scale over [lo, hi] (default [0, 1]: attention weights, probabilities). */
export function sequential(theme: Theme, domain: [number, number] = [0, 1], ramp: RampName = "blues"): ColorScale {
  return makeScale("sequential", ramp, theme, domain);
}

/** Diverging scale centred on zero over [-maxAbs, maxAbs] (patching effects, logit deltas). */
export function diverging(theme: Theme, maxAbs = 1): ColorScale {
  const m = Number.isFinite(maxAbs) && maxAbs > 0 ? maxAbs : 1;
  return makeScale("diverging", "rdbu", theme, [-m, m]);
}

/** Finite min and max of values ([0, 0] when there are none). */
export function extent(values: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : [0, 0];
}

/** Largest finite |value| (for a diverging domain). */
export function maxAbs(values: ArrayLike<number>): number {
  const [lo, hi] = extent(values);
  return Math.max(Math.abs(lo), Math.abs(hi));
}

/** A CSS linear-gradient of the scale, for legends. */
export function gradientCss(scale: ColorScale, direction = "to right"): string {
  const n = 9;
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const v = scale.domain[0] + ((scale.domain[1] - scale.domain[0]) * i) / (n - 1);
    parts.push(`${scale.css(v)} ${((100 * i) / (n - 1)).toFixed(1)}%`);
  }
  return `linear-gradient(${direction}, ${parts.join(", ")})`;
}
