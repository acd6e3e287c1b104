// Prompt datasets, recovery shading and top components in the PatchingHeatmap view.
import { describe, expect, it } from "vitest";
import view, { metricLabel, otherMetric } from "../patching";
import { boxValue, inputArgs, parsePerPrompt, perPromptTable } from "../patching/pairs";
import { TopList, parseTop, topText } from "../patching/top";
import { FakeModel, last, tick, viewHarness } from "./helpers";
import { CELL_RESULT, traits } from "./patching_fixtures";

const ui = viewHarness(view);
const { mount, tid, all } = ui;
const frame = () => new Promise<void>((r) => requestAnimationFrame(() => r())).then(tick);

const PAIRS = [
  { clean: "When Mary and John went", corrupted: "When Mary and John came", answer: " Mary", wrong: " John", clean_logit_diff: 3.25, corrupted_logit_diff: -1.5 },
  { clean: "<b>When Tom and Ann</b>", corrupted: "When Tom and Ann left", answer: " Tom", wrong: " Ann", clean_logit_diff: 2.75, corrupted_logit_diff: -2.25 },
];
const TOP = {
  attn_head_out_all_pos: [
    { index: [1, 2], label: "L1H2", hook: "blocks.1.attn.hook_z", recovery: 0.8671, logit_diff: 2.1, value: 0.8671, source: "exact" },
    { index: [0, 1], label: "L0H1", hook: "blocks.0.attn.hook_z", recovery: -0.25, logit_diff: -3.0, value: -0.25, source: "attribution" },
  ],
  resid_pre: [{ index: [1, 3], label: "L1 pos 3 '<img>'", hook: "blocks.1.hook_resid_pre", recovery: 1.0, logit_diff: 3.0, value: 1.0, source: "exact" }],
};

describe("Apply box: one pair per line", () => {
  it("one line is a string, several lines a list (trailing blank lines and \\r dropped)", () => {
    expect(boxValue(" Paris")).toBe(" Paris");
    expect(boxValue("")).toBe("");
    expect(boxValue("a b\r\n c d\n\n")).toEqual(["a b", " c d"]);
    expect(boxValue(" Mary\n\n John")).toEqual([" Mary", "", " John"]); // an empty middle line reaches Python, which names it
    expect(inputArgs("a\nb", "c\nd", " x", " y\n z")).toEqual({ clean: ["a", "b"], corrupted: ["c", "d"], answer: " x", wrong: [" y", " z"] });
  });

  it("the view sends lists for multi-line boxes; Enter in an answer applies, Shift+Enter does not", () => {
    const m = new FakeModel(traits());
    mount(m);
    tid<HTMLTextAreaElement>("lw-clean")!.value = "A B\nC D";
    tid<HTMLTextAreaElement>("lw-corrupted")!.value = "A E\nC F";
    tid<HTMLTextAreaElement>("lw-answer")!.value = " B\n D";
    tid<HTMLTextAreaElement>("lw-wrong")!.value = " E";
    tid("lw-apply")!.click();
    expect(last(m.requests())).toMatchObject({ kind: "set_inputs", args: { clean: ["A B", "C D"], corrupted: ["A E", "C F"], answer: [" B", " D"], wrong: " E" } });
    const n = m.requests().length;
    tid("lw-answer")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", shiftKey: true, bubbles: true }));
    expect(m.requests().length).toBe(n);
    tid("lw-answer")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(m.requests().length).toBe(n + 1);
  });
});

describe("a rejected pair", () => {
  it("names the pair and shows both tokenizations", async () => {
    const m = new FakeModel(traits());
    mount(m);
    tid<HTMLTextAreaElement>("lw-clean")!.value = "a b\nc d\ne f";
    tid<HTMLTextAreaElement>("lw-corrupted")!.value = "a x\nc y\ne f g";
    tid("lw-apply")!.click();
    const id = last(m.requests()).id;
    const details = { pair: 2, clean_tokens: ["<bos>", "e", "f"], corrupted_tokens: ["<bos>", "e", "f", "g"] };
    m.receive({ type: "reply", id, ok: false, error: { kind: "input", message: "In pair 3, the clean prompt is 3 tokens", details } });
    await tick();
    const panel = tid("lw-rejected")!;
    expect(panel.hidden).toBe(false);
    expect(panel.dataset.pair).toBe("2");
    expect(panel.textContent).toContain("the prompts in pair 3 tokenize to 3 and 4 tokens");
    expect(tid("lw-rejected-corrupted")!.querySelectorAll('[data-testid="lw-rejected-token"]').length).toBe(4);
    expect(tid("lw-rejected-clean")!.querySelectorAll('[data-testid="lw-rejected-token"]').length).toBe(3);
    expect(tid("lw-rejected-corrupted")!.querySelectorAll('[data-diff="true"]').length).toBe(1);
  });
});

