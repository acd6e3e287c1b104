// The PatchingHeatmap's settings as the view names them: the two directions and two metrics with
// their select labels, the legend text of a metric, the one-click switch to the other metric, and
// the parsing of the `selected` trait. Pure, no DOM.

export const DIRECTIONS: Array<[string, string]> = [
  ["denoise", "denoise: clean → corrupted run"],
  ["noise", "noise: corrupted → clean run"],
];

export const METRICS: Array<[string, string]> = [
  ["normalized", "recovery (0 = corrupted, 1 = clean)"],
  ["logit_diff", "logit diff (answer − wrong)"],
];

/** Legend text for a metric; `pairs` > 1 says it is the mean over the pairs. */
export function metricLabel(metric: string, pairs = 1): string {
  const what = metric === "normalized" ? "recovery (0 = corrupted run, 1 = clean run)" : "logit diff (answer − wrong)";
  return pairs > 1 ? `${what}, mean over ${pairs} pairs` : what;
}

/** The switch's text: the other metric, one click away. */
export function otherMetric(metric: string): { value: string; text: string } {
  return metric === "normalized" ? { value: "logit_diff", text: "show logit diff" } : { value: "normalized", text: "show recovery" };
}

/** Parse the `selected` trait: {site, index} or null. */
export function parseSelected(x: unknown): { site: string; index: number[] } | null {
  if (!x || typeof x !== "object" || Array.isArray(x)) return null;
  const s = x as { site?: unknown; index?: unknown };
  if (typeof s.site !== "string" || !Array.isArray(s.index)) return null;
  const index = s.index.map(Number);
  return index.every((v) => Number.isInteger(v) && v >= 0) ? { site: s.site, index } : null;
}
