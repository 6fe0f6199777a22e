/**
 * Announcing landed files exactly once, crash or not (issue #19 item 4).
 *
 * A landing is announced by the agent's `received` event, which every consumer listens to:
 * the log line, the onReceive hook (a run started), OSC `/tdxfer/received` (the datagram
 * handed to the kernel), the status API's recent list and SSE stream. The inbox journal
 * keeps each landing "not yet announced" until the event went to every listener and every
 * listener's hold (AgentView.holdAnnouncement: OSC waits for its datagrams to be sent)
 * settled; then the mark is cleared. A restart announces the landings still marked
 * (Inbox.recoverAnnouncements), flagged `recovered`.
 *
 * Announcements wait behind a gate until the parts that announce them (hooks, OSC, status)
 * have started (compose.ts opens it): a file landing in the moment between the transfer
 * listener opening and the hooks starting, and the recovered ones, are not announced to
 * nobody.
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

  /** A landing to announce (now, or when the gate opens). `markAnnounced` runs once it went out. */
  announce(info: ReceivedInfo, markAnnounced?: () => Promise<void>): void {
    const go = (): void => {
      const p = this.#run(info, markAnnounced).finally(() => this.#running.delete(p));
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

  /** Delays the "announced" mark of `info` until `until` settles (called by a listener, during the event). */
  hold(info: ReceivedInfo, until: Promise<unknown>): void {
    this.#holds.get(info)?.push(until);
  }

  /** Opens the gate: what waited is announced in order, what comes later at once. */
  open(): void {
    const q = this.#queue;
    this.#queue = null;
    for (const go of q ?? []) go();
  }

  /** Waits for announcements under way (their marks written). */
  async settled(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running]);
  }

  async #run(info: ReceivedInfo, markAnnounced?: () => Promise<void>): Promise<void> {
    if (info.recovered) {
      this.log.info(`received ${info.file} (recovered: it landed before the agent stopped, announced now)`, { inbox: info.inbox, from: info.from, size: info.size });
    }
    const holds: Promise<unknown>[] = [];
    this.#holds.set(info, holds);
    try {
      this.emit(info);
    } catch (err) {
      this.log.error('a listener of the received event failed (the file landed)', { file: info.file, error: err instanceof Error ? err.message : String(err) });
    } finally {
      this.#holds.delete(info);
    }
    if (holds.length > 0) await Promise.allSettled(holds);
    await markAnnounced?.();
  }
}
