/**
 * Dedupe journal: which version of which file from which source already landed, so a
 * resend (the sender crashed after we committed but before it saw the ack) is
 * answered "duplicate" instead of landing twice (or as "name (1).ext").
 *
 * Append-only JSON lines (jsonl.ts), one record per landed file; the latest record per
 * (source, rel) wins. Bounded: on open, and whenever twice the limit accumulates,
 * it is rewritten with the last `limit` records. A torn last line (crash during
 * append) is skipped. Losing the journal only loses dedupe, never data.
 *
 * With `durable` (inboxes with onCollision=rename, where a lost record would land a resend
 * as `name (1).ext`), each append is fsynced before the renames it announces (one append
 * per landing batch), so not even a power cut keeps a landed file while losing its
 * record. With overwrite or skip a lost record is harmless (the resend replaces the file
 * with the same bytes, or is skipped), so they do without the extra fsync per batch.
 *
 * Announcements (issue #19 item 4): a record is written `pending` ("landed, not yet
 * announced"); the mark line `{"announced": {source, rel, at}}` clears it. The mark is
 * write-ahead: markAnnounced() appends it synchronously (JsonlWriter.appendSync) and the
 * Announcer calls it in the same tick right before the announcement goes out (agent/
 * announce.ts), so a kill -9 cannot come between an announcement and its mark with any I/O
 * turn in between: a restart announces (flagged recovered) only the landings whose mark
 * was never written, i.e. whose announcement never started. Not fsynced: the page cache
 * survives a killed process; after a power cut a mark of the last seconds may be lost and
 * that landing announced once more (recovered). A restart finds the records still pending
 * and announces those whose file is there with the recorded bytes (Inbox.
 * recoverAnnouncements). Pending records survive compaction (also when their dedupe
 * record was superseded or evicted) and are bounded by `limit` like the rest. The mark
 * line is the one agents before the write-ahead mark appended after the announcement
 * (asynchronously): journals of either kind read the same.
 */
import path from 'node:path';
import type { Logger } from '../log.js';
import { JsonlWriter, readJsonl } from '../jsonl.js';

export interface LandedRecord {
  source: string;
  /** The sanitised rel the sender asked for. */
  rel: string;
  /** Where it actually landed (differs after a rename collision). */
  landedRel: string;
  size: number;
  mtimeMs: number | null;
  /** The landed bytes' hash: `sha256` (SHA-256 connections, legacy), or `xxh128` (XXH3-128 connections, v1.1). */
  sha256?: string;
  xxh128?: string;
  at: number;
  /** Landed (or about to be), not announced yet: set on the record written before the rename. */
  pending?: boolean;
  /** Who sent it, as the announcement names it (peer name, or the legacy source address). */
  from?: string;
  /** The protocol it came by, for the announcement. */
  via?: 'tdxfer' | 'legacy';
}

/** The mark line that clears a pending record. */
interface AnnouncedMark {
  announced: { source: string; rel: string; at: number };
}

function isMark(x: unknown): x is AnnouncedMark {
  const m = (x as Partial<AnnouncedMark> | null)?.announced;
  return typeof m === 'object' && m !== null && typeof m.source === 'string' && typeof m.rel === 'string' && typeof m.at === 'number';
}

function isRecord(x: unknown): x is LandedRecord {
  const r = x as Partial<LandedRecord> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.source === 'string' &&
    typeof r.rel === 'string' &&
    typeof r.landedRel === 'string' &&
    typeof r.size === 'number' &&
    (r.mtimeMs === null || typeof r.mtimeMs === 'number') &&
    (typeof r.sha256 === 'string' || typeof r.xxh128 === 'string') &&
    typeof r.at === 'number'
  );
}

const key = (source: string, rel: string): string => `${source}\0${rel}`;
/** One landing: a key can land again (a new version) before the earlier landing was announced. */
const landingId = (r: { source: string; rel: string; at: number }): string => `${r.source}\0${r.rel}\0${r.at}`;

export class Journal {
  readonly file: string;
  readonly limit: number;
  #log: Logger;
  /** Insertion order = age (re-set entries are moved to the end). */
  #byKey = new Map<string, LandedRecord>();
  /** Landings not announced yet, by landingId, oldest first. */
  #pending = new Map<string, LandedRecord>();
  #writer!: JsonlWriter;
  #durable = false;

  private constructor(file: string, limit: number, log: Logger) {
    this.file = file;
    this.limit = limit;
    this.#log = log;
  }

