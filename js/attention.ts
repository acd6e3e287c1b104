// AttentionGrid view (widgets/attention.py; contract in docs/protocol.md).
//
// Header: prompt + Run (Ctrl/Cmd+Enter), colour-by select, ablation mode select (attention/
// controls.ts), Export menu.
// Body: the head grid (one canvas), the focus panel for the head in `focus`, and the ablation
// result panel drawn from `last_result`. Trait changes are coalesced into one redraw per task;
// patterns are decoded only when `patterns` / `patterns_meta` change (attention/tensors.ts).
// A focused head of a pooled grid comes from the kernel: up to `window_max` tokens all of it
// (`window` request, exact), on longer prompts an overview (max-pooled, `overview` request) and a
// window at full resolution that the overview, the wheel and the Find box move (`window`; the
// kernel keeps `focus_window`; the requests and their replies: attention/headfetch.ts).

import { FocusPanel } from "./attention/focus";
import { OverviewPanel } from "./attention/overview";
import type { Bounds } from "./attention/window";
import { defaultWindow, panWindow, parseBounds, resizeWindow, windowAround, windowShowing } from "./attention/window";
import type { Head } from "./attention/grid";
import { HeadGrid, gridCellSize } from "./attention/grid";
import type { PatternMeta } from "./attention/pooled";
import { binOf } from "./attention/pooled";
import { HeadFetch } from "./attention/headfetch";
import { AttentionControls } from "./attention/controls";
import { ResultPanel } from "./attention/result";
import { GridTensors } from "./attention/tensors";
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

/** Parse the `focus` trait: [layer, head] inside the grid, or null. */
export function parseFocus(x: unknown, nLayers: number, nHeads: number): Head | null {
  return indexPair(x, nLayers, nHeads);
}

// Not a named export: anywidget warns ("Direct export of a 'render'") when a module has one.
function render({ model, el }: RenderProps): () => void {
  const w = createWidget(model, el, { name: "attention" });
  const { root } = w;

  // ---- header -------------------------------------------------------------------------------
  const prompt = promptRow(w);
  const resample = resampleField(w);
  const controls = new AttentionControls(resample.el);
  const { colorBy, mode, summary } = controls;
  // Hovering a token marks its query row in every thumbnail.
  const promptTokens = new TokenStrip({
    layout: "flow",
    testid: "lw-prompt-tokens",
    itemTestid: "lw-prompt-token",
    onHover: (i) => markQuery(i),
  });
  w.header.append(prompt.el, controls.el, promptTokens.el);

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
  const tensors = new GridTensors(w.decode);

  const nLayers = () => {
    const t = tensors.patterns;
    return t && t.shape.length === 4 ? t.shape[0] : Number(model.get("n_layers")) || 0;
  };
  const nHeads = () => {
    const t = tensors.patterns;
    return t && t.shape.length === 4 ? t.shape[1] : Number(model.get("n_heads")) || 0;
  };
  /** Thumbnail side in cells (the prompt length unless pooled). */
  const seqLen = () => {
    const t = tensors.patterns;
    return t && t.shape.length === 4 ? t.shape[2] : 0;
  };
  const patMeta = (): PatternMeta | null => (model.get("patterns_meta") as PatternMeta | null) ?? null;
  /** Prompt length in tokens. */
  const nPos = () => Number(patMeta()?.pos) || seqLen();
  // A pooled grid's focused head, fetched from the kernel for the current patterns: its overview
  // (prompts over window_max tokens) and the window drawn in the focus panel.
  const fetched = new HeadFetch(w, () => invalidate("focus"));
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

  /** Move the focused head's window: `to(current, side, pos)` gives the new bounds. */
  function moveWindow(to: (b: Bounds | null, side: number, pos: number) => Bounds): void {
    const f = parseFocus(model.get("focus"), nLayers(), nHeads());
    if (!f) return;
    const b = to(currentBounds(), winSide(), nPos());
    fetched.retry();
    void fetched.fetchWindow(f, b);
  }

  /** The window the view wants: the kernel's `focus_window`, else the one shown, else the default. */
  function currentBounds(): Bounds | null {
    const P = nPos();
    return parseBounds(model.get("focus_window"), P, windowMax()) ?? fetched.win?.b ?? null;
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
      if (tensors.updatePatterns(model.get("patterns"), model.get("patterns_meta"))) fetched.reset();
      tensors.updateScores(model.get("scores"), model.get("scores_meta"), nLayers(), nHeads());
      ["grid", "focus", "header", "layout"].forEach((p) => d.add(p as Part));
    }
    const L = nLayers();
    const H = nHeads();
    const T = seqLen();
    if (d.has("header")) {
      const m = String(model.get("ablation_mode") ?? "zero");
      const link = model.get("linked") as { label?: unknown; source?: unknown } | null;
      controls.sync(scoreNames(), String(model.get("color_by") ?? ""), m, link);
      resample.sync(m);
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
        patterns: tensors.patterns?.data ?? null,
        nLayers: L,
        nHeads: H,
        T,
        scores: tensors.scores?.data ?? null,
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
      if (f && tensors.patterns && T > 0) {
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
          focus.setHead(f, tensors.patterns.data.subarray(base, base + T * T), labels, scoreList);
        } else {
          const big = P > windowMax();
          const b = big ? currentBounds() ?? defaultWindow(winSide(), P) : ([0, P, 0, P] as Bounds);
          if (big && fetched.over?.key !== key) void fetched.fetchOverview(f);
          void fetched.fetchWindow(f, b);
          if (big && fetched.over?.key === key) {
            overview.setPalette(w.palette(), sequential(w.palette().theme));
            overview.setData(fetched.over.data, fetched.over.side, fetched.over.bin, P, windowMax(), fetched.win ? fetched.win.b[1] - fetched.win.b[0] : winSide(), key);
          } else if (!big) overview.hide();
          if (fetched.win && fetched.win.key === key) {
            const [q0, q1, k0, k1] = fetched.win.b;
            focus.setHead(f, fetched.win.data, labels, scoreList, { q0, k0, rows: q1 - q0, cols: k1 - k0 });
          } else if (big && fetched.over?.key === key) {
            // the overview first; the window follows (a rerun of this head's block)
            focus.setHead(f, new Float32Array(0), labels, scoreList, { q0: b[0], k0: b[2], rows: 0, cols: 0 });
          }
        }
        if (focus.shownHead() === key) {
          focus.setWidth(focusWidth());
          focus.update();
          if (overview.isShown() && fetched.over?.key === key) overview.draw(focusWidth(), fetched.win && fetched.win.key === key ? fetched.win.b : null);
          if (fetched.win && fetched.win.id !== drawnWin && focus.isShown()) {
            drawnWin = fetched.win.id;
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
    if (tensors.patterns) {
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
