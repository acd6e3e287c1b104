import { describe, expect, it } from "vitest";
import view from "../circuit";
import { decodeTopEdges, parseEdge, prune, sizeError, sizeFromInput } from "../circuit/data";
import { curvePath, edgeWidth, endpoints, layout } from "../circuit/graph";
import { decodeOverlay, haloStyle } from "../circuit/overlay";
import { FakeModel, choose, f32Bytes, last, tick, viewHarness } from "./helpers";

const ui = viewHarness(view);
const { mount, tid, all, exportSvg } = ui;
const frame = () => new Promise<void>((r) => requestAnimationFrame(() => r())).then(tick);

// The same edge lists as tests/test_circuit_widget.py::test_prune_matches_the_view (most |score| first).
export const EDGES: Array<[string, number]> = [
  ["L1H2->logits", 2.0],
  ["L0H1->L1H2.k", 1.5],
  ["embed->L1H2.q", -0.8],
  ["embed->L0H1.v", 0.6],
  ["L0H3->L1H0.q", 0.5],
  ["embed->logits", -0.3],
  ["L1H0->logits", 0.2],
  ["embed->L0H3.q", 0.15],
];
const GQA: Array<[string, number]> = [
  ["L1H3->logits", 1.0],
  ["L0H0->L1KV1.k", 0.9],
  ["L0H1->L1KV0.v", 0.8],
  ["embed->L0H0.q", 0.7],
];

const parse = (list: Array<[string, number]>, H = 4, kv = 4) => list.map(([l, s]) => parseEdge(l, s, H, kv)!);

function traits(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    error: {}, busy: "", theme: "light",
    clean_prompt: "red fish blue ship red fish blue", corrupted_prompt: "red fish blue moon red fish blue",
    answer: "ship", wrong: "moon", clean_tokens: [], corrupted_tokens: [],
    n_layers: 2, n_heads: 4, n_kv_heads: 4, has_mlp: false, n_edges: 81, method: "eap-ig", steps: 5,
    clean_value: 3, corrupted_value: -1,
    edges: { labels: EDGES.map((e) => e[0]), scores: f32Bytes(EDGES.map((e) => e[1])), n: EDGES.length, n_edges: 81, max_abs: 2, method: "eap-ig" },
    node_scores: { labels: ["embed", "L0H1", "L0H3", "L1H0", "L1H2"], scores: f32Bytes([0.1, 1.5, 0.5, 0.2, 2.0]) },
    curve: { fractions: [0.1, 1, 10, 100], sizes: [1, 1, 8, 81], faithfulness: [0.2, 0.2, 0.9, 1], random: [0, 0, 0.1, 1], m_full: 3, m_empty: -1, auc: 0.7, auc_random: 0.2 },
    size: 5,
    current: { size: 5, n_edges: 81, faithfulness: 0.75, metric: 2, removed: [], clean_value: 3, corrupted_value: -1 },
    selected: {}, edge_result: {}, node_result: {}, removed: [], score_state: "done",
    ...over,
  };
}

