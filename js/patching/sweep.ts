// The exact sweep's controls in the PatchingHeatmap header: "Run exact sweep" (disabled while one
// runs), the partial badge after a cancelled sweep, the state line, and the progress bar with its
// own Cancel for a sweep this view did not request (started from Python or another view: read
// from the `sweep_progress` trait; this view's own requests get the shared busy bar).

import { button, h } from "../lib/dom";
import { numberOr } from "../lib/json";
import { progressBar } from "../lib/widget";

export class SweepControls {
  readonly sweepBtn = button("Run exact sweep", "lw-sweep", "lw-btn lw-btn-primary");
  readonly partialBadge = h("span", { class: "lw-pt-badge lw-pt-partial", testid: "lw-partial", attrs: { role: "status" } });
  readonly stateEl = h("span", { class: "lw-summary", testid: "lw-sweep-state" });
  // Progress of a sweep this view did not request (started from Python, or by another view of the
  // same widget): from the `sweep_progress` trait, with its own Cancel (request cancel_sweep).
  readonly bar = progressBar("lw-sweep-bar");
  readonly progressText = h("span", { class: "lw-summary", testid: "lw-sweep-progress-text" });
  readonly cancelBtn = button("Cancel", "lw-cancel-sweep", "lw-btn lw-btn-small");
  readonly progress = h("span", { class: "lw-pt-sweep-progress", testid: "lw-sweep-progress" }, [this.bar.el, this.progressText, this.cancelBtn]);
  /** Cancel was clicked and the sweep has not stopped yet. */
  cancelling = false;

  constructor() {
    this.sweepBtn.title = "Rerun the model once per cell of every site shown (background; Cancel keeps what is done)";
    this.partialBadge.hidden = true;
    this.cancelBtn.title = "Stop the sweep after its current batch; what is done stays";
    this.progress.hidden = true;
  }

  /** The header's elements, in order. */
  get els(): HTMLElement[] {
    return [this.sweepBtn, this.progress, this.partialBadge, this.stateEl];
  }

  /**
   * Show `state` (the `sweep_state` trait); `own`: this view has a sweep request pending; `nSites`
   * sites shown; `counts` of exact cells; `progress` the `sweep_progress` trait.
   */
  render(state: string, own: boolean, nSites: number, counts: { done: number; total: number; partial: boolean }, progress: unknown): void {
    const sweeping = state === "running" || own;
    if (!sweeping) this.cancelling = false;
    this.sweepBtn.disabled = sweeping || nSites === 0;
    this.sweepBtn.textContent = sweeping ? "Sweeping…" : "Run exact sweep";
    // `sweep_state` is authoritative; entries flagged partial only count when it says nothing.
    const partial = state === "partial" || (!sweeping && state !== "done" && counts.partial);
    this.partialBadge.hidden = !partial;
    this.partialBadge.textContent = partial ? `partial (cancelled): ${counts.done} of ${counts.total} cells` : "";
    this.partialBadge.dataset.done = String(counts.done);
    this.partialBadge.dataset.total = String(counts.total);
    // A sweep this view did not request: progress and Cancel from the trait (our own requests get
    // the shared busy bar, fed by progress messages).
    const sp = progress as { site?: unknown; done?: unknown; total?: unknown; site_index?: unknown; n_sites?: unknown } | null;
    const spDone = numberOr(sp?.done, 0);
    const spTotal = numberOr(sp?.total, 0);
    const showForeign = state === "running" && !own;
    this.progress.hidden = !showForeign;
    if (showForeign) {
      this.bar.set(spDone, spTotal);
      const si = numberOr(sp?.site_index, NaN);
      const ns = numberOr(sp?.n_sites, NaN);
      const where = Number.isFinite(si) && Number.isFinite(ns) && ns > 1 ? ` (site ${si + 1} of ${ns})` : "";
      this.progressText.textContent = spTotal > 0 ? `${typeof sp?.site === "string" ? `${sp.site} ` : ""}${spDone}/${spTotal}${where}` : "starting…";
      this.cancelBtn.hidden = (sp as { cancellable?: unknown } | null)?.cancellable === false;
      this.cancelBtn.disabled = this.cancelling;
      this.cancelBtn.textContent = this.cancelling ? "Cancelling…" : "Cancel";
    }
    this.stateEl.dataset.state = state;
    this.stateEl.textContent = sweeping ? `exact sweep running: ${counts.done} of ${counts.total} cells` : state === "done" ? "exact sweep done" : "";
  }
}
