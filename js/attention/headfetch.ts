// The focused head of a pooled AttentionGrid, fetched from the kernel: its overview (a
// max-pooled [side, side] pattern, `overview` request, prompts over window_max tokens) and the
// window drawn in the focus panel at full resolution (`window` request). One window request at a
// time: the latest one wanted follows when the current one comes; a window that failed is not
// asked for again until the user moves it. Replies for older patterns (before `reset`) are dropped.

import type { Head } from "./grid";
import type { PatternMeta } from "./pooled";
import { decodePatternTensor } from "./pooled";
import type { Bounds } from "./window";
import { decodeTensor } from "../lib/buffers";
import type { Widget } from "../lib/widget";

/** A head's overview: `side` x `side` cells, each the max of `bin` x `bin` tokens. */
export interface HeadOverview {
  /** "l,h" */
  key: string;
  side: number;
  bin: number;
  data: Float32Array;
}

/** A window of a head's pattern: rows q0..q1, columns k0..k1 (`b`), row-major. */
export interface HeadWindow {
  /** "l,h|q0,q1,k0,k1" */
  id: string;
  /** "l,h" */
  key: string;
  b: Bounds;
  data: Float32Array;
}

export class HeadFetch {
  /** The last overview that came, or null. */
  over: HeadOverview | null = null;
  /** The last window that came, or null. */
  win: HeadWindow | null = null;
  private gen = 0;
  private fetchingOver = "";
  private pendingWin = "";
  private failedWin = "";
  private queuedWin: [Head, Bounds] | null = null;

  /** `onData` runs when an overview or a window came (redraw the focus). */
  constructor(
    private readonly w: Pick<Widget, "request" | "decode">,
    private readonly onData: () => void,
  ) {}

  /** New patterns: forget the old ones' overview and window; their replies are dropped. */
  reset(): void {
    this.gen++;
    this.over = null;
    this.win = null;
    this.failedWin = "";
  }

  /** The user moved the window: one that failed may be asked for again. */
  retry(): void {
    this.failedWin = "";
  }

  /** Ask the kernel for a pooled head's overview; redraw the focus when it comes. */
  async fetchOverview(f: Head): Promise<void> {
    const key = `${f[0]},${f[1]}`;
    if (this.fetchingOver === key) return;
    this.fetchingOver = key;
    const mine = this.gen;
    const reply = await this.w.request<{ meta: PatternMeta }>("overview", { layer: f[0], head: f[1] });
    if (this.fetchingOver === key) this.fetchingOver = "";
    if (!reply || mine !== this.gen || !reply.buffers[0]) return;
    const meta = reply.result.meta;
    const t = this.w.decode("pattern overview", () => decodePatternTensor(reply.buffers[0], meta));
    if (t) this.over = { key, side: Number(meta.size), bin: Number(meta.bin) || 1, data: t.data };
    this.onData();
  }

  /** Ask the kernel for window `b` of head `f` at full resolution (one request at a time: the
   * latest wanted window follows when the current one comes). */
  async fetchWindow(f: Head, b: Bounds): Promise<void> {
    const key = `${f[0]},${f[1]}`;
    const id = `${key}|${b.join(",")}`;
    if ((this.win && this.win.id === id) || this.pendingWin === id || this.failedWin === id) return;
    if (this.pendingWin) {
      this.queuedWin = [f, b];
      return;
    }
    this.pendingWin = id;
    const mine = this.gen;
    const [q0, q1, k0, k1] = b;
    const reply = await this.w.request<{ meta: PatternMeta }>("window", { layer: f[0], head: f[1], q0, q1, k0, k1 });
    this.pendingWin = "";
    if (!reply) this.failedWin = id;
    if (reply && mine === this.gen && reply.buffers[0]) {
      const t = this.w.decode("pattern window", () => decodeTensor(reply.buffers[0], reply.result.meta));
      if (t) this.win = { id, key, b, data: t.data };
      this.onData();
    }
    const next = this.queuedWin;
    this.queuedWin = null;
    if (next && mine === this.gen) void this.fetchWindow(next[0], next[1]);
  }
}