describe("pairs list and per-pair values", () => {
  it("lists 2+ pairs as text (never HTML) with each pair's logit differences; hides one pair", async () => {
    const m = new FakeModel(traits({ pairs: PAIRS.slice(0, 1) }));
    mount(m);
    expect(tid("lw-pairs")!.hidden).toBe(true);
    m.update({ pairs: PAIRS, clean_prompt: PAIRS.map((p) => p.clean).join("\n") });
    await frame();
    expect(tid("lw-pairs")!.hidden).toBe(false);
    const rows = all("lw-pair");
    expect(rows.length).toBe(2);
    expect(rows[1].querySelector('[data-testid="lw-pair-clean"]')!.textContent).toBe("<b>When Tom and Ann</b>");
    expect(rows[1].querySelector("b")).toBeNull();
    expect(Number(rows[0].querySelector<HTMLElement>('[data-testid="lw-pair-clean-ld"]')!.dataset.value)).toBe(3.25);
    expect(tid("lw-metric-name")!.textContent).toContain("mean over 2 pairs");
    expect(tid<HTMLTextAreaElement>("lw-clean")!.value).toBe("When Mary and John went\n<b>When Tom and Ann</b>");
  });

  it("the cell panel shows each pair's patched, clean and corrupted logit diff and recovery", async () => {
    const per_prompt = { logit_diff: [1.5, 0.25], clean_logit_diff: [3.25, 2.75], corrupted_logit_diff: [-1.5, -2.25], recovery: [0.631, null] };
    const m = new FakeModel(traits({ pairs: PAIRS }));
    mount(m);
    m.update({ cell_result: { ...CELL_RESULT, per_prompt } });
    await frame();
    const rows = all("lw-per-prompt-row");
    expect(rows.length).toBe(2);
    const val = (r: HTMLElement, id: string) => r.querySelector<HTMLElement>(`[data-testid="${id}"]`)!.dataset.value;
    expect([val(rows[0], "lw-pp-patched"), val(rows[0], "lw-pp-clean"), val(rows[0], "lw-pp-corrupted"), val(rows[0], "lw-pp-recovery")]).toEqual(["1.5", "3.25", "-1.5", "0.631"]);
    expect(val(rows[1], "lw-pp-recovery")).toBe("NaN");
    expect(rows[1].title).toContain("When Tom and Ann left");
    // one pair: no table (the panel's values are that pair's)
    expect(perPromptTable({ ...per_prompt, logit_diff: [1], clean_logit_diff: [2], corrupted_logit_diff: [0] }, [])).toBeNull();
    expect(parsePerPrompt({ logit_diff: [1, 2], clean_logit_diff: [1] })).toBeNull();
  });
});

describe("recovery shading", () => {
  it("legend and summary say which metric; the switch flips it in one click", async () => {
    const m = new FakeModel(traits({ metric: "normalized", clean_value: 1, corrupted_value: 0 }));
    mount(m);
    await frame();
    expect(tid("lw-legend-resid_pre")!.textContent).toContain("recovery (0 = corrupted run, 1 = clean run)");
    expect(tid("lw-metric-name")!.textContent).toMatch(/^recovery of logit\(/);
    const sw = tid<HTMLButtonElement>("lw-metric-toggle")!;
    expect(sw.textContent).toBe("show logit diff");
    sw.click();
    expect(m.get("metric")).toBe("logit_diff");
    await frame();
    expect(tid("lw-legend-resid_pre")!.textContent).toContain("logit diff (answer − wrong)");
    expect(tid<HTMLButtonElement>("lw-metric-toggle")!.textContent).toBe("show recovery");
    expect(metricLabel("normalized", 8)).toBe("recovery (0 = corrupted run, 1 = clean run), mean over 8 pairs");
    expect(otherMetric("logit_diff").value).toBe("normalized");
  });
});

describe("top components", () => {
  it("parses rows, dropping malformed ones", () => {
    const rows = parseTop({ s: [TOP.attn_head_out_all_pos[0], { label: "x" }, { index: [-1], label: "y", recovery: 1 }] }, "s");
    expect(rows.map((r) => r.label)).toEqual(["L1H2"]);
    expect(topText(rows[0])).toBe("L1H2: 0.867");
    expect(parseTop(null, "s")).toEqual([]);
  });

  it("draws each site's list beside its card; a row click is a cell click", async () => {
    const m = new FakeModel(traits({ top_components: TOP }));
    mount(m);
    await frame();
    const list = tid("lw-top-attn_head_out_all_pos")!;
    const rows = [...list.querySelectorAll<HTMLButtonElement>('[data-testid="lw-top-component"]')];
    expect(rows.map((r) => r.dataset.label)).toEqual(["L1H2", "L0H1"]);
    expect(rows.map((r) => Number(r.dataset.recovery))).toEqual([0.8671, -0.25]);
    expect(rows[0].querySelector('[data-testid="lw-top-recovery"]')!.textContent).toBe("0.867");
    expect(rows[1].textContent).toContain("attribution");
    expect(tid("lw-top-resid_pre")!.querySelector('[data-testid="lw-top-label"]')!.textContent).toBe("L1 pos 3 '<img>'");
    expect(tid("lw-top-resid_pre")!.querySelector("img")).toBeNull();
    rows[1].click();
    expect(last(m.requests())).toMatchObject({ kind: "patch", args: { site: "attn_head_out_all_pos", index: [0, 1] } });
    await frame();
    expect(tid<HTMLCanvasElement>("lw-heatmap-attn_head_out_all_pos")!.dataset.selected).toBe("0,1");
    expect(rows[1].getAttribute("aria-pressed")).toBe("true");
    // new rows from Python replace the list
    m.update({ top_components: { attn_head_out_all_pos: TOP.attn_head_out_all_pos.slice(0, 1) } });
    await frame();
    expect(list.querySelectorAll('[data-testid="lw-top-component"]').length).toBe(1);
    expect(tid("lw-top-resid_pre")!.hidden).toBe(true);
  });

  it("TopList alone: click reports the row's index", () => {
    const picks: number[][] = [];
    const t = new TopList("s", (_s, i) => picks.push(i));
    document.body.appendChild(t.el);
    t.set(parseTop(TOP, "attn_head_out_all_pos").map((r) => r), null);
    t.el.querySelectorAll<HTMLButtonElement>("button")[0].click();
    expect(picks).toEqual([[1, 2]]);
    t.destroy();
  });
});
