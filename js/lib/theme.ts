// Light/dark detection and the palette that canvas drawing needs.
//
// The `theme` trait ("auto" | "light" | "dark") wins; "auto" asks the host: JupyterLab sets
// data-jp-theme-light="true|false" on <body>, VS Code sets body.vscode-dark / vscode-light,
// marimo and others set a `dark` class or data-theme="dark"; otherwise prefers-color-scheme.
// The widget root gets the classes lw-light / lw-dark (+ lw-forced when the trait forces one);
// styles.css maps them onto host variables. No `color-scheme` is set on the root.

import type { Theme } from "./colors";

export type ThemePref = "auto" | "light" | "dark";

function docOf(el: Element): Document | null {
  return el.ownerDocument ?? (typeof document !== "undefined" ? document : null);
}

/** The host's theme as seen from `el` (not counting the trait). */
export function hostTheme(el: Element): Theme {
  // JupyterLab (the attribute sits on <body>; closest() also finds one set on a nearer ancestor).
  const jp = el.closest("[data-jp-theme-light]") ?? docOf(el)?.body?.closest("[data-jp-theme-light]");
  if (jp) return jp.getAttribute("data-jp-theme-light") === "false" ? "dark" : "light";
  const doc = docOf(el);
  for (const node of [doc?.body, doc?.documentElement]) {
    if (!node) continue;
    const cls = node.classList;
    if (cls.contains("vscode-dark") || cls.contains("vscode-high-contrast")) return "dark";
    if (cls.contains("vscode-light") || cls.contains("vscode-high-contrast-light")) return "light";
    if (cls.contains("dark") || cls.contains("dark-theme")) return "dark";
    const dt = node.getAttribute("data-theme");
    if (dt === "dark" || dt === "light") return dt;
  }
  const win = doc?.defaultView;
  try {
    if (win?.matchMedia?.("(prefers-color-scheme: dark)").matches) return "dark";
  } catch {
    /* no matchMedia */
  }
  return "light";
}

export function normalizePref(x: unknown): ThemePref {
  return x === "light" || x === "dark" ? x : "auto";
}

export function resolveTheme(pref: unknown, el: Element): Theme {
  const p = normalizePref(pref);
  return p === "auto" ? hostTheme(el) : p;
}

/** Put the theme classes on the widget root. */
export function applyTheme(root: HTMLElement, pref: unknown): Theme {
  const theme = resolveTheme(pref, root);
  root.classList.toggle("lw-dark", theme === "dark");
  root.classList.toggle("lw-light", theme === "light");
  root.classList.toggle("lw-forced", normalizePref(pref) !== "auto");
  root.dataset.theme = theme;
  return theme;
}

/** Call `cb` when the host's theme may have changed. Returns an unsubscribe function. */
export function watchHostTheme(el: Element, cb: () => void): () => void {
  const offs: Array<() => void> = [];
  const doc = docOf(el);
  const win = doc?.defaultView;
  if (win && "MutationObserver" in win) {
    const mo = new win.MutationObserver(cb);
    for (const node of [doc?.body, doc?.documentElement]) {
      if (node) mo.observe(node, { attributes: true, attributeFilter: ["data-jp-theme-light", "class", "data-theme"] });
    }
    offs.push(() => mo.disconnect());
  }
  try {
    const mq = win?.matchMedia?.("(prefers-color-scheme: dark)");
    if (mq && typeof mq.addEventListener === "function") {
      mq.addEventListener("change", cb);
      offs.push(() => mq.removeEventListener("change", cb));
    }
  } catch {
    /* no matchMedia */
  }
  return () => offs.forEach((f) => f());
}

/** Colours for canvas drawing, read from the root's CSS variables (with per-theme fallbacks). */
export interface Palette {
  theme: Theme;
  bg: string;
  fg: string;
  muted: string;
  border: string;
  accent: string;
  font: string;
}

const FALLBACK: Record<Theme, Omit<Palette, "theme" | "font">> = {
  light: { bg: "#ffffff", fg: "#1f2328", muted: "#656d76", border: "#d0d7de", accent: "#e36209" },
  dark: { bg: "#1e1f24", fg: "#e6edf3", muted: "#9198a1", border: "#3d444d", accent: "#ffa657" },
};

export const DEFAULT_FONT =
  'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

export function readPalette(root: HTMLElement, theme: Theme): Palette {
  const fb = FALLBACK[theme];
  let cs: CSSStyleDeclaration | null = null;
  try {
    cs = root.ownerDocument?.defaultView?.getComputedStyle(root) ?? null;
  } catch {
    cs = null;
  }
  const read = (name: string, fallback: string) => {
    const v = cs?.getPropertyValue(name)?.trim();
    // Only accept resolved values (a var() left unresolved cannot be used on a canvas).
    return v && !v.includes("var(") ? v : fallback;
  };
  return {
    theme,
    bg: read("--lw-bg", fb.bg),
    fg: read("--lw-fg", fb.fg),
    muted: read("--lw-muted", fb.muted),
    border: read("--lw-border", fb.border),
    accent: read("--lw-accent", fb.accent),
    font: read("--lw-font", DEFAULT_FONT),
  };
}
