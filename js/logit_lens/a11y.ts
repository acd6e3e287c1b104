// The accessible data layer of the logit-lens table: a visually hidden table (lib/celltable.ts)
// of the cells the canvas has drawn, i.e. the visible window only (the canvas is virtualised; a
// 514-token SmolLM2 lens has 15,934 cells). Rebuilt when the window or the data changes (not on
// hover), deferred until scrolling pauses (lib/celltable.ts; `flush` builds at once). Each <td>:
//   text              the cell's top-1 token (whitespace made visible, as drawn; the canvas may
//                     cut it with an ellipsis to fit, the table has all of it)
//   data-row/col      row (L0.., final) and position
//   data-token-id     the top-1 token id
//   data-prob         its probability (float16 from Python, as a JS number)
//   data-value        the value the cell is shaded by (mode "top": the top-1 probability;
//                     "target_prob": the target's probability; "target_rank": the colour strength
//                     of its rank, 1 = rank 0); "NaN" when nothing is shaded
//   data-target-prob, data-target-rank   the target's probability and rank (when a target is set)
//   data-changed      "true" where the top-1 token differs from the unablated table (marked ◤)
// The table element carries data-window="r0,r1,c0,c1" like the canvas.

import { CellTable } from "../lib/celltable";
import { displayToken } from "../lib/tokens";
import type { VWindow } from "../lib/virtual";
import type { Shade } from "./data";
import { vocabToken } from "./data";
import type { LensData } from "./table";

export class LensCellTable {
  readonly table = new CellTable("lw-lens-cells");
  private last: unknown[] = [];
  /** Number of rebuilds (tests check that hover redraws do not rebuild). */
  builds = 0;

  get el(): HTMLTableElement {
    return this.table.el;
  }

  /** Show window `win` of `d` (shaded by `shade`); `rowLabel(r)` names row r. */
  update(d: LensData, shade: Shade, win: VWindow, rowLabel: (r: number) => string): void {
    const t = d.table;
    const wkey = `${win.r0},${win.r1},${win.c0},${win.c1}`;
    const key = [t, shade, d.vocab, d.tokens, d.rowLabels, d.stats, d.target, d.changed, wkey];
    if (key.length === this.last.length && key.every((k, i) => k === this.last[i])) return;
    this.last = key;
    this.table.defer(() => this.build(d, shade, win, rowLabel, wkey));
  }

  /** Build a deferred update now (a browser test reading the cells right after a scroll). */
  flush(): void {
    this.table.flush();
  }

  cancel(): void {
    this.table.cancel();
  }

  private build(d: LensData, shade: Shade, win: VWindow, rowLabel: (r: number) => string, wkey: string): void {
    this.builds++;
    const t = d.table;
    this.el.dataset.window = wkey;
    this.el.dataset.mode = d.mode;
    if (!t || win.r0 >= win.r1 || win.c0 >= win.c1) {
      this.table.clear("Logit lens: no cells drawn.");
      return;
    }
    const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
    const stats = d.target >= 0 ? d.stats : null;
    this.table.set({
      caption:
        `Logit lens, the cells in view (rows ${win.r0}–${win.r1 - 1} of ${t.R}, positions ${win.c0}–${win.c1 - 1} of ${t.T}): ` +
        "each cell is the top predicted token of that row's residual stream (L{l}: before layer l; final: after the last layer).",
      rows: range(win.r0, win.r1),
      cols: range(win.c0, win.c1),
      rowHeader: rowLabel,
      colHeader: (c) => displayToken(d.tokens[c] ?? ""),
      cell: (r, c) => {
        const i = r * t.T + c;
        const id = t.ids[i * t.k];
        const data: Record<string, string> = {
          tokenId: String(id),
          prob: String(t.k > 0 ? t.probs[i * t.k] : NaN),
          value: String(shade.values[i]),
        };
        if (stats?.prob) data.targetProb = String(stats.prob[i]);
        if (stats?.rank) data.targetRank = String(stats.rank[i]);
        if (d.changed?.[i]) data.changed = "true";
        return { text: displayToken(vocabToken(d.vocab, id)), data };
      },
    });
  }
}
