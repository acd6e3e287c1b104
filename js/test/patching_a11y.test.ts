// The accessible data layers behind the canvases: the patching heatmap's hidden table of the slice
// shown (patching/a11y.ts) and the logit-lens table's hidden table of the drawn window
// (logit_lens/a11y.ts), both built by lib/celltable.ts.

import { describe, expect, it } from "vitest";
import lensView from "../logit_lens";
import type { LensCanvas } from "../logit_lens/table";
import patchingView from "../patching";
import { A11Y_MAX_CELLS, SiteCellTable, cellSource, cellText } from "../patching/a11y";
import { fmtCell } from "../patching/overlay";
import { DEFER_MS } from "../lib/celltable";
import { EMPTY_DATA, LensTableView } from "../logit_lens/table";
import { decodeTopTable } from "../logit_lens/data";
import { FakeModel, tick, viewHarness } from "./helpers";
import { fakeLens, lensTraits } from "./logit_lens_fixtures";
import { ATTR, H, L, T, entry, exactOf, traits } from "./patching_fixtures";

const frame = () => new Promise<void>((r) => requestAnimationFrame(() => r())).then(tick);
/** Past the tables' deferred build (a frame for the redraw, then the quiet time). */
const settle = () => frame().then(() => new Promise<void>((r) => setTimeout(r, DEFER_MS + 20)));

type Td = { row: number; col: number; text: string; value: number; index: string; source: string; site: string };

function cellsOf(table: HTMLElement): Td[] {
  return [...table.querySelectorAll<HTMLTableCellElement>("td[data-row]")].map((td) => ({
    row: Number(td.dataset.row),
    col: Number(td.dataset.col),
    text: td.textContent ?? "",
    value: Number(td.dataset.value),
    index: td.dataset.index ?? "",
    source: td.dataset.source ?? "",
    site: td.dataset.site ?? "",
  }));
}

