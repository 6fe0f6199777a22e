/**
 * Batching after-actions (archive, delete, keep) of files every destination has.
 *
 * A finished file's after-action runs once nothing else of its outbox is still being
 * sent, or AFTER_BATCH_MS later at the latest. Moving files out one by one while the
 * rest of a dropped folder is still on its way makes chokidar re-read (and stat every
 * entry of) that folder after every move: O(files²) work that starved the sender (2000
 * files: ~45 s of CPU). In a batch the folder is re-read a few times. The longest wait
 * matters: with 500 ms the sender needed twice the CPU for a burst of 2000 small files,
 * and a burst that outlasts the wait starts archiving mid-way (5 s).
 */
import type { Logger } from '../log.js';
import { describeError } from '../errors.js';
import { applyAfter, finishAfterBatch, newAfterBatch, type AfterBatch, type OutboxWatcher, type SentJournal } from '../outbox/index.js';
import type { FileRecord } from './dispatch.js';
import type { QuickFs } from '../quickfs.js';

/** Longest an after-action waits for the rest of its outbox's burst. */
export const AFTER_BATCH_MS = 5000;
/** After-actions (archive moves, deletes) run at most this many at a time. */
export const AFTER_CONCURRENCY = 8;

export interface AfterDeps {
  log: Logger;
  journal: () => SentJournal;
  /** True while a file of the watcher's outbox still waits for a destination. */
  busy: (w: OutboxWatcher) => boolean;
  /** The after-action of `rec` ran (or failed): forget its record. */
  settled: (rec: FileRecord) => void;
  /** Quick (synchronous) file calls below local outboxes (quickfs.ts). */
  quick?: () => QuickFs;
}

export class AfterBatcher {
  private readonly waiting = new Map<OutboxWatcher, { recs: FileRecord[]; timer: NodeJS.Timeout | null }>();
  private readonly running = new Set<Promise<void>>();
  /** The outbox's logger for applyAfter, made once (a child logger per file cost CPU per file). */
  private outboxLog: Logger | null = null;

  constructor(private readonly deps: AfterDeps) {}

  /** Every destination has `rec`: run its after-action with the rest of its outbox's burst. */
  finish(w: OutboxWatcher, rec: FileRecord): void {
    let b = this.waiting.get(w);
    if (!b) {
      b = { recs: [], timer: null };
      this.waiting.set(w, b);
    }
    b.recs.push(rec);
    if (!this.deps.busy(w)) this.flush(w);
    else b.timer ??= setTimeout(() => this.flush(w), AFTER_BATCH_MS);
  }

  /** Runs every waiting batch now and resolves once all after-actions ran (stop). */
  async drain(): Promise<void> {
    for (const w of [...this.waiting.keys()]) this.flush(w);
    await Promise.all([...this.running]);
  }

  private flush(w: OutboxWatcher): void {
    const b = this.waiting.get(w);
    if (!b) return;
    this.waiting.delete(w);
    if (b.timer) clearTimeout(b.timer);
    let next = 0;
    const batch = newAfterBatch();
    const worker = async (): Promise<void> => {
      while (next < b.recs.length) await this.applyNow(w, b.recs[next++]!, batch);
    };
    const run: Promise<void> = Promise.all(Array.from({ length: Math.min(AFTER_CONCURRENCY, b.recs.length) }, worker))
      .then(() => finishAfterBatch(batch, w.outbox.path))
      .catch((err: unknown) => this.deps.log.debug(`removing emptied outbox folders: ${describeError(err)}`))
      .then(() => {
        this.running.delete(run);
      });
    this.running.add(run);
  }

  /** Never throws: failures are logged and the file stays in the outbox. */
  private async applyNow(w: OutboxWatcher, rec: FileRecord, batch: AfterBatch): Promise<void> {
    const log = this.deps.log;
    // Released first: the archive move or delete then reads as a plain 'gone' for an
    // unknown file, and a rewrite during the move is emitted as a new version.
    w.release(rec.file.rel);
    const moving = rec.file.outbox.after !== 'keep';
    if (moving) w.moving(rec.file.rel);
    let moved = false;
    try {
      const r = await applyAfter(rec.file, this.deps.journal(), (this.outboxLog ??= log.child({ component: 'outbox' })), { batch, ...(this.deps.quick ? { quick: this.deps.quick() } : {}) });
      if (r.action === 'changed') log.info(`${rec.file.rel} changed after it was sent: the new version will be sent`);
      if (r.action === 'archived' || r.action === 'deleted') {
        moved = true;
        w.afterActionDone(rec.file.rel);
      }
    } catch (err) {
      log.error(`after-action "${rec.file.outbox.after}" failed for ${rec.file.abs}: ${describeError(err)}; the file stays in the outbox and may be sent again`);
    } finally {
      if (moving && !moved) w.movingEnded(rec.file.rel);
      this.deps.settled(rec);
    }
  }
}
