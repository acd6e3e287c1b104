import { afterEach, describe, expect, it, vi } from "vitest";
import { snap } from "../lib/canvas";
import { sequential } from "../lib/colors";
import { Heatmap, cellCenter, cellRect, exposeLayout, fillPixels, gridLayout, hitTest } from "../lib/heatmap";
import { stubContext } from "./helpers";

afterEach(() => {
  vi.restoreAllMocks();
  document.body.replaceChildren();
});

describe("hitTest", () => {
  const l = gridLayout(3, 4, 10, 10, 2, 30, 20);

  it("finds every cell from its centre and corners", () => {
    for (let r = 0; r < 3; r++)
      for (let c = 0; c < 4; c++) {
        const { x, y } = cellCenter(l, r, c);
        expect(hitTest(l, x, y)).toEqual({ row: r, col: c });
        const rect = cellRect(l, r, c);
        expect(hitTest(l, rect.x, rect.y)).toEqual({ row: r, col: c });
        expect(hitTest(l, rect.x + rect.w - 0.01, rect.y + rect.h - 0.01)).toEqual({ row: r, col: c });
      }
  });

  it("misses the labels, the gaps and outside", () => {
    expect(hitTest(l, 29.9, 25)).toBeNull(); // left of origin
    expect(hitTest(l, 35, 19.9)).toBeNull(); // above origin
    expect(hitTest(l, 30 + 10 + 1, 25)).toBeNull(); // in the gap after column 0
    expect(hitTest(l, 35, 20 + 10 + 1)).toBeNull(); // in the gap after row 0
    expect(hitTest(l, 30 + 4 * 12, 25)).toBeNull(); // past the last column
    expect(hitTest(l, 35, 20 + 3 * 12)).toBeNull(); // past the last row
    expect(hitTest(l, NaN, 25)).toBeNull();
  });

  it("works without gaps and with non-square cells", () => {
    const g = gridLayout(2, 2, 8, 5);
    expect(hitTest(g, 7.9, 4.9)).toEqual({ row: 0, col: 0 });
    expect(hitTest(g, 8, 5)).toEqual({ row: 1, col: 1 });
    expect(hitTest(g, 16, 5)).toBeNull();
  });

  it("computes the canvas size with margins", () => {
    const g = gridLayout(3, 4, 10, 10, 2, 30, 20, 5, 6);
    expect(g.width).toBe(30 + 4 * 10 + 3 * 2 + 5);
    expect(g.height).toBe(20 + 3 * 10 + 2 * 2 + 6);
  });

  it("snaps rectangles to device pixels so neighbours share edges", () => {
    const a = snap({ x: 0.3, y: 0, w: 10.4, h: 1 }, 2);
    const b = snap({ x: 10.7, y: 0, w: 10.4, h: 1 }, 2);
    expect(a.x + a.w).toBe(b.x);
  });

  it("exposes the layout as data attributes", () => {
    const c = document.createElement("canvas");
    exposeLayout(c, gridLayout(3, 4, 10, 10, 2, 30, 20));
    expect(c.dataset).toMatchObject({ rows: "3", cols: "4", cell: "10", gap: "2", originX: "30", originY: "20" });
    expect(c.getAttribute("data-origin-x")).toBe("30");
  });
});

describe("fillPixels", () => {
  it("colours values through the LUT and NaN as missing", () => {
    const s = sequential("light");
    const px = fillPixels([0, 1, NaN], s);
    expect(Array.from(px.slice(0, 4))).toEqual([...s.rgb(0), 255]);
    expect(Array.from(px.slice(4, 8))).toEqual([...s.rgb(1), 255]);
    expect(Array.from(px.slice(8, 12))).toEqual([128, 128, 128, 255]);
  });
});

