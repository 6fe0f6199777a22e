/** Capped exponential backoff shared by every job of one destination, wakeable early. */
export class Backoff {
  private delay: number;
  private nextAt = 0;
  private wakers = new Set<() => void>();

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
  ) {
    this.delay = initialMs;
  }

  /** A failure: the next attempt waits; the delay after that doubles (capped). */
  failed(now = Date.now()): number {
    if (now >= this.nextAt) {
      // Jitter ±20 % so many agents do not retry in lockstep after an outage.
      const d = Math.round(this.delay * (0.8 + Math.random() * 0.4));
      this.nextAt = now + d;
      this.delay = Math.min(this.delay * 2, this.maxMs);
    }
    return this.nextAt - now;
  }

  succeeded(): void {
    this.delay = this.initialMs;
    this.nextAt = 0;
  }

  /** Resolve at the next attempt time, or at once on wake(), or when `signal` aborts. */
  wait(signal?: AbortSignal): Promise<void> {
    const ms = this.nextAt - Date.now();
    if (ms <= 0 || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wakers.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wakers.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** The peer came back (announcement, table change): try now. */
  wake(): void {
    this.delay = this.initialMs;
    this.nextAt = 0;
    for (const w of [...this.wakers]) w();
  }
}
