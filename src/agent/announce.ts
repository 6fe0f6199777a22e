/**
 * Announcing landed files exactly once, crash or not (issue #19 item 4).
 *
 * A landing is announced by the agent's `received` event, which every consumer listens to:
 * the onReceive hook (its process spawned, synchronously), OSC `/tdxfer/received` (the
 * datagram's sendto, issued before the next I/O turn: notifier.ts), the status API's recent
 * list and SSE stream; then the `received` log line (the console line is written
 * synchronously; a JSON log file's write is asynchronous and can be lost by a kill -9, like
 * any last log lines).
 *
 * Write-ahead: in the same synchronous step, right before the event, the landing's
 * "announced" mark goes into the inbox journal (Journal.markAnnounced, a synchronous
 * append). Nothing between the mark and the hook's spawn or the OSC send yields to the
 * event loop, so a kill -9 either comes before the mark (a restart announces the landing,
 * flagged `recovered`: Inbox.recoverAnnouncements) or after it (never announced again).
 * The window left is the microseconds between the journal write and the spawn/sendto in
 * that one step: a kill exactly there loses that one announcement rather than repeating it.
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
   * write synchronously) runs right before the event; `say` logs the landing's line after it.
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

  /** Synchronous up to its first await: the mark, the event and the log line in one step. */
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
