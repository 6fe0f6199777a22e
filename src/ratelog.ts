/**
 * Rate-limited warnings for things an attacker can make happen at will (refused
 * connections, refused cross-site requests): the first line of a kind is logged at once,
 * the rest of the interval is counted and told in one summary line, so a flood costs a
 * few lines a minute instead of one per attempt.
 */
import type { Logger } from './log.js';

export class RateLimitedLog {
  private readonly counts = new Map<string, { n: number; last: string }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 60_000,
  ) {}

  /** Log `line` now if no line of this `kind` was logged in the current interval, else count it. */
  warn(kind: string, line: string): void {
    const c = this.counts.get(kind);
    if (!c) {
      this.counts.set(kind, { n: 0, last: line });
      this.log.warn(line);
      this.arm();
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