describe("patching heatmap: the hidden table behind each canvas", () => {
  const ui = viewHarness(patchingView);

  it("lists every cell of a [layer, pos] site with the drawn text and the full-precision value", async () => {
    const ex = exactOf(ATTR.resid_pre);
    ui.mount(new FakeModel(traits({ exact: { resid_pre: entry("resid_pre", ex) } })));
    expect(ui.tid("lw-cells-resid_pre")!.querySelectorAll("td").length).toBe(0); // built once drawing is quiet
    await settle();
    const table = ui.tid("lw-cells-resid_pre")!;
    expect(table.tagName).toBe("TABLE");
    const canvas = ui.tid("lw-heatmap-resid_pre")!;
    expect(canvas.getAttribute("aria-details")).toBe(table.id);
    const cells = cellsOf(table);
    expect(cells.length).toBe(L * T);
    for (const c of cells) {
      const v = ex[c.row * T + c.col]; // float32, as Python sent it
      expect(c.value).toBe(v);
      expect(c.text).toBe(fmtCell(v));
      expect(c.index).toBe(`${c.row},${c.col}`);
      expect(c.site).toBe("resid_pre");
      expect(c.source).toBe("exact");
    }
    // the values are not all alike, and differ from the attribution preview they replaced
    expect(new Set(cells.map((c) => c.text)).size).toBeGreaterThan(L * T / 2);
    expect(cells.some((c) => Math.abs(c.value - ATTR.resid_pre[c.row * T + c.col]) > 0.1)).toBe(true);
    // headers: layer labels and the clean tokens, as text (the XSS token creates no element)
    const cols = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
    expect(cols.length).toBe(T);
    expect(cols[3]).toBe("<img·src=x·onerror=alert(1)>");
    expect(table.querySelector("img")).toBeNull();
    expect([...table.querySelectorAll("tbody th")].map((th) => th.textContent)).toEqual(["L0", "L1"]);
    expect(table.dataset.rowDim).toBe("layer");
    expect(table.dataset.colDim).toBe("pos");
    expect(table.querySelector("caption")!.textContent).toContain("logit diff");
    // visually hidden, but not hidden from assistive technology
    expect(table.hidden).toBe(false);
    expect(table.style.position).toBe("absolute");
  });

  it("marks attribution cells of a mixed map and not-computed cells of an exact-only view", async () => {
    const ex = exactOf(ATTR.resid_pre);
    const partial = ex.map((v, i) => (i % 3 === 0 ? NaN : v));
    ui.mount(new FakeModel(traits({ exact: { resid_pre: entry("resid_pre", partial, { partial: true }) } })));
    await settle();
    let cells = cellsOf(ui.tid("lw-cells-resid_pre")!);
    for (const c of cells) {
      const i = c.row * T + c.col;
      if (i % 3 === 0) {
        expect(c.source).toBe("attribution");
        expect(c.value).toBe(ATTR.resid_pre[i]);
      } else {
        expect(c.source).toBe("exact");
        expect(c.value).toBe(ex[i]);
      }
    }
    const sel = ui.tid<HTMLSelectElement>("lw-view-resid_pre")!;
    sel.value = "exact";
    sel.dispatchEvent(new Event("change", { bubbles: true }));
    await settle();
    cells = cellsOf(ui.tid("lw-cells-resid_pre")!);
    const missing = cells.filter((c) => (c.row * T + c.col) % 3 === 0);
    expect(missing.length).toBeGreaterThan(0);
    for (const c of missing) {
      expect(c.text).toBe("not computed");
      expect(c.source).toBe("none");
      expect(Number.isNaN(c.value)).toBe(true);
    }
  });

  it("a [layer, pos, head] site lists the slice shown; another head rebuilds it with that slice", async () => {
    const ex = exactOf(ATTR.attn_head_out_by_pos);
    ui.mount(
      new FakeModel(
        traits({ sites: ["attn_head_out_by_pos"], exact: { attn_head_out_by_pos: entry("attn_head_out_by_pos", ex) } }),
      ),
    );
    await settle();
    const read = () => cellsOf(ui.tid("lw-cells-attn_head_out_by_pos")!);
    const head = Number(ui.tid<HTMLSelectElement>("lw-slice-attn_head_out_by_pos-head")!.value);
    const check = (h: number) => {
      const cells = read();
      expect(cells.length).toBe(L * T);
      for (const c of cells) {
        expect(c.index).toBe(`${c.row},${c.col},${h}`);
        expect(c.value).toBe(ex[(c.row * T + c.col) * H + h]);
      }
    };
    check(head);
    const other = (head + 1) % H;
    const s = ui.tid<HTMLSelectElement>("lw-slice-attn_head_out_by_pos-head")!;
    s.value = String(other);
    s.dispatchEvent(new Event("change", { bubbles: true }));
    await settle();
    check(other);
    expect(ui.tid("lw-cells-attn_head_out_by_pos")!.querySelector("caption")!.textContent).toContain(`(head H${other})`);
  });

  it("a hover redraw does not rebuild the table; new values do", async () => {
    const m = new FakeModel(traits({ exact: { resid_pre: entry("resid_pre", exactOf(ATTR.resid_pre)) } }));
    ui.mount(m);
    await settle();
    const first = ui.tid("lw-cells-resid_pre")!.querySelector("td")!;
    const canvas = ui.tid<HTMLCanvasElement>("lw-heatmap-resid_pre")!;
    const d = canvas.dataset;
    canvas.dispatchEvent(
      new MouseEvent("mousemove", { clientX: Number(d.originX) + 2, clientY: Number(d.originY) + 2, bubbles: true }),
    );
    await settle();
    expect(ui.tid("lw-cells-resid_pre")!.querySelector("td")).toBe(first);
    const next = exactOf(ATTR.resid_pre, 1.5);
    m.set("exact", { resid_pre: entry("resid_pre", next) });
    await settle();
    const cells = cellsOf(ui.tid("lw-cells-resid_pre")!);
    expect(cells[0].value).toBe(next[0]);
    expect(ui.tid("lw-cells-resid_pre")!.querySelector("td")).not.toBe(first);
  });

  it("a slice over the cap gets no cells, and says how many it left out", () => {
    const t = new SiteCellTable("resid_pre");
    const rows = 30;
    const cols = Math.ceil((A11Y_MAX_CELLS + 1) / rows);
    const base = {
      site: "resid_pre", rowDim: "layer", colDim: "pos", rowLabels: [], colLabels: [], approx: null,
      source: "exact", metric: "logit diff", sliceText: "", index: (r: number, c: number) => [r, c],
    };
    t.update({ ...base, rows, cols, values: new Float32Array(rows * cols).fill(1) });
    t.table.flush();
    expect(t.table.size).toBe(0);
    expect(t.el.dataset.omitted).toBe(String(rows * cols));
    expect(t.el.querySelector("caption")!.textContent).toContain(String(A11Y_MAX_CELLS));
    // at the cap it is listed
    const c2 = A11Y_MAX_CELLS / 32;
    t.update({ ...base, rows: 32, cols: c2, values: new Float32Array(A11Y_MAX_CELLS).fill(2) });
    t.table.flush();
    expect(t.table.size).toBe(A11Y_MAX_CELLS);
    expect(t.el.dataset.omitted).toBeUndefined();
  });

  it("cell text and source helpers", () => {
    expect(cellText(0.12345)).toBe("0.12");
    expect(cellText(NaN)).toBe("not computed");
    expect(cellSource(NaN, false, "exact")).toBe("none");
    expect(cellSource(1, true, "mixed")).toBe("attribution");
    expect(cellSource(1, false, "attribution")).toBe("attribution");
    expect(cellSource(1, false, "mixed")).toBe("exact");
  });
});

