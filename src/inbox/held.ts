/**
 * Inbox targets held open by another program (Windows: a Movie File In TOP playing the
 * file, a player, an antivirus scan), so the verified new version of that name cannot
 * replace it yet (issue #14). One registry per inbox: what is held, since when, and with
 * which error; read by the inbox's status. Pure apart from the clock passed in.
 */

import type { HeldChange, HeldFile } from '../types.js';
export type { HeldChange, HeldFile };

export const LIKELY_HOLDER = 'another program with the file open (on a playback machine usually a Movie File In TOP playing it)';

export class HeldTargets {
  readonly #held = new Map<string, HeldFile>();
  /** Told of every failed attempt (`held`) and every end of a hold (`released`): the agent's `held` event, OSC /tdxfer/waiting. */
  onChange: ((c: HeldChange) => void) | null = null;

  /** Records a failed replacement; returns the entry and whether the hold is new (log it once). */
  hold(f: Omit<HeldFile, 'sinceMs' | 'likelyHolder'>, nowMs: number): { entry: HeldFile; isNew: boolean } {
    const old = this.#held.get(f.path);
    const entry: HeldFile = old ?? { ...f, sinceMs: nowMs, likelyHolder: LIKELY_HOLDER };
    if (!old) this.#held.set(f.path, entry);
    this.#tell('held', entry, nowMs);
    return { entry, isNew: !old };
  }

  /** Ends a hold (the file was replaced, or the new version landed under another name); true if there was one. */
  release(absPath: string, nowMs = Date.now()): boolean {
    const entry = this.#held.get(absPath);
    if (!entry) return false;
    this.#held.delete(absPath);
    this.#tell('released', entry, nowMs);
    return true;
  }

  #tell(state: HeldChange['state'], entry: HeldFile, atMs: number): void {
    try {
      this.onChange?.({ state, file: { ...entry }, atMs });
    } catch {
      // a listener's failure must not change the landing's outcome
    }
  }

  list(): HeldFile[] {
    return [...this.#held.values()].map((h) => ({ ...h }));
  }
}

/**
 * The bounded wait: true once a hold that began at `sinceMs` has lasted `maxSeconds`
 * (0 = wait forever); then the new version lands under a collision-renamed name.
 */
export function heldTooLong(sinceMs: number, nowMs: number, maxSeconds: number): boolean {
  return maxSeconds > 0 && nowMs - sinceMs >= maxSeconds * 1000;
}

/** One line for `tdxfer status` and the dashboard. */
export function heldLine(h: HeldFile, nowMs: number): string {
  return `inbox "${h.inbox}": ${h.rel} held open by ${h.likelyHolder} for ${Math.max(0, Math.round((nowMs - h.sinceMs) / 1000))} s (${h.code}); the new version waits staged`;
}
