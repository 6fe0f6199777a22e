/**
 * A fake of src/clock.ts's Clock: time moves only when the test says so, and every timer
 * due on the way runs at its own time, in order. Parts that defer work to the next turn of
 * the event loop (mdns.ts reads waiting packets with setImmediate before it re-arms) get
 * that turn between two timers, so `advance(60_000)` runs a whole minute of schedule in
 * milliseconds of real time.
 */
import type { Cancel, Clock } from '../../src/clock.js';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/** Lets setImmediate / promise callbacks queued by a timer run (two turns: a callback may queue one more). */
async function turns(n = 2): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Set<Timer>();

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  after(ms: number, fn: () => void): Cancel {
    const t: Timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.add(t);
    return () => {
      this.#timers.delete(t);
    };
  }

  /** Timers waiting to run. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the next timer runs (ms from now), or null if none is armed. */
  nextIn(): number | null {
    const t = this.#next();
    return t === null ? null : t.at - this.#now;
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way at its own time. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await turns();
    for (;;) {
      const t = this.#next();
      if (t === null || t.at > end) break;
      this.#timers.delete(t);
      this.#now = Math.max(this.#now, t.at);
      t.fn();
      await turns();
    }
    this.#now = end;
  }

  #next(): Timer | null {
    let best: Timer | null = null;
    for (const t of this.#timers) if (best === null || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    return best;
  }
}
