/**
 * Rate-limited warnings for things an attacker can make happen at will (refused
 * connections, refused cross-site requests): the first `burst` lines of a kind in an
 * interval are logged at once, the rest is counted and told in one summary line, so a
 * flood costs a few lines a minute instead of one per attempt.
 */
import type { Logger } from './log.js';

export class RateLimitedLog {
  private readonly counts = new Map<string, { logged: number; n: number; last: string }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 60_000,
    private readonly burst = 5,
  ) {}

  /** Log `line` now if fewer than `burst` lines of this `kind` were logged in the current interval, else count it. */
  warn(kind: string, line: string): void {
    let c = this.counts.get(kind);
    if (!c) {
      c = { logged: 0, n: 0, last: line };
      this.counts.set(kind, c);
      this.arm();
    }
    if (c.logged < this.burst) {
      c.logged++;
      this.log.warn(line);
      return;
    }
    c.n++;
    c.last = line;
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Summarise what was counted; stop the timer once an interval passed with nothing new. */
  flush(): void {
    let any = false;
    for (const [kind, c] of this.counts) {
      if (c.n === 0) {
        this.counts.delete(kind);
        continue;
      }
      any = true;
      this.log.warn(`${c.n} more like this in the last ${Math.round(this.intervalMs / 1000)} s (${kind}); the latest: ${c.last}`);
      c.n = 0;
      c.logged = this.burst; // still flooding: only summaries until a quiet interval
    }
    if (!any && this.counts.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
