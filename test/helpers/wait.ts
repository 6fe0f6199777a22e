/**
 * The one way tests wait (issue #11, item 4). CI shares two cores with whatever else runs,
 * so a test never relies on a fixed sleep being long enough and never asserts a speed:
 * it waits for an outcome, and a deadline only detects a hang.
 */
import { deadline } from './platform.js';

/** Shortest deadline any poll gets: on a loaded 2-core machine, seconds of stall are normal. */
export const MIN_DEADLINE_MS = 60_000;

/**
 * Polls `cond` until it holds. `timeoutMs` is raised to MIN_DEADLINE_MS: a deadline is a hang
 * detector, never a speed check (speeds go in `npm run bench`).
 */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs = MIN_DEADLINE_MS, what: () => string = () => 'condition'): Promise<void> {
  // Scaled for slow lanes (the Windows lane under wine, helpers/platform.ts).
  const limit = deadline(Math.max(timeoutMs, MIN_DEADLINE_MS));
  const end = Date.now() + limit;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${limit} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A stated window for checking that something does NOT happen. Use only where no later
 * event can prove the ordering; the caller says in a comment why `ms` is generous.
 */
export const quietWindow = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