describe("circuit data", () => {
  it("parses edge labels: head ports, key/value groups, MLPs, logits; junk is null", () => {
    expect(parseEdge("L0H1->L1H2.k", 1, 4, 4)).toMatchObject({ up: "L0H1", down: "L1H2", port: "k", targets: ["L1H2"] });
    expect(parseEdge("L0H0->L1KV1.v", 1, 4, 2)).toMatchObject({ down: "L1KV1", port: "v", targets: ["L1H2", "L1H3"] });
    expect(parseEdge("embed->mlp0", 1, 4, 4)).toMatchObject({ down: "mlp0", port: "", targets: ["mlp0"] });
    for (const junk of ["logits->L0H0.q", "L0H1->L1H2", "L0H1L1H2.q", "x->logits", "L0H1->L1H2.z"]) expect(parseEdge(junk, 1, 4, 4)).toBeNull();
  });

  it("prunes to the nodes with a path to logits (as Python does)", () => {
    const five = prune(parse(EDGES).slice(0, 5));
    expect(five.edges.map((e) => e.label)).toEqual(["L1H2->logits", "L0H1->L1H2.k", "embed->L1H2.q", "embed->L0H1.v"]);
    expect(five.nodes).toEqual(["embed", "L0H1", "L1H2", "logits"]);
    expect(five.pruned).toBe(1);
    const seven = prune(parse(EDGES).slice(0, 7)); // L0H3 is reached from nothing yet
    expect(seven.pruned).toBe(2);
    expect(seven.nodes).toEqual(["embed", "L0H1", "L1H2", "logits"]);
    const all8 = prune(parse(EDGES));
    expect(all8.pruned).toBe(0);
    expect(all8.nodes).toEqual(["embed", "L0H1", "L0H3", "L1H0", "L1H2", "logits"]);
    const g = prune(parse(GQA, 4, 2));
    expect(g.edges.map((e) => e.label)).toEqual(["L1H3->logits", "L0H0->L1KV1.k", "embed->L0H0.q"]);
    expect(g.nodes).toEqual(["embed", "L0H0", "L1H3", "logits"]);
  });

  it("sizes from a count or a percentage, and says why a size is bad", () => {
    expect(sizeFromInput(10, "%", 81)).toBe(8);
    expect(sizeFromInput(0.01, "%", 81)).toBe(1);
    expect(sizeFromInput(7, "edges", 81)).toBe(7);
    expect(sizeError(0, 81)).toMatch(/between 1 and 81/);
    expect(sizeError(82, 81)).toMatch(/between 1 and 81/);
    expect(sizeError(NaN, 81)).toMatch(/number/);
    expect(sizeError(81, 81)).toBe("");
  });

  it("decodes the top edges; a label that is not an edge throws", () => {
    const t = decodeTopEdges(traits().edges, 4, 4);
    t.edges.forEach((e, i) => expect(e.score).toBeCloseTo(EDGES[i][1], 6));
    expect(() => decodeTopEdges({ labels: ["nope"], scores: f32Bytes([1]) }, 4, 4)).toThrow(/not an edge/);
  });

  it("lays out logits above every layer and embed below; q/k/v ports side by side; curves pass their bbox centre", () => {
    const lay = layout({ nLayers: 2, nHeads: 4, hasMlp: true, width: 600, nodes: ["embed", "L0H1", "L1H2", "mlp1", "logits"] });
    const y = (n: string) => lay.pos.get(n)!.y;
    expect(y("logits")).toBeLessThan(y("mlp1"));
    expect(y("mlp1")).toBeLessThan(y("L1H2"));
    expect(y("L1H2")).toBeLessThan(y("L0H1"));
    expect(y("L0H1")).toBeLessThan(y("embed"));
    const [, q] = endpoints(parseEdge("L0H1->L1H2.q", 1, 4, 4)!, lay);
    const [, k] = endpoints(parseEdge("L0H1->L1H2.k", 1, 4, 4)!, lay);
    const [, v] = endpoints(parseEdge("L0H1->L1H2.v", 1, 4, 4)!, lay);
    expect(q.x).toBeLessThan(k.x);
    expect(k.x).toBeLessThan(v.x);
    expect(curvePath({ x: 0, y: 100 }, { x: 50, y: 0 })).toBe("M0,100 C0,50 50,50 50,0");
    expect(edgeWidth(2, 2)).toBe(7);
    expect(edgeWidth(0, 2)).toBe(1);
  });
});