describe("Heatmap", () => {
  function make() {
    const onHover = vi.fn();
    const onClick = vi.fn();
    const hm = new Heatmap({ cellW: 10, gap: 0, margin: 2, testid: "hm", onHover, onClick });
    hm.setData(new Float32Array([0, 0.5, 1, 0.25, 0.75, 0]), 2, 3).setScale(sequential("light"));
    document.body.appendChild(hm.canvas);
    return { hm, onHover, onClick };
  }

  it("draws without a 2D context (happy-dom) and exposes its layout", () => {
    const { hm } = make();
    expect(() => hm.draw()).not.toThrow();
    expect(hm.canvas.dataset).toMatchObject({ rows: "2", cols: "3", cell: "10", gap: "0", originX: "2", originY: "2" });
    expect(hm.canvas.style.width).toBe(`${2 + 30 + 2}px`);
  });

  it("draws cells and highlights with a 2D context", () => {
    const { ctx, calls } = stubContext();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(ctx as never);
    const { hm } = make();
    hm.setHighlight({ row: 1, cell: { row: 0, col: 2 } });
    hm.draw();
    expect(calls.get("putImageData")).toBe(1);
    expect(calls.get("drawImage")).toBe(1);
    expect(calls.get("strokeRect")).toBe(2);
    hm.setHighlight({ col: 0 }).draw();
    expect(calls.get("putImageData")).toBe(1); // cells are cached
    // With gaps: one rect per cell.
    hm.setCellSize(10, 10, 1).draw();
    expect(calls.get("fillRect")!).toBeGreaterThanOrEqual(6);
  });

  it("maps mouse events to cells", () => {
    const { hm, onHover, onClick } = make();
    vi.spyOn(hm.canvas, "getBoundingClientRect").mockReturnValue({ left: 100, top: 50, right: 0, bottom: 0, width: 34, height: 24, x: 100, y: 50, toJSON() {} } as DOMRect);
    hm.canvas.dispatchEvent(new MouseEvent("mousemove", { clientX: 100 + 2 + 15, clientY: 50 + 2 + 5 }));
    expect(onHover).toHaveBeenLastCalledWith({ row: 0, col: 1 }, expect.anything());
    hm.canvas.dispatchEvent(new MouseEvent("mousemove", { clientX: 100 + 2 + 16, clientY: 50 + 2 + 6 }));
    expect(onHover).toHaveBeenCalledTimes(1);
    hm.canvas.dispatchEvent(new MouseEvent("click", { clientX: 100 + 2 + 25, clientY: 50 + 2 + 15 }));
    expect(onClick).toHaveBeenCalledWith({ row: 1, col: 2 }, expect.anything());
    hm.canvas.dispatchEvent(new MouseEvent("click", { clientX: 100, clientY: 50 }));
    expect(onClick).toHaveBeenCalledTimes(1);
    hm.canvas.dispatchEvent(new MouseEvent("mouseleave"));
    expect(onHover).toHaveBeenLastCalledWith(null, expect.anything());
  });

  it("exports a self-contained SVG with escaped labels", () => {
    const { hm } = make();
    const svg = hm.toSVG({ rowLabels: ["<q0>", "q&1"], colLabels: ["a", "b", '"c"'], title: "T<1>", legend: "w" });
    expect(svg.startsWith("<?xml")).toBe(true);
    expect(svg).toContain("<svg xmlns=\"http://www.w3.org/2000/svg\"");
    expect((svg.match(/<rect x=/g) ?? []).length).toBeGreaterThanOrEqual(6);
    expect(svg).toContain("&lt;q0&gt;");
    expect(svg).toContain("q&amp;1");
    expect(svg).toContain("&quot;c&quot;");
    expect(svg).toContain("T&lt;1&gt;");
    expect(svg).not.toContain("<q0>");
    expect(svg).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
    const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
    expect(doc.querySelector("parsererror")).toBeNull();
  });

  it("rejects too few values", () => {
    const hm = new Heatmap();
    expect(() => hm.setData([1, 2], 2, 2)).toThrow();
  });

  it("destroy removes listeners and the canvas", () => {
    const { hm, onClick } = make();
    hm.destroy();
    hm.canvas.dispatchEvent(new MouseEvent("click", { clientX: 5, clientY: 5 }));
    expect(onClick).not.toHaveBeenCalled();
    expect(document.body.contains(hm.canvas)).toBe(false);
  });
});
