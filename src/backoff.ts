/**
 * The one retry spacing of the agent: capped exponential backoff with optional jitter.
 * Pure (the random source is a parameter); used by the transfer retries
 * (transfer/backoff.ts, ±20 % jitter) and the outbox watch restarts (outbox/supervisor.ts).
 */

export interface BackoffPolicy {
  /** Delay after the first failure. */
  initialMs: number;
  /** Cap: no delay is longer (before jitter). */
  maxMs: number;
  /** Spread as a fraction of the delay: 0.2 = ±20 %. Default 0 (exact delays). */
  jitter?: number;
}

/**
 * The delay before the next attempt after `failures` consecutive failures (1 = the first):
 * initialMs · 2^(failures−1), capped at maxMs, then spread by ±jitter with `random()` ∈ [0, 1).
 */
export function backoffDelay(failures: number, p: BackoffPolicy, random: () => number = Math.random): number {
  const doublings = Math.min(Math.max(0, failures - 1), 52);
  const base = Math.min(p.initialMs * 2 ** doublings, p.maxMs);
  const j = p.jitter ?? 0;
  return j === 0 ? base : Math.round(base * (1 - j + random() * 2 * j));
}
