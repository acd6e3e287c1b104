// One pending redraw of the logit-lens table at a time: `schedule` runs `run` in the next
// animation frame of the canvas' window (a 16 ms timer where there are none), coalescing calls
// until then; `cancel` drops the pending one (a draw done now makes it moot).

export class FrameTimer {
  private frame = 0;

  /** `win()` is the window whose frames to use (read at each schedule), or null/undefined. */
  constructor(
    private readonly win: () => Window | null | undefined,
    private readonly run: () => void,
  ) {}

  /** Run on the next animation frame (coalesced). */
  schedule(): void {
    if (this.frame) return;
    const win = this.win();
    const raf = win?.requestAnimationFrame?.bind(win);
    const run = () => {
      this.frame = 0;
      this.run();
    };
    this.frame = raf ? raf(run) : (setTimeout(run, 16) as unknown as number);
  }

  /** Drop the pending run, if any. */
  cancel(): void {
    if (!this.frame) return;
    const win = this.win();
    if (win?.cancelAnimationFrame) win.cancelAnimationFrame(this.frame);
    else clearTimeout(this.frame);
    this.frame = 0;
  }
}
