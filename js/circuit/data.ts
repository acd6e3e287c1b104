// CircuitGraph data (widgets/circuit.py, widgets/_circuit_data.py): edge labels parsed, the top
// edges decoded from the `edges` trait, and the circuit of the top n edges pruned to the nodes with
// a path to logits. `prune` mirrors Python's `_circuit_data.prune` (tested on the same lists), so a
// size change redraws at once, before Python's exact faithfulness arrives.
//
// Labels: "{up}->{down}"; up = embed | L{l}H{h} | mlp{l}; down = L{l}H{h}.{q,k,v} |
// L{l}KV{g}.{k,v} (a key/value group: feeds every head that shares it) | mlp{l} | logits.

import { decodeTensor } from "../lib/buffers";
import { isObject, strings } from "../lib/json";

export interface Edge {
  label: string;
  up: string;
  /** The downstream input: a node, or "L{l}KV{g}" for a key/value group. */
  down: string;
  port: "q" | "k" | "v" | "";
  /** The nodes the downstream input feeds (the group's heads for a KV edge). */
  targets: string[];
  score: number;
}

export interface NodeInfo {
  kind: "embed" | "head" | "mlp" | "logits";
  layer: number;
  head: number;
}

const NODE = /^(?:embed|logits|L(\d+)H(\d+)|mlp(\d+))$/;
const DOWN = /^(?:(?:L(\d+)H(\d+)|L(\d+)KV(\d+))\.([qkv])|mlp(\d+)|logits)$/;

/** What a node label names, or null for anything else. */
export function parseNode(label: string): NodeInfo | null {
  const m = NODE.exec(label);
  if (!m) return null;
  if (label === "embed") return { kind: "embed", layer: -1, head: -1 };
  if (label === "logits") return { kind: "logits", layer: Infinity, head: -1 };
  if (m[1] !== undefined) return { kind: "head", layer: Number(m[1]), head: Number(m[2]) };
  return { kind: "mlp", layer: Number(m[3]), head: -1 };
}

/** Forward order: embed, then per layer its heads (by index) before its MLP, logits last. */
export function nodeOrder(label: string): number {
  const n = parseNode(label);
  if (!n) return NaN;
  if (n.kind === "embed") return -1;
  if (n.kind === "logits") return Infinity;
  return 2 * n.layer + (n.kind === "mlp" ? 1 : n.head / 1e4); // heads in head order (a tie for pruning)
}

/** Parse one edge label (null for junk). `nHeads` / `nKv` resolve a key/value group to its heads. */
export function parseEdge(label: string, score: number, nHeads: number, nKv: number): Edge | null {
  const i = label.indexOf("->");
  if (i < 0) return null;
  const up = label.slice(0, i);
  const down = label.slice(i + 2);
  if (!parseNode(up) || up === "logits") return null;
  const m = DOWN.exec(down);
  if (!m) return null;
  if (m[1] !== undefined) {
    const node = `L${m[1]}H${m[2]}`;
    return { label, up, down: node, port: m[5] as Edge["port"], targets: [node], score };
  }
  if (m[3] !== undefined) {
    const layer = Number(m[3]);
    const g = Number(m[4]);
    const per = Math.max(1, Math.floor(nHeads / Math.max(1, nKv)));
    const targets: string[] = [];
    for (let h = g * per; h < (g + 1) * per; h++) targets.push(`L${layer}H${h}`);
    return { label, up, down: `L${layer}KV${g}`, port: m[5] as Edge["port"], targets, score };
  }
  return { label, up, down, port: "", targets: [down], score };
}

export interface TopEdges {
  /** Most |score| first: the most the view can draw. */
  edges: Edge[];
  nEdges: number;
  maxAbs: number;
  method: string;
}

/** The `edges` trait: {labels, scores (f32 bytes), n, n_edges, max_abs, method}. Throws on junk. */
export function decodeTopEdges(x: unknown, nHeads: number, nKv: number): TopEdges {
  if (!isObject(x) || !Array.isArray(x.labels)) return { edges: [], nEdges: 0, maxAbs: 0, method: "" };
  const labels = strings(x.labels);
  const scores = decodeTensor(x.scores, { dtype: "f32", shape: [labels.length] }).data;
  const edges: Edge[] = [];
  labels.forEach((l, i) => {
    const e = parseEdge(l, scores[i], nHeads, nKv);
    if (!e) throw new Error(`not an edge label: ${JSON.stringify(l)}`);
    edges.push(e);
  });
  return {
    edges,
    nEdges: typeof x.n_edges === "number" ? x.n_edges : labels.length,
    maxAbs: typeof x.max_abs === "number" ? x.max_abs : 0,
    method: typeof x.method === "string" ? x.method : "",
  };
}

/** The `node_scores` trait as a map label -> score. */
export function decodeNodeScores(x: unknown): Map<string, number> {
  const out = new Map<string, number>();
  if (!isObject(x) || !Array.isArray(x.labels)) return out;
  const labels = strings(x.labels);
  const data = decodeTensor(x.scores, { dtype: "f32", shape: [labels.length] }).data;
  labels.forEach((l, i) => out.set(l, data[i]));
  return out;
}

export interface Circuit {
  /** Kept edges, in input order (most |score| first). */
  edges: Edge[];
  /** Nodes drawn, in forward order. */
  nodes: string[];
  /** Edges dropped: not on a path from embed to logits. */
  pruned: number;
}

/**
 * The edges and nodes that matter (mirrors Python's `prune`): an edge is kept when its upstream
 * node is reached from embed and one of its targets has a path to logits through `edges`.
 */
export function prune(edges: readonly Edge[]): Circuit {
  const layerOf = (n: string) => Math.floor(nodeOrder(n));
  const alive = new Set<string>(["logits"]);
  const minDown = (e: Edge) => Math.min(...e.targets.map(layerOf));
  for (const e of [...edges].sort((a, b) => minDown(b) - minDown(a))) if (e.targets.some((t) => alive.has(t))) alive.add(e.up);
  const reached = new Set<string>(["embed"]);
  for (const e of [...edges].sort((a, b) => layerOf(a.up) - layerOf(b.up))) if (reached.has(e.up)) e.targets.forEach((t) => reached.add(t));
  const kept = edges.filter((e) => reached.has(e.up) && e.targets.some((t) => alive.has(t)));
  const used = new Set<string>();
  for (const e of kept) {
    used.add(e.up);
    for (const t of e.targets) if (alive.has(t)) used.add(t);
  }
  const nodes = [...used].sort((a, b) => nodeOrder(a) - nodeOrder(b));
  return { edges: kept, nodes, pruned: edges.length - kept.length };
}

/** A size typed as a count or a percentage of `nEdges`, as a count (NaN when not a number). */
export function sizeFromInput(value: number, unit: "edges" | "%", nEdges: number): number {
  if (!Number.isFinite(value)) return NaN;
  return unit === "%" ? Math.max(1, Math.round((nEdges * value) / 100)) : Math.round(value);
}

/** Why `size` is not a circuit size (1..nEdges), or "" when it is. */
export function sizeError(size: number, nEdges: number): string {
  if (!Number.isInteger(size)) return "Type a number of edges (or a percentage).";
  if (size < 1 || size > nEdges) return `The circuit size must be between 1 and ${nEdges} edges, got ${size}.`;
  return "";
}
