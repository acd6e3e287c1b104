// When the views redraw: parts marked dirty (by trait changes, clicks, resizes) are drawn together
// once per microtask or animation frame, and a width change of the output relayouts.

import type { Widget } from "./widget";

export interface Redraw<P> {
  /** Mark parts dirty; they are drawn together at the next microtask (or animation frame). */
  invalidate(...parts: P[]): void;
  /** Mark parts dirty and draw everything dirty now (the first paint). */
  flush(...parts: P[]): void;
  /** Draw nothing more; a pending frame is cancelled. */
  dispose(): void;
}

export interface RedrawOptions {
  /** "frame": draw in the animation frames of `win` (a 16 ms timer where there are none). */
  timing?: "microtask" | "frame";
  win?: Window | null;
}

/** Coalesce redraws: `draw` gets the set of parts marked dirty since the last draw. */
export function createRedraw<P>(draw: (dirty: Set<P>) => void, opts: RedrawOptions = {}): Redraw<P> {
  const win = opts.win ?? null;
  const dirty = new Set<P>();
  let scheduled = false;
  let disposed = false;
  let frame: number | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;

  function flush(): void {
    scheduled = false;
    frame = null;
    timer = null;
    if (disposed) return;
    const d = new Set(dirty);
    dirty.clear();
    draw(d);
  }

  return {
    invalidate: (...parts) => {
      parts.forEach((p) => dirty.add(p));
      if (scheduled || disposed) return;
      scheduled = true;
      if (opts.timing !== "frame") queueMicrotask(flush);
      else if (win && typeof win.requestAnimationFrame === "function") frame = win.requestAnimationFrame(flush);
      else timer = setTimeout(flush, 16);
    },
    flush: (...parts) => {
      parts.forEach((p) => dirty.add(p));
      flush();
    },
    dispose: () => {
      disposed = true;
      if (frame !== null) win?.cancelAnimationFrame?.(frame);
      if (timer !== null) clearTimeout(timer);
    },
  };
}

/** Call `relayout` when `width()` has changed by 8 CSS px or more since the last time (`target` resized). */
export function onWidthChange(w: Widget, target: Element, width: () => number, relayout: () => void): void {
  let last = width();
  w.observeResize(target, () => {
    const wd = width();
    if (Math.abs(wd - last) >= 8) {
      last = wd;
      relayout();
    }
  });
}
