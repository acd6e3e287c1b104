// Shared widget chrome: the root element, header/toolbar, error banner (request and decode
// errors), busy/progress indicator with Cancel, Export menu (PNG / SVG), theme handling, the
// request client, and trait / DOM / resize subscriptions removed at dispose. Each view builds its
// own content into `body` and calls `w.request(kind, args)` for clicks.
//
// Elements (data-testid): lw-root, lw-error (role=alert; lw-error-message, lw-error-dismiss),
// lw-busy (lw-busy-label, lw-progress, lw-cancel), lw-export (lw-export-menu, lw-export-<id>).

import type { Theme } from "./colors";
import { button, h, listen } from "./dom";
import type { Client, Progress, Reply, RequestHandle } from "./protocol";
import { asRequestError, createClient, toErrorInfo } from "./protocol";
import type { Palette } from "./theme";
import { applyTheme, readPalette, watchHostTheme } from "./theme";
import type { AnyModel, ErrorInfo } from "./types";

export interface ExportItem {
  /** Used in the test id: lw-export-<id>. */
  id: string;
  label: string;
  filename: string;
  make: () => Promise<Blob | null> | Blob | null;
}

export interface Widget {
  readonly model: AnyModel;
  readonly root: HTMLElement;
  /** Left part of the header (inputs); the right part holds the Export menu. */
  readonly header: HTMLElement;
  readonly toolbar: HTMLElement;
  readonly body: HTMLElement;
  readonly client: Client;
  theme(): Theme;
  palette(): Palette;
  /** Send a request with busy/progress/cancel UI; errors go to the banner and give null. */
  request<R = any>(kind: string, args?: Record<string, unknown>): Promise<Reply<R> | null>;
  /** True while this view has a request open. */
  pending(): boolean;
  showError(info: ErrorInfo | null): void;
  /** Run `decode`; if it throws, show "Could not decode the <what>: <message>" (kind "decode") and give null. */
  decode<T>(what: string, decode: () => T): T | null;
  /** The Export menu asks for its items each time it opens. */
  setExports(items: () => ExportItem[]): void;
  /** Called after the theme (trait or host) changes, with the new palette. */
  onTheme(cb: (p: Palette) => void): void;
  /** Called when this view's open requests change (e.g. to disable buttons). */
  onPending(cb: (open: RequestHandle[]) => void): void;
  /** model.on with removal on dispose. */
  onModel(event: string, cb: (...args: any[]) => void): void;
  /** Call `cb` when any of these traits changes (model.on("change:<trait>") for each). */
  onChange(traits: readonly string[], cb: () => void): void;
  /** addEventListener with removal on dispose. */
  listen<K extends keyof HTMLElementEventMap>(
    target: HTMLElement | Window | Document,
    type: K,
    fn: (ev: HTMLElementEventMap[K]) => void,
    opts?: AddEventListenerOptions,
  ): void;
  /** Call `cb` when `target` is resized (ResizeObserver; never where the window has none); stops at dispose. */
  observeResize(target: Element, cb: () => void): void;
  /** Run at dispose. */
  addCleanup(fn: () => void): void;
  dispose(): void;
}

export interface WidgetOptions {
  /** Widget name, used as a class (lw-<name>) and in export file names. */
  name: string;
}

export interface ProgressBar {
  readonly el: HTMLElement;
  /** Show `done` of `total` (0 % when total is 0; clamped to 0..100 %). */
  set(done: number, total: number): void;
}

