// The resample-ablation box (js/lib/resample.ts) in the attention grid and the logit lens, the
// grid's linked-selection badge, and a clicked DLA contributor sending `pick`.
import { describe, expect, it } from "vitest";
import attention from "../attention";
import logitLens from "../logit_lens";
import { parsePrompts } from "../lib/resample";
import { FakeModel, choose, f16Bytes, f32Bytes, fakePatterns, last, tick, viewHarness } from "./helpers";
import { DETAIL, lensTraits } from "./logit_lens_fixtures";

const [L, H, T] = [2, 3, 4];

function gridTraits(extra: Record<string, unknown> = {}) {
  return {
    prompt: "a b c",
    tokens: ["<bos>", "a", "b", "c"],
    n_layers: L,
    n_heads: H,
    patterns: f16Bytes(fakePatterns(L, H, T)),
    patterns_meta: { dtype: "f16", shape: [L, H, T, T], scale: 1, offset: 0 },
    scores: f32Bytes(new Float32Array(5 * L * H)),
    score_names: ["previous_token", "induction", "duplicate_token", "first_token", "entropy"],
    color_by: "induction",
    focus: [1, 2],
    ablation_mode: "zero",
    resample_prompts: [],
    linked: {},
    last_result: {},
    error: {},
    busy: "",
    theme: "auto",
    ...extra,
  };
}

describe("parsePrompts", () => {
  it("keeps one prompt per non-empty line, spaces inside kept", () => {
    expect(parsePrompts(" the dog ran\r\n\n  \na man came ")).toEqual([" the dog ran", "a man came "]);
    expect(parsePrompts("")).toEqual([]);
  });
});

describe("attention grid: resample mode", () => {
  const ui = viewHarness(attention);

  it("shows the box only for resample, writes the typed prompts before the ablate request", async () => {
    const m = new FakeModel(gridTraits());
    ui.mount(m);
    const field = ui.tid("lw-resample")!;
    expect(field.hidden).toBe(true);
    choose(ui.tid<HTMLSelectElement>("lw-mode")!, "resample");
    expect(m.get("ablation_mode")).toBe("resample");
    expect(field.hidden).toBe(false);
    const box = ui.tid<HTMLTextAreaElement>("lw-resample-prompts")!;
    await tick();
    box.value = "x y z\nu v w";
    ui.tid<HTMLButtonElement>("lw-ablate")!.click(); // typed, not yet committed: Ablate commits it first
    expect(m.get("resample_prompts")).toEqual(["x y z", "u v w"]);
    expect(last(m.requests())).toMatchObject({ kind: "ablate", args: { layer: 1, head: 2, mode: "resample" } });
    // leaving the box (change) writes the trait too
    box.value = "only one";
    box.dispatchEvent(new Event("change", { bubbles: true }));
    expect(m.get("resample_prompts")).toEqual(["only one"]);
    await tick();
    expect(box.value).toBe("only one");
  });

  it("draws the prompts from Python and the linked selection as text", async () => {
    const m = new FakeModel(gridTraits({ ablation_mode: "resample", resample_prompts: ["p q r"] }));
    ui.mount(m);
    expect(ui.tid<HTMLTextAreaElement>("lw-resample-prompts")!.value).toBe("p q r");
    m.update({ linked: { label: "L1H2", source: "<b>PatchingHeatmap</b>" } });
    await tick();
    const badge = ui.tid("lw-linked")!;
    expect(badge.dataset.label).toBe("L1H2");
    expect(badge.textContent).toBe("Selected L1H2 (<b>PatchingHeatmap</b>)");
    expect(badge.querySelector("b")).toBeNull();
  });
});

describe("logit lens: ablation mode and picking a contributor", () => {
  const ui = viewHarness(logitLens);

  it("sends the mode with ablate, and pick {component} for a contributor's row", () => {
    const m = new FakeModel(lensTraits(4, 6, 5, { cell_detail: DETAIL, target: 1, target_text: " Paris", ablation_mode: "zero", resample_prompts: [] }));
    ui.mount(m);
    choose(ui.tid<HTMLSelectElement>("lw-mode")!, "mean");
    expect(m.get("ablation_mode")).toBe("mean");
    expect(ui.tid("lw-resample")!.hidden).toBe(true);
    ui.all("lw-dla-ablate").find((b) => b.dataset.label === "mlp1")!.click();
    expect(last(m.requests())).toMatchObject({ kind: "ablate", args: { component: "mlp1", mode: "mean" } });
    m.receive({ type: "reply", id: last(m.requests()).id, ok: true, result: {} });
    const row = ui.all("lw-dla-row").find((r) => r.dataset.label === "L1H3")!;
    (row.firstChild as HTMLElement).click();
    expect(last(m.requests())).toMatchObject({ kind: "pick", args: { component: "L1H3" } });
    const n = m.requests().length;
    ui.all("lw-dla-row").find((r) => !/^(L\d+H\d+|mlp\d+)$/.test(r.dataset.label ?? ""))?.click();
    expect(m.requests().length).toBe(n); // embeddings and biases are not components to select
  });
});
