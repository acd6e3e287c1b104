import { afterEach, describe, expect, it, vi } from "vitest";
import { createWidget } from "../lib/widget";
import { FakeModel, captureDownloads, last, tick } from "./helpers";

afterEach(() => {
  document.body.replaceChildren();
  vi.restoreAllMocks();
});

function setup(attrs: Record<string, unknown> = {}) {
  const m = new FakeModel({ error: {}, busy: "", theme: "auto", ...attrs });
  const el = document.createElement("div");
  document.body.appendChild(el);
  const w = createWidget(m, el, { name: "test" });
  const tid = (id: string) => el.querySelector<HTMLElement>(`[data-testid="${id}"]`)!;
  return { m, el, w, tid };
}

describe("widget chrome", () => {
  it("builds a focusable root with the common elements", () => {
    const { tid, w } = setup();
    expect(w.root.classList.contains("lw-root")).toBe(true);
    expect(w.root.tabIndex).toBe(0);
    for (const id of ["lw-error", "lw-busy", "lw-export", "lw-export-menu", "lw-cancel"]) expect(tid(id)).not.toBeNull();
    expect(tid("lw-error").getAttribute("role")).toBe("alert");
  });

  it("request() resolves with the reply, shows busy meanwhile", async () => {
    const { m, w, tid } = setup();
    const p = w.request("run", { prompt: "x" });
    expect(tid("lw-busy").hidden).toBe(false);
    expect(w.pending()).toBe(true);
    m.receive({ type: "reply", id: last(m.requests()).id, ok: true, result: { n_tokens: 2 } });
    await expect(p).resolves.toEqual({ result: { n_tokens: 2 }, buffers: [] });
    expect(tid("lw-busy").hidden).toBe(true);
  });

  it("request() shows errors in the banner and gives null; a new request clears it", async () => {
    const { m, w, tid } = setup();
    const p = w.request("run");
    m.receive({ type: "reply", id: last(m.requests()).id, ok: false, error: { kind: "busy", message: "Busy." } });
    await expect(p).resolves.toBeNull();
    expect(tid("lw-error").hidden).toBe(false);
    expect(tid("lw-error-kind").textContent).toBe("busy error");
    expect(tid("lw-error").dataset.kind).toBe("busy");
    void w.request("run");
    expect(tid("lw-error").hidden).toBe(true);
  });

  it("an error reply with id null is shown too", () => {
    const { m, tid } = setup();
    m.receive({ type: "reply", id: null, ok: false, error: { kind: "protocol", message: "Not a request." } });
    expect(tid("lw-error").hidden).toBe(false);
    expect(tid("lw-error-message").textContent).toBe("Not a request.");
  });

  it("the export menu lists items, downloads, and closes on Esc", async () => {
    const { w, tid, el } = setup();
    const make = vi.fn(() => new Blob(["x"], { type: "text/plain" }));
    w.setExports(() => [{ id: "png", label: "Grid (PNG)", filename: "g.png", make }]);
    const urls = await captureDownloads(async () => {
      tid("lw-export").click();
      expect(tid("lw-export-menu").hidden).toBe(false);
      expect(tid("lw-export").getAttribute("aria-expanded")).toBe("true");
      tid("lw-export-png").click();
      await tick();
    });
    expect(make).toHaveBeenCalled();
    expect(urls.length).toBe(1);
    expect(tid("lw-export-menu").hidden).toBe(true);
    tid("lw-export").click();
    w.root.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(tid("lw-export-menu").hidden).toBe(true);
    // Nothing to export: a note, no items.
    w.setExports(() => []);
    tid("lw-export").click();
    expect(el.querySelector(".lw-menu-empty")).not.toBeNull();
  });

  it("an export that yields nothing says so in the banner", async () => {
    const { w, tid } = setup();
    w.setExports(() => [{ id: "svg", label: "SVG", filename: "a.svg", make: () => null }]);
    tid("lw-export").click();
    tid("lw-export-svg").click();
    await tick();
    expect(tid("lw-error").hidden).toBe(false);
    expect(tid("lw-error-message").textContent).toContain("Could not export");
  });

  it("re-themes on the theme trait and notifies", () => {
    const { m, w } = setup();
    const cb = vi.fn();
    w.onTheme(cb);
    m.set("theme", "dark");
    expect(w.theme()).toBe("dark");
    expect(cb).toHaveBeenCalledWith(expect.objectContaining({ theme: "dark" }));
    expect(w.root.classList.contains("lw-dark")).toBe(true);
  });

  it("dispose removes listeners and the DOM", () => {
    const { m, w, el } = setup();
    expect(m.listenerCount()).toBeGreaterThan(0);
    w.dispose();
    expect(m.listenerCount()).toBe(0);
    expect(el.children.length).toBe(0);
    w.dispose();
  });
});
