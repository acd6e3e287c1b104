// Test helpers: a fake anywidget model, a view harness (mount per test, queries by test id,
// captured downloads), a float16 encoder, a stub 2D canvas context.

import { afterEach, beforeEach, expect, vi } from "vitest";
import type { AnyModel, Callback, RenderProps } from "../lib/types";

export class FakeModel implements AnyModel {
  attrs: Record<string, any>;
  listeners = new Map<string, Set<Callback>>();
  /** Messages the view sent (content, buffers). */
  sent: Array<{ content: any; buffers?: unknown }> = [];
  saves = 0;

  constructor(attrs: Record<string, any> = {}) {
    this.attrs = { ...attrs };
  }
  get(name: string): any {
    return this.attrs[name];
  }
  set(name: string, value: unknown): void {
    const old = this.attrs[name];
    this.attrs[name] = value;
    if (old !== value) this.emit(`change:${name}`, value);
  }
  /** Set several traits then fire their change events, like a Python `hold_sync` update. */
  update(values: Record<string, unknown>): void {
    Object.assign(this.attrs, values);
    for (const k of Object.keys(values)) this.emit(`change:${k}`, values[k]);
  }
  save_changes(): void {
    this.saves++;
  }
  on(event: string, cb: Callback): void {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(cb);
  }
  off(event?: string | null, cb?: Callback | null): void {
    if (!event) return this.listeners.clear();
    if (!cb) return void this.listeners.delete(event);
    this.listeners.get(event)?.delete(cb);
  }
  send(content: unknown, _callbacks?: unknown, buffers?: unknown): void {
    this.sent.push({ content, buffers });
  }
  emit(event: string, ...args: unknown[]): void {
    for (const cb of [...(this.listeners.get(event) ?? [])]) cb(...args);
  }
  /** A message from Python. */
  receive(msg: unknown, buffers: unknown[] = []): void {
    this.emit("msg:custom", msg, buffers);
  }
  listenerCount(event?: string): number {
    if (event) return this.listeners.get(event)?.size ?? 0;
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }
  requests(): any[] {
    return this.sent.map((s) => s.content).filter((c) => c?.type === "request");
  }
}

/** float -> float16 bits, round to nearest even (test-only encoder). */
export function toF16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function f16Bytes(values: ArrayLike<number>): DataView {
  const u = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) u[i] = toF16Bits(values[i]);
  return new DataView(u.buffer);
}

export function f32Bytes(values: ArrayLike<number>): DataView {
  return new DataView(new Float32Array(values).buffer);
}

/** Causal attention patterns [L, H, T, T]: head (l, h) attends from q to key (q - ((l + h) % 2)) mostly. */
export function fakePatterns(L: number, H: number, T: number): Float32Array {
  const out = new Float32Array(L * H * T * T);
  for (let l = 0; l < L; l++)
    for (let h = 0; h < H; h++)
      for (let q = 0; q < T; q++) {
        const base = ((l * H + h) * T + q) * T;
        const target = Math.max(0, q - ((l + h) % 2));
        const rest = q > 0 ? 0.25 / q : 0;
        for (let k = 0; k <= q; k++) out[base + k] = k === target ? (q > 0 ? 0.75 : 1) : rest;
        if (q > 0 && target === q) out[base + q] = 0.75;
      }
  return out;
}

/** A 2D context stub that accepts every call (happy-dom has no canvas); records calls by name. */
export function stubContext(): { ctx: CanvasRenderingContext2D; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const target: Record<string, unknown> = {
    createImageData: (w: number, h: number) => ({ width: w, height: h, data: new Uint8ClampedArray(w * h * 4) }),
    measureText: (s: string) => ({ width: s.length * 6 }),
  };
  const ctx = new Proxy(target, {
    get(t, prop: string) {
      if (prop in t) {
        const v = t[prop];
        if (typeof v === "function") {
          return (...args: unknown[]) => {
            calls.set(prop, (calls.get(prop) ?? 0) + 1);
            return (v as (...a: unknown[]) => unknown)(...args);
          };
        }
        return v;
      }
      return (..._args: unknown[]) => {
        calls.set(prop, (calls.get(prop) ?? 0) + 1);
      };
    },
    set(t, prop: string, value) {
      t[prop] = value;
      return true;
    },
  }) as unknown as CanvasRenderingContext2D;
  return { ctx, calls };
}