  static async open(stateDir: string, log: Logger, limit = 10_000, opts: { durable?: boolean } = {}): Promise<Journal> {
    const j = new Journal(path.join(stateDir, 'landed.jsonl'), limit, log);
    j.#durable = opts.durable === true;
    const read = await readJsonl(j.file, (v) => (isMark(v) || isRecord(v) ? v : null));
    for (const rec of read.items) {
      if (isMark(rec)) j.#pending.delete(landingId(rec.announced));
      else j.#set(rec);
    }
    const bad = read.bad + (read.torn ? 1 : 0);
    if (bad > 0) log.warn('skipped unreadable lines in the dedupe journal (torn write after a crash?)', { file: j.file, lines: bad });
    // No close: marks may still come while the inbox stops, so the file is opened per append.
    j.#writer = await JsonlWriter.open(j.file, {
      keepOpen: false,
      linesInFile: read.lines,
      snapshot: () => j.#snapshot(),
      compactWhen: (lines) => lines > 2 * limit,
      onCompactError: (err) => log.warn('could not compact the dedupe journal', { file: j.file, err }),
    });
    if (bad > 0 || read.lines > limit || read.unterminated) await j.#writer.rewrite();
    return j;
  }

  #set(rec: LandedRecord): void {
    if (rec.pending === true) {
      this.#pending.set(landingId(rec), rec);
      // Bounded like the rest: only an Inbox used without an agent (nothing announces) gets here.
      while (this.#pending.size > this.limit) this.#pending.delete(this.#pending.keys().next().value as string);
    }
    const k = key(rec.source, rec.rel);
    this.#byKey.delete(k);
    this.#byKey.set(k, rec);
    while (this.#byKey.size > this.limit) {
      const oldest = this.#byKey.keys().next().value as string;
      this.#byKey.delete(oldest);
    }
  }

  get(source: string, rel: string): LandedRecord | undefined {
    return this.#byKey.get(key(source, rel));
  }

  get size(): number {
    return this.#byKey.size;
  }

  /** Landings recorded as pending and not marked announced yet, oldest first. */
  pending(): LandedRecord[] {
    return [...this.#pending.values()];
  }

  /**
   * Marks a landing announced (or, at recovery, found not landed): its pending record is
   * cleared, and the mark line is in the journal file when this returns (synchronous
   * append, see the header). Never throws: if the synchronous append fails (disk full) it
   * is retried asynchronously (the returned promise), and a mark lost for good only means
   * the landing is announced once more after a restart (flagged recovered).
   */
  markAnnounced(rec: Pick<LandedRecord, 'source' | 'rel' | 'at'>): Promise<void> {
    const id = landingId(rec);
    if (!this.#pending.delete(id)) return Promise.resolve();
    const mark: AnnouncedMark = { announced: { source: rec.source, rel: rec.rel, at: rec.at } };
    try {
      this.#writer.appendSync([mark]);
      return Promise.resolve();
    } catch (err) {
      this.#log.warn('could not write the announced mark of a landing to the dedupe journal now; trying again', { file: this.file, err });
      return this.#append([mark], 'could not mark a landing announced in the dedupe journal; it is announced again after a restart', false);
    }
  }

  /** Record a landed file. Failures are logged, never thrown: the file already landed. */
  record(rec: LandedRecord): Promise<void> {
    return this.recordMany([rec]);
  }

  /** Record several landed files with one append (a landing batch). Never throws. */
  recordMany(recs: readonly LandedRecord[]): Promise<void> {
    for (const rec of recs) this.#set(rec);
    return this.#append(recs, 'could not append to the dedupe journal; a resend of these files may land twice', this.#durable);
  }

  #append(lines: readonly unknown[], failure: string, sync: boolean): Promise<void> {
    return this.#writer.append(lines, { sync }).catch((err: unknown) => this.#log.warn(failure, { file: this.file, lines: lines.length, err }));
  }

  /** The state as lines, for compaction. */
  #snapshot(): unknown[] {
    const latest = new Set(this.#byKey.values());
    // Pending landings whose dedupe record is no longer the latest (or was evicted) go
    // first, so the latest record per key still wins on the next open.
    const lines: unknown[] = [...this.#pending.values()].filter((r) => !latest.has(r));
    for (const r of this.#byKey.values()) {
      const pending = this.#pending.get(landingId(r)) === r;
      const { pending: _p, ...rest } = r;
      lines.push(pending ? { ...rest, pending: true } : rest);
    }
    return lines;
  }

  /** Wait for pending appends. */
  async flush(): Promise<void> {
    await this.#writer.flush();
  }
}
