/**
 * The backstop both folder watches share (dirwatch.ts on Linux, chokidar.ts on Windows,
 * macOS and when polling): every watched folder is re-read (names only) at least every
 * `everyMs` (SWEEP_MS), whatever its events say, so lost events or a watch that died cannot
 * leave a file unseen for longer (issue #20's soak stall; issue #14 for the chokidar path).
 *
 * Invariants:
 * - One sweep at a time: the folders one after the other, then the next sweep is planned
 *   sweepDelay() after this one ended (at least `everyMs`, and at most 2 % of the time
 *   however many folders are watched).
 * - A folder read less than `everyMs / 2` ago (because of its events), or with a re-read
 *   already planned, is skipped: its watch evidently works.
 * - The watch does the re-read (`reread`): what a re-read compares and reports is its own.
 * - Nothing after close(); an error in a sweep goes to `fail` and the next one is planned.
 */
import { performance } from 'node:perf_hooks';
import { SWEEP_MS, sweepDelay } from './watch-rules.js';

/** What the backstop needs to know about a watched folder. */
export interface SweptFolder {
  /** When the folder was last read, or its watch last reported a change in it (performance.now()). */
  lastScanAt: number;
  /** A re-read of it is planned already (dirwatch.ts' rescan timer). */
  timer?: NodeJS.Timeout | null;
}

export interface BackstopOptions<F extends SweptFolder> {
  /** How often every folder is re-read at least (default SWEEP_MS). */
  everyMs?: number;
  /** The watched folders; read at each sweep, so folders added or removed meanwhile count. */
  folders: Map<string, F>;
  /** Re-reads one folder (names only) and reports what its events had not. */
  reread(dir: string, f: F): Promise<void>;
  fail(err: unknown): void;
}

export interface Backstop {
  close(): void;
}

/** Starts the sweeps: the first one `everyMs` from now. */
export function startBackstop<F extends SweptFolder>(o: BackstopOptions<F>): Backstop {
  const everyMs = o.everyMs ?? SWEEP_MS;
  let timer: NodeJS.Timeout | null = null;
  let closed = false;

  async function sweep(): Promise<void> {
    const t0 = performance.now();
    for (const [dir, f] of [...o.folders]) {
      if (closed) return;
      if (o.folders.get(dir) !== f || f.timer || performance.now() - f.lastScanAt < everyMs / 2) continue;
      await o.reread(dir, f);
    }
    plan(performance.now() - t0);
  }

  function plan(lastMs: number): void {
    if (closed) return;
    timer = setTimeout(() => {
      timer = null;
      sweep().catch((err: unknown) => {
        if (closed) return;
        o.fail(err);
        plan(lastMs);
      });
    }, sweepDelay(lastMs, everyMs));
    timer.unref?.();
  }

  plan(0);
  return {
    close(): void {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}