describe("logit lens: the hidden table of the drawn window", () => {
  const ui = viewHarness(lensView);
  const R = 31;
  const TT = 512;
  const K = 3;

  it("lists exactly the drawn window with each cell's top-1 token, id and probability", async () => {
    const f = fakeLens(R, TT, K);
    ui.mount(new FakeModel(lensTraits(R, TT, K)));
    await settle();
    const canvas = ui.tid<LensCanvas>("lw-lens-table")!;
    const table = ui.tid("lw-lens-cells")!;
    const check = () => {
      expect(table.dataset.window).toBe(canvas.dataset.window);
      const [r0, r1, c0, c1] = canvas.dataset.window!.split(",").map(Number);
      const tds = [...table.querySelectorAll<HTMLElement>("td[data-row]")];
      expect(tds.length).toBe((r1 - r0) * (c1 - c0));
      expect(tds.length).toBeLessThan(R * TT / 10);
      for (const td of tds) {
        const r = Number(td.dataset.row);
        const c = Number(td.dataset.col);
        expect(r >= r0 && r < r1 && c >= c0 && c < c1).toBe(true);
        const i = (r * TT + c) * K;
        expect(Number(td.dataset.tokenId)).toBe(f.ids[i]);
        expect(Number(td.dataset.prob)).toBeCloseTo(f.probs[i], 3); // float16 on the wire
        expect(Number(td.dataset.value)).toBe(Number(td.dataset.prob)); // mode "top": shaded by it
      }
      return tds;
    };
    const tds = check();
    // the XSS token (id 0) stays text
    const xss = tds.find((td) => td.dataset.tokenId === "0")!;
    expect(xss.textContent).toBe("<img·src=x·onerror=alert(1)>");
    expect(table.querySelector("img")).toBeNull();
    expect(canvas.getAttribute("aria-details")).toBe(table.id);
    // scrolling to an off-screen cell draws (and lists) another window
    canvas.lwScrollToCell(30, 400);
    check();
    expect(table.querySelector('td[data-row="30"][data-col="400"]')).not.toBeNull();
    expect(table.querySelector('td[data-col="0"]')).toBeNull();
  });

  it("marks the cells an ablation changed", async () => {
    const R2 = 4;
    const T2 = 6;
    const changed = new Uint8Array(R2 * T2);
    changed[1 * T2 + 2] = 1;
    changed[3 * T2 + 5] = 1;
    const m = new FakeModel(lensTraits(R2, T2, K));
    ui.mount(m);
    await settle();
    expect(ui.tid("lw-lens-cells")!.querySelectorAll("td[data-row]").length).toBe(R2 * T2);
    expect(ui.tid("lw-lens-cells")!.querySelectorAll("td[data-changed]").length).toBe(0);
    m.update({ ablated: ["L1H0"], changed: new DataView(changed.buffer) });
    await settle();
    const marked = [...ui.tid("lw-lens-cells")!.querySelectorAll<HTMLElement>("td[data-changed]")].map(
      (td) => `${td.dataset.row},${td.dataset.col}`,
    );
    expect(marked).toEqual(["1,2", "3,5"]);
  });

  it("scrolling builds the table once, when it pauses, not on every frame", async () => {
    const view = new LensTableView({ onSelect: () => {}, onTarget: () => {} });
    document.body.appendChild(view.el);
    const tr = lensTraits(R, TT, K);
    const t = decodeTopTable(tr.top_ids, tr.top_probs, tr.top_meta)!;
    view.setData({ ...EMPTY_DATA, table: t, tokens: tr.tokens, vocab: tr.vocab });
    for (let i = 0; i < 10; i++) {
      view.scroller.scrollLeft = i * 97;
      view.draw();
    }
    expect(view.cells.builds).toBe(0);
    await new Promise((r) => setTimeout(r, DEFER_MS + 20));
    expect(view.cells.builds).toBe(1);
    expect(view.cells.el.dataset.window).toBe(view.canvas.dataset.window);
    view.destroy();
  });
});
