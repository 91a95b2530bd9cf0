/**
 * A one-line progress bar on stderr, redrawn in place, for a terminal only (a log file or a pipe
 * gets no carriage-return noise; callers log plain lines there if they want).
 */
export class TtyProgressBar {
  private lastDraw = 0;
  private drawn = false;
  private ended = false;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  get enabled(): boolean {
    return this.stream.isTTY === true;
  }

  /** Show `frac` (0..1) done; redrawn at most every 100 ms. */
  update(frac: number, detail = ''): void {
    if (!this.enabled || this.ended) return;
    const now = Date.now();
    if (now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.draw(frac, detail);
  }

  /** Draw it full and end the line (only if it was ever shown). */
  finish(detail = ''): void {
    if (!this.enabled || this.ended) return;
    this.ended = true;
    if (!this.drawn) return;
    this.draw(1, detail);
    this.stream.write('\n');
  }

  private draw(frac: number, detail: string): void {
    const f = Math.max(0, Math.min(1, frac));
    const width = 30;
    const filled = Math.round(f * width);
    this.stream.write(`\r${this.label} [${'='.repeat(filled)}${' '.repeat(width - filled)}] ${(f * 100).toFixed(0).padStart(3)}% ${detail}\x1b[K`);
    this.drawn = true;
  }
}