describe("CircuitGraph view", () => {
  it("draws only the pruned circuit of the current size, nodes shaded by score", () => {
    mount(new FakeModel(traits()));
    const edges = all("lw-ci-graph")[0].querySelectorAll("[data-edge]");
    expect([...edges].map((e) => e.getAttribute("data-edge")).sort()).toEqual(
      ["L1H2->logits", "L0H1->L1H2.k", "embed->L1H2.q", "embed->L0H1.v"].sort(),
    );
    const nodes = [...tid("lw-ci-graph")!.querySelectorAll("[data-node]")].map((n) => n.getAttribute("data-node"));
    expect(nodes.sort()).toEqual(["L0H1", "L1H2", "embed", "logits"]);
    expect(tid("lw-ci-graph")!.querySelector('[data-node="L1H2"]')!.getAttribute("data-score")).toBe("2");
    expect(tid("lw-ci-summary-text")!.textContent).toContain("top 5 of 81 edges");
    expect(tid("lw-ci-summary-text")!.textContent).toContain("4 drawn, 1 pruned");
    expect(tid("lw-ci-faithfulness")!.dataset.value).toBe("0.75");
    expect(tid("lw-ci-curve")!.querySelector('[data-testid="lw-ci-curve-current"]')!.getAttribute("data-value")).toBe("0.75");
    // the strongest edge is drawn last (on top)
    expect(last([...edges]).getAttribute("data-edge")).toBe("L1H2->logits");
  });

  it("a size change redraws at once, asks Python for the exact faithfulness, and shows it when it comes", async () => {
    const m = new FakeModel(traits());
    mount(m);
    const size = tid<HTMLInputElement>("lw-ci-size")!;
    size.value = "8";
    size.dispatchEvent(new Event("change"));
    expect(last(m.requests())).toMatchObject({ kind: "set_size", args: { size: 8 } });
    await frame();
    expect(tid("lw-ci-graph")!.querySelectorAll("[data-edge]").length).toBe(8);
    expect(tid("lw-ci-faithfulness")!.dataset.pending).toBe("true");
    m.update({ size: 8, current: { size: 8, n_edges: 81, faithfulness: 0.9, metric: 2.6, clean_value: 3, corrupted_value: -1 } });
    m.receive({ type: "reply", id: last(m.requests()).id, ok: true, result: {} });
    await frame();
    expect(tid("lw-ci-faithfulness")!.dataset.value).toBe("0.9");
    // percentages: 10 % of 81 edges = 8
    choose(tid<HTMLSelectElement>("lw-ci-size-unit")!, "%");
    size.value = "10";
    size.dispatchEvent(new Event("change"));
    expect(last(m.requests())).toMatchObject({ kind: "set_size", args: { size: 8 } });
  });

  it("a size outside 1..n_edges is refused in the view: an error, no request, the graph kept", async () => {
    const m = new FakeModel(traits());
    mount(m);
    const n = m.requests().length;
    const size = tid<HTMLInputElement>("lw-ci-size")!;
    size.value = "500";
    size.dispatchEvent(new Event("change"));
    expect(m.requests().length).toBe(n);
    expect(tid("lw-error")!.hidden).toBe(false);
    expect(tid("lw-error-message")!.textContent).toMatch(/between 1 and 81/);
    await frame();
    expect(tid("lw-ci-graph")!.querySelectorAll("[data-edge]").length).toBe(4);
  });

  it("click an edge: patch_edge, then its exact value beside the estimate", async () => {
    const m = new FakeModel(traits());
    mount(m);
    tid("lw-ci-graph")!.querySelector('[data-edge="L0H1->L1H2.k"] path')!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(last(m.requests())).toMatchObject({ kind: "patch_edge", args: { edge: "L0H1->L1H2.k" } });
    const result = { edge: "L0H1->L1H2.k", up: "L0H1", down: "L1H2", port: "k", value: 0.4, effect: 1.4, estimate: 1.5, normalized: 0.35, rank: 2, n_edges: 81, clean_value: 3, corrupted_value: -1, method: "eap-ig" };
    m.update({ selected: { edge: "L0H1->L1H2.k" }, edge_result: result });
    await frame();
    expect(tid("lw-ci-edge-effect")!.dataset.value).toBe("1.4");
    expect(tid("lw-ci-edge-estimate")!.dataset.value).toBe("1.5");
    expect(tid("lw-ci-edge-value")!.dataset.value).toBe("0.4");
    expect(tid("lw-ci-graph")!.querySelector('[data-edge="L0H1->L1H2.k"] [data-selected]')).not.toBeNull();
  });

  it("click a node: promoted tokens (as text), DLA, attention; Remove sends remove_node; Restore", async () => {
    const m = new FakeModel(traits());
    mount(m);
    tid("lw-ci-graph")!.querySelector('[data-node="L1H2"] circle')!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(last(m.requests())).toMatchObject({ kind: "node", args: { label: "L1H2" } });
    const node = {
      label: "L1H2", kind: "head", score: 2, dla: 1.25, promoted: [{ token: "<b>ship</b>", id: 7, value: 3.5 }], suppressed: [{ token: " moon", id: 9, value: -2 }],
      attention: { tokens: ["<bos>", "red", "ship"], weights: [0.1, 0.2, 0.7], pos: 2 },
    };
    m.update({ selected: { node: "L1H2" }, node_result: node });
    await frame();
    const rows = tid("lw-ci-promoted")!.querySelectorAll('[data-testid="lw-ci-token"]');
    expect(rows[0].getAttribute("data-token")).toBe("<b>ship</b>");
    expect(rows[0].querySelector("b")).toBeNull();
    expect(tid("lw-ci-node-dla")!.dataset.value).toBe("1.25");
    expect(all("lw-ci-attn-row")[0].dataset.pos).toBe("2");
    tid("lw-ci-remove")!.click();
    expect(last(m.requests())).toMatchObject({ kind: "remove_node", args: { label: "L1H2" } });
    m.update({ removed: ["L1H2"], current: { ...(traits().current as object), removed: ["L1H2"], removed_edges: 3, metric: -1, metric_full: 2 } });
    await frame();
    expect(tid("lw-ci-graph")!.querySelector('[data-node="L1H2"]')!.getAttribute("data-removed")).toBe("true");
    expect(tid("lw-ci-summary-text")!.textContent).toContain("without L1H2");
    tid("lw-ci-restore")!.click();
    expect(last(m.requests())).toMatchObject({ kind: "restore" });
  });

  it("Rescore sends the method and steps (a background request with Cancel)", () => {
    const m = new FakeModel(traits());
    mount(m);
    choose(tid<HTMLSelectElement>("lw-ci-method")!, "eap");
    tid<HTMLInputElement>("lw-ci-steps")!.value = "3";
    tid("lw-ci-rescore")!.click();
    const req = last(m.requests());
    expect(req).toMatchObject({ kind: "score", args: { method: "eap", steps: 3 } });
    m.receive({ type: "progress", id: req.id, done: 1, total: 3, message: "faithfulness curve" });
    expect(tid("lw-cancel")!.hidden).toBe(false);
    tid("lw-cancel")!.click();
    expect(last(m.sent).content).toEqual({ type: "cancel", id: req.id });
  });

  it("exports one SVG with the graph and the curve, without click targets", async () => {
    mount(new FakeModel(traits()));
    const svg = await exportSvg();
    expect(svg).toContain('data-edge="L1H2-&gt;logits"');
    expect(svg).toContain("exact faithfulness");
    expect(svg).not.toContain("lw-ci-hit");
  });

  it("redraws a 200-edge circuit quickly", async () => {
    const labels: string[] = [];
    for (let i = 0; i < 100; i++) labels.push(`L${Math.floor(i / 12)}H${i % 12}->logits`, `embed->L${Math.floor(i / 12)}H${i % 12}.${"qkv"[i % 3]}`);
    const scores = labels.map((_, i) => 1 - i / labels.length);
    const m = new FakeModel(traits({ n_layers: 12, n_heads: 12, n_kv_heads: 12, n_edges: 32491, size: 200,
      edges: { labels, scores: f32Bytes(scores), n: labels.length, n_edges: 32491, max_abs: 1, method: "eap" } }));
    mount(m);
    const g = tid("lw-ci-graph")!;
    expect(Number(g.dataset.edges)).toBe(200);
    expect(Number(g.dataset.drawMs)).toBeLessThan(1000); // happy-dom; the browser figure is in bench/browser_circuit.py
  });
});

