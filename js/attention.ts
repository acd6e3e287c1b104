// AttentionGrid view (widgets/attention.py; contract in docs/protocol.md).
//
// Header: prompt + Run (Ctrl/Cmd+Enter), colour-by select, ablation mode select, Export menu.
// Body: the head grid (one canvas), the focus panel for the head in `focus`, and the ablation
// result panel drawn from `last_result`. Trait changes are coalesced into one redraw per task;
// patterns are decoded only when `patterns` / `patterns_meta` change. A focused head of a pooled
// grid comes from the kernel: up to `window_max` tokens all of it (`window` request, exact), on
// longer prompts an overview (max-pooled, `overview` request) and a window at full resolution
// that the overview, the wheel and the Find box move (`window`; the kernel keeps `focus_window`).

import { FocusPanel } from "./attention/focus";
import { OverviewPanel } from "./attention/overview";
import type { Bounds } from "./attention/window";
import { defaultWindow, panWindow, parseBounds, resizeWindow, windowAround, windowShowing } from "./attention/window";
import type { Head } from "./attention/grid";
import { HeadGrid, gridCellSize } from "./attention/grid";
import type { PatternMeta } from "./attention/pooled";
import { binOf, decodePatternTensor } from "./attention/pooled";
import { ResultPanel } from "./attention/result";
import type { Tensor } from "./lib/buffers";
import { decodeTensor, hasTensor } from "./lib/buffers";
import { sequential } from "./lib/colors";
import { h } from "./lib/dom";
import { promptRow } from "./lib/inputs";
import { resampleField } from "./lib/resample";
import { indexPair, strings } from "./lib/json";
import { createRedraw, onWidthChange } from "./lib/redraw";
import { shorten } from "./lib/svg";
import { TokenStrip } from "./lib/tokens";
import type { AnyModel, RenderProps } from "./lib/types";
import type { ExportItem } from "./lib/widget";
import { createWidget, svgBlob } from "./lib/widget";

const MODES: Array<[string, string]> = [
  ["zero", "zero"],
  ["mean", "mean"],
  ["resample", "resample"],
];

/** Parse the `focus` trait: [layer, head] inside the grid, or null. */
export function parseFocus(x: unknown, nLayers: number, nHeads: number): Head | null {
  return indexPair(x, nLayers, nHeads);
}

interface Decoded {
  key: unknown;
  meta: string;
  tensor: Tensor | null;
}

