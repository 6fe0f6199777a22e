/**
 * Announcing landed files exactly once, crash or not (issue #19 item 4).
 *
 * A landing is announced by the agent's `received` event, then the `received` log line.
 * The event's listeners, in order: OSC `/tdxfer/received` (its datagram sent synchronously
 * inside the event: notifier.ts), the onReceive hook (its process forked synchronously;
 * spawn() returns once the process exec'd, milliseconds later), the status API's recent
 * list and SSE stream (in memory). The console log line is written synchronously, a JSON
 * log file's line asynchronously (lost by a kill -9 like any last log lines).
 *
 * Write-ahead: in the same synchronous step, right before the event, the landing's
 * "announced" mark goes into the inbox journal (Journal.markAnnounced, a synchronous
 * append). Nothing in the step yields to the event loop, so a kill -9 either comes before
 * the mark (a restart announces the landing, flagged `recovered`: Inbox.
 * recoverAnnouncements) or after it (never announced again). What a kill inside the step
 * can do is lose the parts not done yet, never repeat one: the OSC datagram tens of
 * microseconds after the mark, the hook's fork within about a hundred, the log line after
 * the hook's exec (milliseconds on a loaded machine; it comes last so that whoever reacts
 * to it finds every other announcement out).
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

export class Announcer {
  #queue: Array<() => void> | null = [];
  readonly #running = new Set<Promise<void>>();
  readonly #holds = new Map<ReceivedInfo, Promise<unknown>[]>();

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
    const marked = markAnnounced?.() ?? Promise.resolve();
    const holds: Promise<unknown>[] = [marked];
    this.#holds.set(info, holds);
    try {
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