/** A progress bar (role progressbar, aria-valuenow in %) with this test id. */
export function progressBar(testid: string): ProgressBar {
  const bar = h("div", { class: "lw-progress-bar" });
  const el = h("div", { class: "lw-progress", testid, attrs: { role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" } }, [bar]);
  return {
    el,
    set: (done, total) => {
      const pct = total > 0 ? Math.max(0, Math.min(100, (100 * done) / total)) : 0;
      bar.style.width = `${pct.toFixed(1)}%`;
      el.setAttribute("aria-valuenow", pct.toFixed(0));
    },
  };
}

/** Save a blob as a file via a temporary <a download> inside `root` (works in shadow roots). */
export function downloadBlob(blob: Blob, filename: string, root: HTMLElement): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.style.display = "none";
  root.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function svgBlob(svg: string): Blob {
  return new Blob([svg], { type: "image/svg+xml" });
}

function isEmptyError(x: unknown): boolean {
  return !x || typeof x !== "object" || Object.keys(x as object).length === 0 || !(x as ErrorInfo).message;
}

/** Build the chrome inside `el`. Call `dispose()` from the view's cleanup. */
export function createWidget(model: AnyModel, el: HTMLElement, opts: WidgetOptions): Widget {
  const cleanups: Array<() => void> = [];
  const themeSubs: Array<(p: Palette) => void> = [];
  const pendingSubs: Array<(open: RequestHandle[]) => void> = [];

  const root = h("div", { class: `lw-root lw-${opts.name}`, testid: "lw-root" });
  root.tabIndex = 0;
  root.dataset.widget = opts.name;

  const header = h("div", { class: "lw-header-main" });
  const toolbar = h("div", { class: "lw-toolbar" });
  const headerRow = h("div", { class: "lw-header" }, [header, toolbar]);

  // Error banner.
  const errKind = h("span", { class: "lw-error-kind", testid: "lw-error-kind" });
  const errMsg = h("span", { class: "lw-error-message", testid: "lw-error-message" });
  const errDetails = h("pre", { class: "lw-error-details", testid: "lw-error-details" });
  const errDetailsBox = h("details", { class: "lw-error-more" }, [h("summary", { testid: "lw-error-more", text: "Details" }), errDetails]);
  const errDismiss = button("×", "lw-error-dismiss", "lw-btn lw-btn-icon lw-error-dismiss");
  errDismiss.setAttribute("aria-label", "Dismiss error");
  const errorBox = h("div", { class: "lw-error", testid: "lw-error", attrs: { role: "alert" } }, [
    h("div", { class: "lw-error-text" }, [errKind, errMsg, errDetailsBox]),
    errDismiss,
  ]);
  errorBox.hidden = true;

  // Busy indicator.
  const busyLabel = h("span", { class: "lw-busy-label", testid: "lw-busy-label" });
  const progress = progressBar("lw-progress");
  progress.el.hidden = true;
  const cancelBtn = button("Cancel", "lw-cancel", "lw-btn lw-btn-small");
  cancelBtn.hidden = true;
  const busyBox = h("div", { class: "lw-busy", testid: "lw-busy", attrs: { "aria-live": "polite" } }, [
    h("span", { class: "lw-spinner", attrs: { "aria-hidden": "true" } }),
    busyLabel,
    progress.el,
    cancelBtn,
  ]);
  busyBox.hidden = true;

  // Export menu.
  const exportBtn = button("Export ▾", "lw-export", "lw-btn lw-btn-small");
  exportBtn.setAttribute("aria-haspopup", "menu");
  exportBtn.setAttribute("aria-expanded", "false");
  const menu = h("div", { class: "lw-menu", testid: "lw-export-menu", attrs: { role: "menu" } });
  menu.hidden = true;
  const exportBox = h("div", { class: "lw-export" }, [exportBtn, menu]);
  toolbar.appendChild(exportBox);

  const body = h("div", { class: "lw-body" });
  root.append(headerRow, errorBox, busyBox, body);
  el.appendChild(root);

  let theme: Theme = applyTheme(root, model.get("theme"));
  let palette = readPalette(root, theme);
  let exportItems: () => ExportItem[] = () => [];
  const progressById = new Map<string, Progress>();
  let cancelling = false;

  const onModel = (event: string, cb: (...args: any[]) => void) => {
    model.on(event, cb);
    cleanups.push(() => model.off(event, cb));
  };

  function showError(info: ErrorInfo | null): void {
    if (!info) {
      errorBox.hidden = true;
      return;
    }
    const e = toErrorInfo(info);
    errKind.textContent = e.kind && e.kind !== "error" ? `${e.kind} error` : "Error";
    errMsg.textContent = e.message;
    const details = e.details && Object.keys(e.details).length ? JSON.stringify(e.details, null, 2) : "";
    errDetails.textContent = details;
    errDetailsBox.hidden = !details;
    errorBox.dataset.kind = e.kind;
    errorBox.hidden = false;
  }

  function renderBusy(): void {
    const open = client.pending();
    const traitBusy = String(model.get("busy") ?? "");
    const show = open.length > 0 || traitBusy !== "";
    busyBox.hidden = !show;
    root.classList.toggle("lw-is-busy", show);
    if (!show) {
      cancelling = false;
      return;
    }
    const kind = open.length ? open[open.length - 1].kind : traitBusy;
    const p = open.map((o) => progressById.get(o.id)).filter((x): x is Progress => !!x).pop();
    let label = cancelling ? `Cancelling ${kind}…` : `Running ${kind}…`;
    if (p) {
      progress.set(p.done, p.total);
      progress.el.hidden = false;
      label += p.total > 0 ? ` ${p.done}/${p.total}` : "";
      if (p.message) label += ` ${p.message}`;
    } else {
      progress.el.hidden = true;
    }
    busyLabel.textContent = label;
    cancelBtn.hidden = !p || open.length === 0;
    cancelBtn.disabled = cancelling;
  }

  const client = createClient(model, {
    onPendingChange: (open) => {
      for (const id of [...progressById.keys()]) if (!open.some((o) => o.id === id)) progressById.delete(id);
      renderBusy();
      pendingSubs.forEach((f) => f(open));
    },
    onUnmatched: (msg) => {
      // An error reply that no id could be matched to (id null): still tell the user.
      const m = msg as Record<string, any> | null;
      if (m && typeof m === "object" && m.type === "reply" && m.ok === false && m.id == null) {
        showError(toErrorInfo(m.error));
      }
    },
  });
  cleanups.push(() => client.dispose());

  async function request<R = any>(kind: string, args: Record<string, unknown> = {}): Promise<Reply<R> | null> {
    showError(null);
    try {
      return await client.request<R>(kind, args, {
        onProgress: (p) => {
          progressById.set(p.id, p);
          renderBusy();
        },
      });
    } catch (e) {
      const err = asRequestError(e, kind);
      if (err.kind !== "cancelled" && err.kind !== "disposed") showError(err);
      return null;
    }
  }

  function decode<T>(what: string, fn: () => T): T | null {
    try {
      return fn();
    } catch (e) {
      showError({ kind: "decode", message: `Could not decode the ${what}: ${(e as Error).message}` });
      return null;
    }
  }

  const observeResize = (target: Element, cb: () => void) => {
    const RO = (root.ownerDocument.defaultView as (Window & typeof globalThis) | null)?.ResizeObserver;
    if (!RO) return;
    const ro = new RO(() => cb());
    ro.observe(target);
    cleanups.push(() => ro.disconnect());
  };

  listen(cleanups, cancelBtn, "click", () => {
    cancelling = true;
    for (const o of client.pending()) if (progressById.has(o.id)) client.cancel(o.id);
    renderBusy();
  });
  listen(cleanups, errDismiss, "click", () => showError(null));

  // Export menu.
  const closeMenu = () => {
    menu.hidden = true;
    exportBtn.setAttribute("aria-expanded", "false");
  };
  const openMenu = () => {
    const items = exportItems();
    menu.replaceChildren(
      ...items.map((it) => {
        const b = button(it.label, `lw-export-${it.id}`, "lw-menu-item");
        b.setAttribute("role", "menuitem");
        b.addEventListener("click", async () => {
          closeMenu();
          try {
            const blob = await it.make();
            if (blob) downloadBlob(blob, it.filename, root);
            else showError({ kind: "export", message: `Could not export ${it.label} in this browser.` });
          } catch (e) {
            showError({ kind: "export", message: `Export failed: ${String(e)}` });
          }
        });
        return b;
      }),
    );
    if (!items.length) menu.appendChild(h("div", { class: "lw-menu-empty", text: "Nothing to export yet" }));
    menu.hidden = false;
    exportBtn.setAttribute("aria-expanded", "true");
  };
  listen(cleanups, exportBtn, "click", () => (menu.hidden ? openMenu() : closeMenu()));
  listen(cleanups, root, "click", (ev) => {
    if (!menu.hidden && !exportBox.contains(ev.target as Node)) closeMenu();
  });
  listen(cleanups, root, "keydown", (ev) => {
    if (ev.key === "Escape" && !menu.hidden) {
      closeMenu();
      ev.stopImmediatePropagation();
      exportBtn.focus();
    }
  });

  // Theme.
  const retheme = () => {
    theme = applyTheme(root, model.get("theme"));
    palette = readPalette(root, theme);
    themeSubs.forEach((f) => f(palette));
  };
  onModel("change:theme", retheme);
  cleanups.push(watchHostTheme(root, retheme));

  // Common traits.
  // The `error` trait (Python sets it on every failure, clears it on success). A cancellation the
  // user asked for is not shown as an error.
  const traitError = (): ErrorInfo | null => {
    const e = model.get("error");
    if (isEmptyError(e)) return null;
    const info = toErrorInfo(e);
    return info.kind === "cancelled" ? null : info;
  };
  onModel("change:error", () => showError(traitError()));
  onModel("change:busy", renderBusy);
  const initial = traitError();
  if (initial) showError(initial);
  renderBusy();

  let disposed = false;
  return {
    model,
    root,
    header,
    toolbar,
    body,
    client,
    theme: () => theme,
    palette: () => palette,
    request,
    pending: () => client.pending().length > 0,
    showError,
    decode,
    setExports: (f) => {
      exportItems = f;
    },
    onTheme: (cb) => themeSubs.push(cb),
    onPending: (cb) => pendingSubs.push(cb),
    onModel,
    onChange: (traits, cb) => traits.forEach((t) => onModel(`change:${t}`, cb)),
    listen: (target, type, fn, o) => listen(cleanups, target, type, fn, o),
    observeResize,
    addCleanup: (fn) => cleanups.push(fn),
    dispose: () => {
      if (disposed) return;
      disposed = true;
      cleanups.splice(0).reverse().forEach((f) => {
        try {
          f();
        } catch {
          /* keep cleaning */
        }
      });
      root.remove();
    },
  };
}