export const tick = () => new Promise<void>((r) => setTimeout(r, 0));

export function last<T>(a: readonly T[]): T {
  return a[a.length - 1];
}

/**
 * Run `fn` with URL.createObjectURL recorded (what a download, e.g. the Export menu, goes
 * through) and restored afterwards; returns the blobs it was called with.
 */
export async function captureDownloads(fn: () => void | Promise<void>): Promise<Blob[]> {
  const created: Blob[] = [];
  const orig = URL.createObjectURL;
  URL.createObjectURL = ((b: Blob) => {
    created.push(b);
    return "blob:fake";
  }) as typeof URL.createObjectURL;
  try {
    await fn();
  } finally {
    URL.createObjectURL = orig;
  }
  return created;
}

/** A widget view module's default export. */
export interface View {
  render(props: RenderProps): () => void;
}

export interface ViewHarness {
  /** The element the view was last mounted into. */
  readonly el: HTMLElement;
  /** Render the view for `model` into a fresh element in the document. */
  mount(model: FakeModel): HTMLElement;
  /** Run the view's cleanup now (as the host does when the output goes away). */
  unmount(): void;
  q<E extends Element = HTMLElement>(sel: string): E | null;
  /** The element with this data-testid. */
  tid<E extends Element = HTMLElement>(id: string): E | null;
  /** Every element with this data-testid. */
  all<E extends Element = HTMLElement>(id: string): E[];
  /** Export → SVG: the one SVG document downloaded, as text. */
  exportSvg(): Promise<string>;
  /**
   * The prompt row of a mounted view: Run sends `run {prompt}`; Run is disabled and the busy
   * indicator shown until the reply; Ctrl+Enter in the prompt sends again, Enter alone does not.
   */
  expectPromptRuns(model: FakeModel): void;
}

/**
 * Mount `view` in the tests of this file: after each test the view is cleaned up (unless the test
 * did), mocks are restored and the document is emptied.
 */
export function viewHarness(view: View): ViewHarness {
  let el: HTMLElement | undefined;
  let cleanup: (() => void) | undefined;
  beforeEach(() => {
    cleanup = undefined;
  });
  afterEach(() => {
    cleanup?.();
    vi.restoreAllMocks();
    document.body.replaceChildren();
  });
  const root = (): HTMLElement => {
    if (!el) throw new Error("viewHarness: mount() first");
    return el;
  };
  const q = <E extends Element = HTMLElement>(sel: string) => root().querySelector(sel) as E | null;
  const tid = <E extends Element = HTMLElement>(id: string) => q<E>(`[data-testid="${id}"]`);
  return {
    get el() {
      return root();
    },
    mount(model) {
      el = document.createElement("div");
      document.body.appendChild(el);
      cleanup = view.render({ model, el });
      return el;
    },
    unmount() {
      const c = cleanup;
      cleanup = undefined;
      c?.();
    },
    q,
    tid,
    all: <E extends Element = HTMLElement>(id: string) => [...root().querySelectorAll<E>(`[data-testid="${id}"]`)],
    async exportSvg() {
      const created = await captureDownloads(async () => {
        tid("lw-export")!.click();
        tid("lw-export-svg")!.click();
        await tick();
      });
      expect(created.length).toBe(1);
      return created[0].text();
    },
    expectPromptRuns(model) {
      const p = tid<HTMLTextAreaElement>("lw-prompt")!;
      p.value = "Hello world";
      tid("lw-run")!.click();
      expect(last(model.requests())).toMatchObject({ type: "request", kind: "run", args: { prompt: "Hello world" } });
      expect(tid<HTMLButtonElement>("lw-run")!.disabled).toBe(true);
      expect(tid("lw-busy")!.hidden).toBe(false);
      model.receive({ type: "reply", id: last(model.requests()).id, ok: true, result: { n_tokens: 3 } });
      expect(tid<HTMLButtonElement>("lw-run")!.disabled).toBe(false);
      expect(tid("lw-busy")!.hidden).toBe(true);
      p.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", ctrlKey: true, bubbles: true }));
      expect(model.requests().length).toBe(2);
      p.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
      expect(model.requests().length).toBe(2);
    },
  };
}

/** Pick `value` in a select as the user does: set it, then a (bubbling) change event. */
export function choose(select: HTMLSelectElement, value: string): void {
  select.value = value;
  select.dispatchEvent(new Event("change", { bubbles: true }));
}
