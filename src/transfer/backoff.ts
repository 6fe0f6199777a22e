import { backoffDelay } from '../backoff.js';

/** Jitter ±20 % so many agents do not retry in lockstep after an outage. */
const JITTER = 0.2;

/** Capped exponential backoff shared by every job of one destination, wakeable early. */
export class Backoff {
  /** Failures since the last success or wake (each one that set a new attempt time). */
  private failures = 0;
  private nextAt = 0;
  private wakers = new Set<() => void>();

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
  ) {}

  /** A failure: the next attempt waits; the delay after that doubles (capped). */
  failed(now = Date.now()): number {
    if (now >= this.nextAt) {
      this.failures++;
      this.nextAt = now + backoffDelay(this.failures, { initialMs: this.initialMs, maxMs: this.maxMs, jitter: JITTER });
    }
    return this.nextAt - now;
  }

  succeeded(): void {
    this.failures = 0;
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
    this.failures = 0;
    this.nextAt = 0;
    for (const w of [...this.wakers]) w();
  }
}
