// Fake PatchingHeatmap traits for the view tests: 2 layers, 5 tokens, 3 heads; a layer x pos site
// (resid_pre), a layer x head site (attn_head_out_all_pos) and a layer x pos x head site.

import { f32Bytes } from "./helpers";

export const L = 2;
export const H = 3;
export const CLEAN = ["<bos>", " When", " Mary", "<img src=x onerror=alert(1)>", " John"];
export const CORRUPTED = ["<bos>", " When", " Anna", "<img src=x onerror=alert(1)>", " John"];
export const T = CLEAN.length;

/** Deterministic values with both signs. */
export function values(n: number, seed = 0): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round((((i * 7 + seed * 3) % 11) - 5) * 37 + i) / 100;
  return out;
}

export function entry(site: string, data: Float32Array, extra: Record<string, unknown> = {}) {
  const geometry: Record<string, { shape: number[]; dims: string[]; hook: string }> = {
    resid_pre: { shape: [L, T], dims: ["layer", "pos"], hook: "blocks.{layer}.hook_resid_pre" },
    attn_head_out_all_pos: { shape: [L, H], dims: ["layer", "head"], hook: "blocks.{layer}.attn.hook_z" },
    attn_head_out_by_pos: { shape: [L, T, H], dims: ["layer", "pos", "head"], hook: "blocks.{layer}.attn.hook_z" },
  };
  const g = geometry[site];
  const n = g.shape.reduce((a, b) => a * b, 1);
  let done = 0;
  for (const v of data) if (Number.isFinite(v)) done++;
  return { data: f32Bytes(data), ...g, partial: false, done, total: n, ...extra };
}

export const ATTR = {
  resid_pre: values(L * T, 1),
  attn_head_out_all_pos: values(L * H, 2),
  attn_head_out_by_pos: values(L * T * H, 3),
};

/** Exact = attribution + a deterministic perturbation. */
export function exactOf(a: Float32Array, k = 0.2): Float32Array {
  return a.map((v, i) => v + k * Math.sin(i + 1));
}

export const PATTERN = (() => {
  const p = new Float32Array(T * T);
  for (let q = 0; q < T; q++) for (let k = 0; k <= q; k++) p[q * T + k] = 1 / (q + 1);
  return p;
})();

export const CELL_RESULT = {
  site: "attn_head_out_all_pos",
  index: [1, 2],
  label: "blocks.1.attn.hook_z L1H2",
  hook: "blocks.1.attn.hook_z",
  value: 1.23456789,
  clean_value: 3.6001,
  corrupted_value: -4.5,
  exact: 1.23456789,
  attribution: 0.98123,
  top_before: [
    { token: " Rome", id: 1, prob: 0.4 },
    { token: "<b>", id: 2, prob: 0.0525 },
  ],
  top_after: [
    { token: " Paris", id: 3, prob: 0.61 },
    { token: " Rome", id: 1, prob: 0.2 },
  ],
  head: {
    layer: 1,
    head: 2,
    label: "L1H2",
    tokens: CLEAN,
    clean_pattern: f32Bytes(PATTERN),
    corrupted_pattern: f32Bytes(PATTERN.map((v) => v * 0.5)),
    shape: [T, T],
  },
};

export function traits(extra: Record<string, unknown> = {}) {
  return {
    clean_prompt: "When Mary and John",
    corrupted_prompt: "When Anna and John",
    answer: " Mary",
    wrong: " John",
    clean_tokens: CLEAN,
    corrupted_tokens: CORRUPTED,
    n_layers: L,
    n_heads: H,
    sites: ["resid_pre", "attn_head_out_all_pos"],
    available_sites: ["resid_pre", "attn_out", "attn_head_out_all_pos", "attn_head_out_by_pos"],
    direction: "denoise",
    metric: "logit_diff",
    clean_value: 3.6001234,
    corrupted_value: -4.4999,
    attribution: {
      resid_pre: entry("resid_pre", ATTR.resid_pre),
      attn_head_out_all_pos: entry("attn_head_out_all_pos", ATTR.attn_head_out_all_pos),
    },
    exact: {},
    sweep_state: "idle",
    selected: {},
    cell_result: {},
    error: {},
    busy: "",
    theme: "light",
    ...extra,
  };
}
