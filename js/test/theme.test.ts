import { afterEach, describe, expect, it, vi } from "vitest";
import { applyTheme, hostTheme, normalizePref, readPalette, resolveTheme, watchHostTheme } from "../lib/theme";

afterEach(() => {
  document.body.replaceChildren();
  document.body.removeAttribute("data-jp-theme-light");
  document.body.className = "";
  document.documentElement.className = "";
  document.documentElement.removeAttribute("data-theme");
  vi.restoreAllMocks();
});

function el() {
  const d = document.createElement("div");
  document.body.appendChild(d);
  return d;
}

describe("theme detection", () => {
  it("reads JupyterLab's data-jp-theme-light on body", () => {
    const d = el();
    document.body.setAttribute("data-jp-theme-light", "false");
    expect(hostTheme(d)).toBe("dark");
    document.body.setAttribute("data-jp-theme-light", "true");
    expect(hostTheme(d)).toBe("light");
  });

  it("reads VS Code and marimo-style classes", () => {
    const d = el();
    document.body.classList.add("vscode-dark");
    expect(hostTheme(d)).toBe("dark");
    document.body.className = "vscode-light";
    expect(hostTheme(d)).toBe("light");
    document.body.className = "";
    document.documentElement.classList.add("dark");
    expect(hostTheme(d)).toBe("dark");
    document.documentElement.className = "";
    document.documentElement.setAttribute("data-theme", "dark");
    expect(hostTheme(d)).toBe("dark");
  });

  it("falls back to prefers-color-scheme", () => {
    const d = el();
    vi.spyOn(window, "matchMedia").mockImplementation(
      (q: string) => ({ matches: q.includes("dark"), addEventListener() {}, removeEventListener() {} }) as unknown as MediaQueryList,
    );
    expect(hostTheme(d)).toBe("dark");
  });

  it("the theme trait overrides the host", () => {
    const d = el();
    document.body.setAttribute("data-jp-theme-light", "false");
    expect(resolveTheme("light", d)).toBe("light");
    expect(resolveTheme("auto", d)).toBe("dark");
    expect(resolveTheme("junk", d)).toBe("dark");
    expect(normalizePref(undefined)).toBe("auto");
  });

  it("works inside a shadow root (marimo)", () => {
    const host = el();
    const shadow = host.attachShadow({ mode: "open" });
    const inner = document.createElement("div");
    shadow.appendChild(inner);
    document.body.setAttribute("data-jp-theme-light", "false");
    expect(hostTheme(inner)).toBe("dark");
  });
});

describe("applyTheme", () => {
  it("sets classes, never color-scheme", () => {
    const d = el();
    expect(applyTheme(d, "dark")).toBe("dark");
    expect(d.classList.contains("lw-dark")).toBe(true);
    expect(d.classList.contains("lw-forced")).toBe(true);
    expect(d.dataset.theme).toBe("dark");
    applyTheme(d, "auto");
    expect(d.classList.contains("lw-light")).toBe(true);
    expect(d.classList.contains("lw-forced")).toBe(false);
    expect(d.style.colorScheme ?? "").toBe("");
  });

  it("readPalette falls back per theme", () => {
    const d = el();
    expect(readPalette(d, "dark").bg).toBe("#1e1f24");
    expect(readPalette(d, "light").bg).toBe("#ffffff");
    d.style.setProperty("--lw-bg", "#123456");
    expect(readPalette(d, "light").bg).toBe("#123456");
  });

  it("watchHostTheme fires on body attribute changes and unsubscribes", async () => {
    const d = el();
    const cb = vi.fn();
    const off = watchHostTheme(d, cb);
    document.body.setAttribute("data-jp-theme-light", "false");
    await new Promise((r) => setTimeout(r, 0));
    expect(cb).toHaveBeenCalled();
    off();
    cb.mockClear();
    document.body.setAttribute("data-jp-theme-light", "true");
    await new Promise((r) => setTimeout(r, 0));
    expect(cb).not.toHaveBeenCalled();
  });
});
