/**
 * Rate-limited warnings for things a peer can make happen at will (refused connections,
 * refused cross-site requests, a misconfigured agent retrying every few seconds).
 *
 * With a source address (`warn(kind, line, from)`): the first line per (kind, address) is
 * logged once, repeats are counted and told in one summary line per interval ("repeated 5
 * more times from 127.0.0.1 in the last 60 s …"); the key is forgotten after `forgetMs`
 * without a repeat, so a peer coming back much later is named again in full. At most
 * `burst` new addresses per kind are named per interval and at most `maxKeys` keys are
 * tracked; beyond that, lines are counted under "other addresses" (bounded memory).
 *
 * Without an address: the first `burst` lines of a kind per interval are logged, the rest
 * is summarised.
 *
 * RepeatBook is the pure part (time is passed in); RateLimitedLog adds the timer.
 */
import type { Logger } from './log.js';

interface Entry {
  kind: string;
  from: string | undefined;
  logged: number;
  /** Repeats counted since the last summary. */
  n: number;
  last: string;
  lastSeen: number;
}

export interface RepeatBookOptions {
  burst: number;
  maxKeys: number;
  /** A key with an address is forgotten after this long without a line. */
  forgetMs: number;
}

const OTHER = 'other addresses';

export class RepeatBook {
  private readonly entries = new Map<string, Entry>();
  /** New addresses named per kind in the current interval. */
  private readonly fresh = new Map<string, number>();
  private periodStart: number | null = null;

  constructor(private readonly o: RepeatBookOptions) {}

  get size(): number {
    return this.entries.size;
  }

  /** True: log `line` now; false: it was counted for the next summary. */
  note(kind: string, line: string, from: string | undefined, now: number): boolean {
    this.periodStart ??= now;
    let key = `${kind}\0${from ?? ''}`;
    let e = this.entries.get(key);
    if (!e) {
      const fresh = this.fresh.get(kind) ?? 0;
      if (from !== undefined && (this.entries.size >= this.o.maxKeys || fresh >= this.o.burst)) {
        key = `${kind}\0\0${OTHER}`; // one overflow key per kind: kinds are constants in the code
        e = this.entries.get(key);
        if (!e) {
          e = { kind, from: OTHER, logged: 1, n: 0, last: line, lastSeen: now };
          this.entries.set(key, e);
        }
      } else {
        if (from !== undefined) this.fresh.set(kind, fresh + 1);
        e = { kind, from, logged: 0, n: 0, last: line, lastSeen: now };
        this.entries.set(key, e);
      }
    }
    e.lastSeen = now;
    if (e.logged < (e.from === undefined ? this.o.burst : 1)) {
      e.logged++;
      return true;
    }
    e.n++;
    e.last = line;
    return false;
  }

  /** The summary lines for the interval that ends now; forgets quiet keys. */
  take(now: number): string[] {
    const secs = Math.max(1, Math.round((now - (this.periodStart ?? now)) / 1000));
    this.periodStart = now;
    this.fresh.clear();
    const out: string[] = [];
    for (const [key, e] of this.entries) {
      if (e.n > 0) {
        const where = e.from === undefined ? '' : ` from ${e.from}`;
        out.push(`repeated ${e.n} more time${e.n === 1 ? '' : 's'}${where} in the last ${secs} s (${e.kind}); the latest: ${e.last}`);
        e.n = 0;
        if (e.from === undefined) e.logged = this.o.burst; // still flooding: only summaries until a quiet interval
        continue;
      }
      if (e.from === undefined || now - e.lastSeen >= this.o.forgetMs) this.entries.delete(key);
    }
    if (this.entries.size === 0) this.periodStart = null;
    return out;
  }
}

/** The summary interval; TDXFER_TEST_REFUSAL_SUMMARY_MS shortens it in tests only (not a config field). */
function defaultIntervalMs(): number {
  const v = Number(process.env.TDXFER_TEST_REFUSAL_SUMMARY_MS);
  return Number.isInteger(v) && v > 0 ? v : 60_000;
}

export class RateLimitedLog {
  private readonly book: RepeatBook;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = defaultIntervalMs(),
    burst = 5,
    maxKeys = 256,
  ) {
    this.book = new RepeatBook({ burst, maxKeys, forgetMs: 10 * intervalMs });
  }

  /** Log `line` now if it is the first of its (kind, from) key (see the module comment), else count it. */
  warn(kind: string, line: string, from?: string): void {
    const now = Date.now();
    if (this.book.note(kind, line, from, now)) this.log.warn(line);
    this.arm();
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Summarise what was counted; stop the timer once nothing is tracked. */
  flush(): void {
    for (const line of this.book.take(Date.now())) this.log.warn(line);
    if (this.book.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