// Not a named export: anywidget warns ("Direct export of a 'render'") when a module has one.
function render({ model, el }: RenderProps): () => void {
  const w = createWidget(model, el, { name: "attention" });
  const { root } = w;

  // ---- header -------------------------------------------------------------------------------
  const prompt = promptRow(w);
  const colorBy = h("select", { class: "lw-select", testid: "lw-color-by", attrs: { "aria-label": "Colour heads by score" } });
  const mode = h("select", { class: "lw-select", testid: "lw-mode", attrs: { "aria-label": "Ablation mode" } });
  for (const [v, label] of MODES) mode.appendChild(h("option", { text: label, attrs: { value: v } }));
  const summary = h("span", { class: "lw-summary", testid: "lw-summary" });
  const resample = resampleField(w);
  // The lens selection this grid follows (a head picked in another view of the same lens).
  const linked = h("span", { class: "lw-summary lw-linked", testid: "lw-linked" });
  // Hovering a token marks its query row in every thumbnail.
  const promptTokens = new TokenStrip({
    layout: "flow",
    testid: "lw-prompt-tokens",
    itemTestid: "lw-prompt-token",
    onHover: (i) => markQuery(i),
  });
  w.header.append(
    prompt.el,
    h("div", { class: "lw-controls" }, [
      h("label", { class: "lw-field" }, [h("span", { text: "Colour by" }), colorBy]),
      h("label", { class: "lw-field" }, [h("span", { text: "Ablation" }), mode]),
      resample.el,
      summary,
      linked,
    ]),
    promptTokens.el,
  );

  // ---- body ---------------------------------------------------------------------------------
  const grid = new HeadGrid({
    onClick: (hd) => setFocus(hd),
    onArrow: (dl, dh) => {
      const f = parseFocus(model.get("focus"), nLayers(), nHeads()) ?? [0, 0];
      const l = Math.min(nLayers() - 1, Math.max(0, f[0] + dl));
      const k = Math.min(nHeads() - 1, Math.max(0, f[1] + dh));
      setFocus([l, k]);
    },
  });
  const focus = new FocusPanel({
    onQuery: (i) => markQuery(i),
    onReveal: (i) => moveWindow((b, side, P) => windowShowing(b, i, side, P)),
    onPan: (dq, dk) => moveWindow((b, side, P) => (b ? panWindow(b, dq, dk, P) : defaultWindow(side, P))),
    onAblate: () => ablate(),
    onClear: () => void w.request("clear", {}),
    onClose: () => setFocus(null),
  });
  const overview = new OverviewPanel({
    onPick: (q, k) => moveWindow((b, side, P) => windowAround(q, k, b ? b[1] - b[0] : side, P)),
    onSide: (side) => {
      windowSide = side;
      moveWindow((b, _s, P) => (b ? resizeWindow(b, side, P) : defaultWindow(side, P)));
    },
  });
  focus.el.insertBefore(overview.el, focus.el.querySelector(".lw-pattern-scroll"));
  const result = new ResultPanel();
  // The focus and result panels share a column beside the grid (below it when narrow). Beside a
  // tall grid the column moves down to the focused head's row, so a click far down the grid shows
  // its pattern (and then its ablation result) next to it. (position: sticky does not work in
  // JupyterLab's output area, whose ancestors clip overflow.)
  const side = h("div", { class: "lw-side", testid: "lw-side" }, [focus.el, result.el]);
  w.body.append(h("div", { class: "lw-main" }, [grid.el, side]));

  // ---- state --------------------------------------------------------------------------------
  let patterns: Decoded = { key: null, meta: "", tensor: null };
  let scores: Decoded = { key: null, meta: "", tensor: null };

  const nLayers = () => {
    const t = patterns.tensor;
    return t && t.shape.length === 4 ? t.shape[0] : Number(model.get("n_layers")) || 0;
  };
  const nHeads = () => {
    const t = patterns.tensor;
    return t && t.shape.length === 4 ? t.shape[1] : Number(model.get("n_heads")) || 0;
  };
  /** Thumbnail side in cells (the prompt length unless pooled). */
  const seqLen = () => {
    const t = patterns.tensor;
    return t && t.shape.length === 4 ? t.shape[2] : 0;
  };
  const patMeta = (): PatternMeta | null => (model.get("patterns_meta") as PatternMeta | null) ?? null;
  /** Prompt length in tokens. */
  const nPos = () => Number(patMeta()?.pos) || seqLen();
  // A pooled grid's focused head, fetched from the kernel for the current patterns (`gen`):
  // its overview (prompts over window_max tokens) and the window drawn in the focus panel.
  let gen = 0;
  let over: { key: string; side: number; bin: number; data: Float32Array } | null = null;
  let fetchingOver = "";
  let win: { id: string; key: string; b: Bounds; data: Float32Array } | null = null;
  let pendingWin = "";
  let failedWin = "";
  let queuedWin: [Head, Bounds] | null = null;
  let drawnWin = "";
  let windowSide = 64;
  const windowMax = () => Number(patMeta()?.window_max) || 256;
  /** Window side in tokens: the chosen one, at most window_max. */
  const winSide = () => Math.min(windowSide, windowMax());
  const tokens = () => strings(model.get("tokens"));
  const scoreNames = (): string[] => {
    const s = model.get("score_names");
    return Array.isArray(s) ? s.map(String) : [];
  };

  function decodePatterns(): void {
    const view = model.get("patterns");
    const meta = model.get("patterns_meta");
    const metaKey = JSON.stringify(meta ?? null);
    if (view === patterns.key && metaKey === patterns.meta) return;
    patterns = { key: view, meta: metaKey, tensor: null };
    gen++;
    over = null;
    win = null;
    failedWin = "";
    if (!hasTensor(view, meta)) return;
    patterns.tensor = w.decode("attention patterns", () => {
      const t = decodePatternTensor(view, meta as PatternMeta);
      if (t.shape.length !== 4 || t.shape[2] !== t.shape[3]) {
        throw new Error(`patterns must have shape [L, H, T, T], got ${JSON.stringify(t.shape)}`);
      }
      return t;
    });
  }

  function decodeScores(): void {
    const view = model.get("scores");
    const metaTrait = model.get("scores_meta");
    const metaKey = JSON.stringify(metaTrait ?? null);
    if (view === scores.key && metaKey === scores.meta) return;
    scores = { key: view, meta: metaKey, tensor: null };
    const len = (view as { byteLength?: number } | null)?.byteLength ?? 0;
    if (!len) return;
    const L = nLayers();
    const H = nHeads();
    const meta =
      metaTrait && typeof metaTrait === "object" && "dtype" in metaTrait
        ? metaTrait
        : { dtype: "f32" as const, shape: [L * H > 0 ? len / 4 / (L * H) : 0, L, H] };
    scores.tensor = w.decode("head scores", () => decodeTensor(view, meta));
  }

  // ---- actions ------------------------------------------------------------------------------
  function markQuery(i: number | null): void {
    grid.setQueryMark(i === null ? null : Math.floor(i / binOf(patMeta())));
    grid.draw();
  }

  function setFocus(hd: Head | null): void {
    model.set("focus", hd ? [hd[0], hd[1]] : []);
    model.save_changes();
    invalidate("focus");
  }

  /** Ask the kernel for a pooled head's overview; redraw the focus when it comes. */
  async function fetchOverview(f: Head): Promise<void> {
    const key = `${f[0]},${f[1]}`;
    if (fetchingOver === key) return;
    fetchingOver = key;
    const mine = gen;
    const reply = await w.request<{ meta: PatternMeta }>("overview", { layer: f[0], head: f[1] });
    if (fetchingOver === key) fetchingOver = "";
    if (!reply || mine !== gen || !reply.buffers[0]) return;
    const meta = reply.result.meta;
    const t = w.decode("pattern overview", () => decodePatternTensor(reply.buffers[0], meta));
    if (t) over = { key, side: Number(meta.size), bin: Number(meta.bin) || 1, data: t.data };
    invalidate("focus");
  }

  /** Ask the kernel for window `b` of head `f` at full resolution (one request at a time: the
   * latest wanted window follows when the current one comes). */
  async function fetchWindow(f: Head, b: Bounds): Promise<void> {
    const key = `${f[0]},${f[1]}`;
    const id = `${key}|${b.join(",")}`;
    if ((win && win.id === id) || pendingWin === id || failedWin === id) return;
    if (pendingWin) {
      queuedWin = [f, b];
      return;
    }
    pendingWin = id;
    const mine = gen;
    const [q0, q1, k0, k1] = b;
    const reply = await w.request<{ meta: PatternMeta }>("window", { layer: f[0], head: f[1], q0, q1, k0, k1 });
    pendingWin = "";
    if (!reply) failedWin = id;
    if (reply && mine === gen && reply.buffers[0]) {
      const t = w.decode("pattern window", () => decodeTensor(reply.buffers[0], reply.result.meta));
      if (t) win = { id, key, b, data: t.data };
      invalidate("focus");
    }
    const next = queuedWin;
    queuedWin = null;
    if (next && mine === gen) void fetchWindow(next[0], next[1]);
  }

  /** Move the focused head's window: `to(current, side, pos)` gives the new bounds. */
  function moveWindow(to: (b: Bounds | null, side: number, pos: number) => Bounds): void {
    const f = parseFocus(model.get("focus"), nLayers(), nHeads());
    if (!f) return;
    const b = to(currentBounds(), winSide(), nPos());
    failedWin = "";
    void fetchWindow(f, b);
  }

  /** The window the view wants: the kernel's `focus_window`, else the one shown, else the default. */
  function currentBounds(): Bounds | null {
    const P = nPos();
    return parseBounds(model.get("focus_window"), P, windowMax()) ?? win?.b ?? null;
  }

  function ablate(): void {
    const f = parseFocus(model.get("focus"), nLayers(), nHeads());
    if (!f) return;
    const m = String(model.get("ablation_mode") || mode.value || "zero");
    if (m === "resample") resample.commit();
    void w.request("ablate", { layer: f[0], head: f[1], mode: m });
  }

  w.listen(colorBy, "change", () => {
    model.set("color_by", colorBy.value);
    model.save_changes();
    invalidate("grid");
  });
  w.listen(mode, "change", () => {
    model.set("ablation_mode", mode.value);
    model.save_changes();
    resample.sync(mode.value);
  });
  w.listen(root, "keydown", (ev) => {
    if (ev.key !== "Escape") return;
    const t = ev.target as HTMLElement | null;
    if (t && /^(TEXTAREA|INPUT|SELECT)$/.test(t.tagName)) return;
    if (focus.isShown() && focus.unlock()) ev.preventDefault();
    else if (parseFocus(model.get("focus"), nLayers(), nHeads())) {
      ev.preventDefault();
      setFocus(null);
    }
  });
  w.onPending((open) => {
    const busy = open.length > 0;
    focus.ablateBtn.disabled = busy;
    focus.clearBtn.disabled = busy;
  });

  // ---- drawing ------------------------------------------------------------------------------
  type Part = "decode" | "header" | "grid" | "focus" | "result" | "layout";
  const redraw = createRedraw<Part>(draw);
  const invalidate = redraw.invalidate;

  function width(): number {
    return root.clientWidth || el.clientWidth || 0;
  }

  /** CSS px for the pattern: beside the grid when there is room, else below it. */
  function focusWidth(): number {
    const avail = width();
    if (avail <= 0) return 440;
    const labels = 170;
    const beside = avail - grid.layout.width - 24 - labels;
    return beside >= 260 ? Math.min(560, beside) : Math.max(160, Math.min(560, avail - labels));
  }

  function draw(d: Set<Part>): void {
    if (d.has("decode")) {
      decodePatterns();
      decodeScores();
      ["grid", "focus", "header", "layout"].forEach((p) => d.add(p as Part));
    }
    const L = nLayers();
    const H = nHeads();
    const T = seqLen();
    if (d.has("header")) {
      const names = scoreNames();
      const current = String(model.get("color_by") ?? "");
      colorBy.replaceChildren(...names.map((n) => h("option", { text: n, attrs: { value: n } })));
      if (names.includes(current)) colorBy.value = current;
      colorBy.disabled = names.length === 0;
      const m = String(model.get("ablation_mode") ?? "zero");
      if (!MODES.some(([v]) => v === m)) mode.appendChild(h("option", { text: m, attrs: { value: m } }));
      mode.value = m;
      resample.sync(m);
      const link = model.get("linked") as { label?: unknown; source?: unknown } | null;
      linked.textContent = link && link.label ? `Selected ${String(link.label)} (${String(link.source ?? "")})` : "";
      linked.dataset.label = link && link.label ? String(link.label) : "";
      prompt.sync();
      const toks = tokens();
      promptTokens.setTokens(toks);
      const pooledNote = binOf(patMeta()) > 1 ? ` · thumbnails ${T}² (max of ${binOf(patMeta())}² tokens a cell)` : "";
      summary.textContent = L && H ? `${toks.length || nPos()} tokens · ${L} layers × ${H} heads${pooledNote}` : "";
    }
    if (d.has("layout")) {
      grid.setCell(gridCellSize(L, H, width()));
      d.add("grid");
      d.add("focus");
    }
    if (d.has("grid")) {
      grid.setData({
        patterns: patterns.tensor?.data ?? null,
        nLayers: L,
        nHeads: H,
        T,
        scores: scores.tensor?.data ?? null,
        scoreNames: scoreNames(),
        colorBy: String(model.get("color_by") ?? ""),
      });
      grid.setPalette(w.palette());
      if (d.has("header") === false) {
        const current = String(model.get("color_by") ?? "");
        if (scoreNames().includes(current)) colorBy.value = current;
      }
    }
    if (d.has("grid") || d.has("focus")) {
      const f = parseFocus(model.get("focus"), L, H);
      grid.setFocus(f);
      grid.draw();
      const pooled = binOf(patMeta()) > 1;
      if (f && patterns.tensor && T > 0) {
        const names = scoreNames();
        const scoreList = names.map((n, s) => [n, grid.score(s, f[0], f[1])] as [string, number]);
        const P = pooled ? nPos() : T;
        const toks = tokens();
        const labels = Array.from({ length: P }, (_, i) => (i < toks.length ? toks[i] : `#${i}`));
        const key = `${f[0]},${f[1]}`;
        focus.setPalette(w.palette());
        if (!pooled) {
          overview.hide();
          const base = (f[0] * H + f[1]) * T * T;
          focus.setHead(f, patterns.tensor.data.subarray(base, base + T * T), labels, scoreList);
        } else {
          const big = P > windowMax();
          const b = big ? currentBounds() ?? defaultWindow(winSide(), P) : ([0, P, 0, P] as Bounds);
          if (big && over?.key !== key) void fetchOverview(f);
          void fetchWindow(f, b);
          if (big && over?.key === key) {
            overview.setPalette(w.palette(), sequential(w.palette().theme));
            overview.setData(over.data, over.side, over.bin, P, windowMax(), win ? win.b[1] - win.b[0] : winSide(), key);
          } else if (!big) overview.hide();
          if (win && win.key === key) {
            const [q0, q1, k0, k1] = win.b;
            focus.setHead(f, win.data, labels, scoreList, { q0, k0, rows: q1 - q0, cols: k1 - k0 });
          } else if (big && over?.key === key) {
            // the overview first; the window follows (a rerun of this head's block)
            focus.setHead(f, new Float32Array(0), labels, scoreList, { q0: b[0], k0: b[2], rows: 0, cols: 0 });
          }
        }
        if (focus.shownHead() === key) {
          focus.setWidth(focusWidth());
          focus.update();
          if (overview.isShown() && over?.key === key) overview.draw(focusWidth(), win && win.key === key ? win.b : null);
          if (win && win.id !== drawnWin && focus.isShown()) {
            drawnWin = win.id;
            const lock = focus.getLocked();
            if (lock?.axis === "row") focus.scrollTo(lock.index);
          }
        } else focus.hide();
      } else {
        focus.hide();
      }
    }
    if (d.has("result")) result.render(model.get("last_result"));
    if (d.has("grid") || d.has("focus") || d.has("result")) alignSide();
  }

  function alignSide(): void {
    const f = parseFocus(model.get("focus"), nLayers(), nHeads());
    side.style.marginTop = "0px";
    const beside = side.offsetLeft > grid.el.offsetLeft + 10 && Math.abs(side.offsetTop - grid.el.offsetTop) < 10;
    if (!f || !beside) return;
    const gl = grid.layout;
    const rowTop = gl.originY + f[0] * (gl.cellH + gl.gap);
    const room = grid.el.offsetHeight - side.offsetHeight;
    const top = Math.max(0, Math.min(rowTop - 40, room));
    side.style.marginTop = `${Math.round(top)}px`;
  }

  // ---- traits -------------------------------------------------------------------------------
  w.onChange(["patterns", "patterns_meta", "scores", "scores_meta", "n_layers", "n_heads"], () => invalidate("decode"));
  w.onChange(["tokens"], () => invalidate("header", "focus"));
  w.onChange(["score_names"], () => invalidate("header", "grid"));
  w.onChange(["prompt", "ablation_mode", "resample_prompts", "linked"], () => invalidate("header"));
  w.onChange(["color_by"], () => invalidate("grid"));
  w.onChange(["focus", "focus_window"], () => invalidate("focus"));
  w.onChange(["last_result"], () => invalidate("result"));
  w.onTheme((p) => {
    result.setTheme(p.theme);
    invalidate("grid", "focus");
  });

  w.setExports(() => {
    const items: ExportItem[] = [];
    if (patterns.tensor) {
      items.push(
        { id: "png", label: "Head grid (PNG)", filename: "attention-grid.png", make: () => grid.toPNG() },
        { id: "svg", label: "Head grid (SVG)", filename: "attention-grid.svg", make: () => svgBlob(grid.toSVG(gridTitle())) },
      );
    }
    const f = parseFocus(model.get("focus"), nLayers(), nHeads());
    if (f && focus.isShown()) {
      const name = `attention-L${f[0]}H${f[1]}`;
      items.push(
        { id: "focus-png", label: `L${f[0]}H${f[1]} pattern (PNG)`, filename: `${name}.png`, make: () => focus.heatmap.toPNG() },
        { id: "focus-svg", label: `L${f[0]}H${f[1]} pattern (SVG)`, filename: `${name}.svg`, make: () => svgBlob(focus.toSVG()) },
      );
    }
    return items;
  });
  const gridTitle = () => {
    const p = String(model.get("prompt") ?? "");
    return `Attention heads${p ? ` — ${shorten(p, 80)}` : ""}`;
  };

  // Relayout when the output area's width changes.
  onWidthChange(w, root, width, () => invalidate("layout"));

  // First paint, synchronously.
  redraw.flush("decode", "result");

  return () => {
    redraw.dispose();
    grid.destroy();
    focus.destroy();
    overview.destroy();
    promptTokens.destroy();
    w.dispose();
  };
}

export default { render };

/** For tests: the model API this view uses. */
export type { AnyModel };
