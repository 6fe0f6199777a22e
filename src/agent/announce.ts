/**
 * Announcing landed files exactly once, crash or not (issue #19 item 4).
 *
 * A landing is announced by OSC `/tdxfer/received`, the onReceive hook, the agent's
 * `received` event (the status API's recent list and SSE stream, in memory) and the
 * `received` log line. Before the mark, OSC encodes its message and the hook's process is
 * forked, gated (hooks.ts startGatedHook: it waits for one line on a pipe, and exits
 * without running the command if the agent dies first). The console log line is written
 * synchronously, a JSON log file's line asynchronously (lost by a kill -9 like any last
 * log lines).
 *
 * Write-ahead: in one synchronous step the landing's "announced" mark goes into the inbox
 * journal (Journal.markAnnounced, a synchronous append), then the OSC datagram's sendmsg
 * (notifier.ts: bound sockets, synchronous lookup), the hook's release (one pipe write),
 * the event, the log line. Nothing in the step yields to the event loop, so a kill -9
 * either comes before the mark (a restart announces the landing, flagged `recovered`:
 * Inbox.recoverAnnouncements) or after it (never announced again). What a kill inside the
 * step can do is lose the parts not done yet, never repeat one: from the mark to the
 * sendmsg and the pipe write is a few microseconds of CPU (longer in wall time when the
 * scheduler takes the CPU away inside the step, on a loaded machine). The order is for
 * observers: the datagram before the release, because the released hook may act at once
 * (even kill its agent) and its wake-up can take the CPU from the agent; the log line
 * last, so whoever reacts to it finds the rest out. On Windows (no /bin/sh for the gate)
 * the hook is spawned in the event: a tenth of a millisecond of spawn preparation after
 * the mark. Without an agent's prepareAnnouncement (unit tests' views) OSC sends in the
 * event.
 *
 * Listeners may still hold an announcement (AgentView.holdAnnouncement: OSC until its
 * datagrams were sent): settled() waits for those, so a stop closes nothing under them.
 *
 * Announcements wait behind a gate until the parts that announce them (hooks, OSC with its
 * sockets bound, status) have started (compose.ts opens it): a file landing in the moment
 * between the transfer listener opening and the hooks starting, and the recovered ones,
 * are not announced to nobody.
 */
import type { Logger } from '../log.js';
import type { ReceivedInfo } from '../types.js';
import type { RecoveredLanding } from '../inbox/inbox.js';

type Emit = (info: ReceivedInfo) => void;
/** Starts a listener's work before the mark; the function it returns lets it go right after. */
export type PrepareAnnouncement = (info: ReceivedInfo) => (() => void) | undefined;

export class Announcer {
  #queue: Array<() => void> | null = [];
  readonly #running = new Set<Promise<void>>();
  readonly #holds = new Map<ReceivedInfo, Promise<unknown>[]>();
  readonly #preparers = new Set<PrepareAnnouncement>();

  constructor(
    private readonly emit: Emit,
    private readonly log: Logger,
  ) {}

  /**
   * A landing to announce (now, or when the gate opens). `markAnnounced` (write-ahead, must
   * write synchronously) runs first, then the event, then `say` logs the landing's line.
   */
  announce(info: ReceivedInfo, markAnnounced?: () => Promise<void>, say?: () => void): void {
    const go = (): void => {
      const p = this.#run(info, markAnnounced, say).finally(() => this.#running.delete(p));
      this.#running.add(p);
    };
    if (this.#queue) this.#queue.push(go);
    else go();
  }

  /** Queues the landings an inbox found unannounced after a restart. */
  recovered(inbox: string, list: readonly RecoveredLanding[]): void {
    for (const r of list) {
      this.announce(
        { inbox, file: r.rel, path: r.abs, size: r.size, sha256: r.hashAlg === 'sha256' ? r.digest : null, hash: r.digest, hashAlg: r.hashAlg, from: r.from, via: r.via, durationMs: 0, at: r.at, recovered: true },
        r.markAnnounced,
      );
    }
  }

  /** Adds a preparer (the gated onReceive hook, hooks.ts); returns its removal. */
  prepare(fn: PrepareAnnouncement): () => void {
    this.#preparers.add(fn);
    return () => void this.#preparers.delete(fn);
  }

  /** settled() waits for `until` too (called by a listener during the event: OSC until its datagrams were sent). */
  hold(info: ReceivedInfo, until: Promise<unknown>): void {
    this.#holds.get(info)?.push(until);
  }

  /** Opens the gate: what waited is announced in order, what comes later at once. */
  open(): void {
    const q = this.#queue;
    this.#queue = null;
    for (const go of q ?? []) go();
  }

  /** Waits for announcements under way (and what their listeners hold). */
  async settled(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running]);
  }

  /**
   * Synchronous up to its first await: the mark, the event and the log line in one step.
   * The log line comes last, so that every other announcement went out before anyone can
   * see it (an operator, or a test, reacting to it).
   */
  async #run(info: ReceivedInfo, markAnnounced?: () => Promise<void>, say?: () => void): Promise<void> {
    const holds: Promise<unknown>[] = [];
    this.#holds.set(info, holds);
    try {
      // Before the mark: OSC encodes its message, the hook forks its gated process.
      const release: Array<() => void> = [];
      for (const prepare of this.#preparers) {
        try {
          const go = prepare(info);
          if (go) release.push(go);
        } catch (err) {
          this.log.error('could not prepare an announcement (the file landed)', { file: info.file, error: err instanceof Error ? err.message : String(err) });
        }
      }
      holds.push(markAnnounced?.() ?? Promise.resolve());
      // Right after it, in the order prepared: the OSC datagram's sendmsg, the hook's release.
      for (const go of release) {
        try {
          go();
        } catch (err) {
          this.log.error('could not release a prepared announcement (the file landed)', { file: info.file, error: err instanceof Error ? err.message : String(err) });
        }
      }
      this.emit(info);
    } catch (err) {
      this.log.error('a listener of the received event failed (the file landed)', { file: info.file, error: err instanceof Error ? err.message : String(err) });
    } finally {
      this.#holds.delete(info);
    }
    try {
      if (info.recovered) this.log.info(`received ${info.file} (recovered: it landed before the agent stopped, announced now)`, { inbox: info.inbox, from: info.from, size: info.size });
      else say?.();
    } catch (err) {
      this.log.error('could not log a landing', { file: info.file, error: err instanceof Error ? err.message : String(err) });
    }
    await Promise.allSettled(holds);
  }
}
