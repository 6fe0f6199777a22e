/**
 * The one clock of the timer-driven parts: wall time and timers, injected (issue #13), so a
 * test drives time with a fake clock (test/helpers/clock.ts) instead of waiting.
 *
 * `now` is the clock the Lander's held-target wait (inbox/land.ts `LandTarget.now`), the
 * PeerTable and the pure mDNS rules (mdns-schedule, mdns-answer, mdns-query) already took:
 * ms since the epoch. `after` runs a callback once after `ms` and returns its cancel; its
 * timers never keep the process alive (unref'd: a stopped part must not hold an exit up, and
 * every owner clears its timers on stop anyway).
 */
export interface Clock {
  /** Wall time, ms since the epoch (Date.now). */
  now(): number;
  /** Runs `fn` once after `ms` (not before); the returned function cancels it (idempotent). */
  after(ms: number, fn: () => void): Cancel;
}

/** Cancels a timer of Clock.after; calling it again, or after the timer ran, does nothing. */
export type Cancel = () => void;

/** Date.now and unref'd setTimeout. */
export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

/** Runs `fn` every `ms` on `clock` until the returned function is called (a setInterval on the clock). */
export function every(clock: Clock, ms: number, fn: () => void): Cancel {
  let cancel: Cancel = () => undefined;
  let stopped = false;
  const arm = (): void => {
    cancel = clock.after(ms, () => {
      if (stopped) return;
      arm(); // re-armed before fn runs, as setInterval does
      fn();
    });
  };
  arm();
  return () => {
    stopped = true;
    cancel();
  };
}