// The weights overlay: composition scores of the head -> head edges the view holds (widgets/_circuit_overlay.py).
const OVERLAY = {
  on: true, labels: ["L0H1->L1H2.k", "L0H3->L1H0.q"], kinds: ["k", "q"], scores: f32Bytes([0.3, 0.126]), z: f32Bytes([25.5, 0.2]),
  n: 2, baseline_mean: 0.125, baseline_std: 0.007, max: 0.325,
};

describe("circuit weights overlay", () => {
  it("decodes the overlay trait; {} is off; halo opacity grows from the baseline to the largest score, solid when z >= 2", () => {
    const ov = decodeOverlay(OVERLAY)!;
    expect(ov.edges.get("L0H1->L1H2.k")!.score).toBeCloseTo(0.3, 6);
    expect(ov.edges.get("L0H3->L1H0.q")).toMatchObject({ kind: "q" });
    expect(ov.edges.has("embed->L1H2.q")).toBe(false);
    expect(decodeOverlay({})).toBeNull();
    expect(() => decodeOverlay({ ...OVERLAY, kinds: ["k", "x"] })).toThrow(/composition kind/);
    const strong = haloStyle(ov.edges.get("L0H1->L1H2.k")!, ov);
    expect(strong.dashed).toBe(false);
    expect(strong.opacity).toBeCloseTo(0.15 + 0.85 * ((0.3 - 0.125) / (0.325 - 0.125)), 2);
    expect(haloStyle({ kind: "q", score: 0.1, z: -3 }, ov)).toEqual({ opacity: 0.15, dashed: true });
    expect(haloStyle({ kind: "v", score: 0.5, z: 50 }, ov).opacity).toBe(1);
  });

  it("head -> head edges drawn carry their composition (a halo); other edges none; the legend says which is which", async () => {
    const m = new FakeModel(traits({ overlay: OVERLAY }));
    mount(m);
    const g = tid("lw-ci-graph")!;
    expect(g.dataset.overlay).toBe("true");
    const k = g.querySelector('[data-edge="L0H1->L1H2.k"]')!;
    expect(Number(k.getAttribute("data-composition"))).toBeCloseTo(0.3, 6);
    expect(Number(k.getAttribute("data-composition-z"))).toBeCloseTo(25.5, 5);
    expect(k.getAttribute("data-composition-kind")).toBe("k");
    expect(k.querySelector(".lw-ci-halo")!.getAttribute("data-dashed")).toBeNull(); // stands out: solid
    expect(Number(k.getAttribute("data-score"))).toBe(1.5); // the data score is still the edge's
    for (const label of ["L1H2->logits", "embed->L1H2.q", "embed->L0H1.v"]) {
      const e = g.querySelector(`[data-edge="${label}"]`)!;
      expect(e.hasAttribute("data-composition")).toBe(false);
      expect(e.querySelector(".lw-ci-halo")).toBeNull();
    }
    expect(tid("lw-ci-legend-overlay")!.textContent).toMatch(/composition score from the weights/);
    expect(tid("lw-ci-legend-data")!.textContent).toContain("eap-ig");
    expect(tid<HTMLInputElement>("lw-ci-overlay")!.checked).toBe(true);
    // a size change redraws locally: the L0H3 -> L1H0.q edge (dashed: z < 2) appears with its composition
    const size = tid<HTMLInputElement>("lw-ci-size")!;
    size.value = "8";
    size.dispatchEvent(new Event("change"));
    await frame();
    const q = g.querySelector('[data-edge="L0H3->L1H0.q"]')!;
    expect(Number(q.getAttribute("data-composition"))).toBeCloseTo(0.126, 6);
    expect(q.querySelector(".lw-ci-halo")!.getAttribute("data-dashed")).toBe("true");
  });

  it("the toggle sends weights_overlay; off removes every halo; the edge panel shows both numbers", async () => {
    const m = new FakeModel(traits());
    mount(m);
    expect(tid("lw-ci-graph")!.querySelector(".lw-ci-halo")).toBeNull();
    expect(tid("lw-ci-legend-overlay")).toBeNull();
    const box = tid<HTMLInputElement>("lw-ci-overlay")!;
    box.checked = true;
    box.dispatchEvent(new Event("change"));
    expect(last(m.requests())).toMatchObject({ kind: "weights_overlay", args: { on: true } });
    const edge = { edge: "L0H1->L1H2.k", up: "L0H1", down: "L1H2", port: "k", value: 0.4, effect: 1.4, estimate: 1.5, normalized: 0.35, rank: 2, n_edges: 81, clean_value: 3, corrupted_value: -1, method: "eap-ig",
      composition: { kind: "k", score: 0.3, z: 25.5, baseline_mean: 0.125, baseline_std: 0.007 } };
    m.update({ overlay: OVERLAY, selected: { edge: edge.edge }, edge_result: edge });
    await frame();
    expect(tid("lw-ci-graph")!.querySelectorAll(".lw-ci-halo").length).toBe(1);
    expect(tid("lw-ci-edge-composition")!.dataset.value).toBe("0.3");
    expect(tid("lw-ci-edge-composition-z")!.dataset.value).toBe("25.5");
    expect(tid("lw-ci-edge-estimate")!.dataset.value).toBe("1.5");
    m.update({ selected: { edge: "L1H2->logits" }, edge_result: { ...edge, edge: "L1H2->logits", port: "", composition: null } });
    await frame();
    expect(tid("lw-ci-edge-composition")).toBeNull();
    expect(tid("lw-ci-edge-no-composition")).not.toBeNull();
    box.checked = false;
    box.dispatchEvent(new Event("change"));
    expect(last(m.requests())).toMatchObject({ kind: "weights_overlay", args: { on: false } });
    m.update({ overlay: {} });
    await frame();
    expect(tid("lw-ci-graph")!.querySelector(".lw-ci-halo")).toBeNull();
    expect(tid("lw-ci-graph")!.dataset.overlay).toBe("false");
    expect(tid("lw-ci-edge-no-composition")).toBeNull();
  });
});
