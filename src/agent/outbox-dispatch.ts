/**
 * Outbox files → records and jobs, through the admission window: the records of outbox
 * files (one per file, its destinations still to confirm), the files waiting to be admitted
 * (agent/admission.ts, oldest first, at most `window` records in flight), and what happens
 * to a record when a destination finishes, a peer appears or the file leaves the outbox.
 * The pure planning is dispatch.ts; the agent (agent.ts) owns this and queues the jobs.
 */
import type { OutboxConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { describeError } from '../errors.js';
import type { PeerInfo } from '../types.js';
import type { OutboxWatcher, ReadyFile, SentJournal } from '../outbox/index.js';
import type { Destination } from '../routing.js';
import type { SendSources } from '../transfer/sources.js';
import type { AfterBatcher } from './after.js';
import { fanoutAdditions, outboxBusy, planFile, recordKey, type DispatchContext, type FileRecord } from './dispatch.js';
import { AdmissionQueue, waitingByDestination, type WaitingCount } from './admission.js';

export interface OutboxDispatchDeps {
  log: Logger;
  ctx: DispatchContext;
  /** At most this many outbox records in flight. */
  window: number;
  peers: () => readonly PeerInfo[];
  journal: () => SentJournal;
  /** The agent's outbox watchers (filled as they start). */
  watchers: readonly OutboxWatcher[];
  sources: SendSources;
  after: () => AfterBatcher;
  stopping: () => boolean;
  /** Queue a job for the record's destination (the agent: its DestinationQueue; it calls track()). */
  addJob: (rec: FileRecord, d: Destination) => void;
}

export class OutboxDispatch {
  private readonly records = new Map<string, FileRecord>();
  /** Outbox files not yet admitted (bounded window, agent/admission.ts), and the records still sending. */
  private readonly admission = new AdmissionQueue();
  private readonly inFlight = new Set<FileRecord>();

  constructor(private readonly deps: OutboxDispatchDeps) {}

  /** The records of outbox files being sent (status: outbox list). */
  get list(): Iterable<FileRecord> {
    return this.records.values();
  }

  /** Outbox files of `ob` not yet admitted. */
  waiting(ob: OutboxConfig): number {
    return this.admission.count(ob);
  }

  /** Whether `ob` still has files waiting or sending (after-actions wait for the burst to end). */
  busy(ob: OutboxConfig): boolean {
    return this.admission.count(ob) > 0 || outboxBusy(this.inFlight, ob);
  }

  /** An after-action of `rec` is done: forget its record unless a newer one replaced it. */
  settled(rec: FileRecord): void {
    if (this.records.get(rec.key) === rec) this.records.delete(rec.key);
  }

  /** A job of `rec` was queued: outbox records count against the window until they leave. */
  track(rec: FileRecord): void {
    if (!rec.explicit) this.inFlight.add(rec);
  }

  onReady(file: ReadyFile): void {
    if (this.deps.stopping()) return;
    const key = recordKey(file.outbox.path, file.rel);
    const old = this.records.get(key);
    if (old) {
      if (old.file.size === file.size && old.file.mtimeMs === file.mtimeMs) return;
      old.superseded = true;
      for (const j of old.jobs.values()) if (j.info.state !== 'sending') j.controller.abort();
      this.records.delete(key);
      this.leave(old);
    }
    // Oldest first, at most `window` records in flight (agent/admission.ts).
    this.admission.offer(file);
    this.admitWaiting();
  }

  /** A record stopped sending (done, failed, superseded, gone): admit waiting files in its place. */
  private leave(rec: FileRecord): void {
    if (this.inFlight.delete(rec)) this.admitWaiting();
  }

  private admitWaiting(): void {
    while (this.inFlight.size < this.deps.window && !this.deps.stopping()) {
      const f = this.admission.take();
      if (!f) break;
      const w = this.deps.watchers.find((x) => x.outbox === f.outbox);
      if (w) this.admit(w, { ...f, abs: w.absOf(f.rel) });
    }
  }

  private admit(w: OutboxWatcher, file: ReadyFile): void {
    const key = recordKey(file.outbox.path, file.rel);
    const journal = this.deps.journal();
    if (file.outbox.after === 'keep' && journal.has(file.outbox.path, file.rel, file.size, file.mtimeMs)) {
      this.deps.log.debug(`already sent (after=keep): ${file.rel}`);
      return;
    }
    const done = journal.doneDestinations(file.outbox.path, file.rel, file.size, file.mtimeMs);
    const { record: rec, destinations } = planFile(file, this.deps.peers(), this.deps.ctx, done);
    const fanout = rec.fanout;
    this.records.set(key, rec);
    for (const d of destinations) this.deps.addJob(rec, d);
    this.deps.sources.expect(file, destinations.length); // the first to stream it keeps its start for the others
    if (rec.remaining.size === 0 && fanout.length === 0) this.deps.after().finish(w, rec);
    else if (rec.remaining.size === 0) this.deps.log.info(`${file.rel}: waiting for a peer with the right inbox to appear (route "*")`);
  }

  /** Destination `d` confirmed `rec`: journal it (several destinations), after-action once all did. */
  done(rec: FileRecord, d: Destination): void {
    rec.remaining.delete(d.key);
    if (rec.multi && !rec.superseded) {
      void this.deps.journal().recordDestination(rec.file.outbox.path, rec.file.rel, rec.file.size, rec.file.mtimeMs, d.key).catch((err) => this.deps.log.warn(`journal: ${describeError(err)}`));
    }
    if (rec.remaining.size === 0) this.leave(rec);
    if (rec.remaining.size === 0 && !rec.superseded && this.records.get(rec.key) === rec) {
      const w = this.deps.watchers.find((x) => x.outbox === rec.file.outbox);
      if (w) this.deps.after().finish(w, rec);
      else this.records.delete(rec.key); // POST /send jobs have no outbox
    }
  }

  /** A job of `rec` failed for good: the record stops counting against the window. */
  failed(rec: FileRecord): void {
    rec.failed = true;
    this.leave(rec);
  }

  onGone(ob: OutboxConfig, rel: string): void {
    const key = recordKey(ob.path, rel);
    if (this.admission.remove(ob, rel)) {
      this.deps.log.info(`${rel} was removed from the outbox before it was sent; it is no longer queued`);
      return;
    }
    const rec = this.records.get(key);
    if (!rec || rec.remaining.size === 0) return; // unknown, or being archived/deleted by us
    for (const j of rec.jobs.values()) if (j.info.state !== 'sending') j.controller.abort();
    this.records.delete(key);
    this.leave(rec);
    this.deps.log.info(`${rel} was removed from the outbox before it was sent everywhere; its pending jobs are cancelled`);
  }

  /** Fan-out routes: give waiting files to a peer that just appeared with the inbox. */
  peerUp(p: PeerInfo): void {
    for (const rec of this.records.values()) {
      const added = fanoutAdditions(rec, p, this.deps.ctx.selfName);
      for (const d of added) this.deps.addJob(rec, d);
      // A read of the file already running keeps its start for them if it still has it.
      if (added.length > 0) this.deps.sources.expect(rec.file, added.length);
    }
  }

  /** Outbox files not yet admitted, per destination key (status: counted as queued). */
  waitingByDestination(): Map<string, WaitingCount> {
    if (this.admission.size === 0) return new Map();
    return waitingByDestination(this.admission.counts(), this.deps.peers(), this.deps.ctx);
  }
}
