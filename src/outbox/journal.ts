/**
 * The sent journal: which versions of outbox files were fully sent (so `after: "keep"`
 * files are not sent again after a restart) and, for files with several destinations,
 * which destinations already confirmed (so a restarted sender resumes where it was).
 *
 * On disk: JSON lines (jsonl.ts), appended and fsync'ed one record at a time. On open the
 * file is read (a torn last line from a crash is skipped), compacted to the current state
 * (entries whose file version is gone dropped, at most maxEntries) and rewritten atomically,
 * which also removes any torn tail before new appends. While running, the file is
 * rewritten with the current state whenever it holds more than twice the lines needed
 * (at least COMPACT_MIN_LINES): weeks of sending do not grow it without bound (issue #20).
 *
 * A version is (size, mtimeMs); a record for a different version of the same
 * (outbox, rel) replaces the older one.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { TdxError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { JsonlWriter, readJsonl } from '../jsonl.js';
import { resolvedFolder } from '../paths.js';

/** While running, the file is compacted once it holds more than twice its entries' lines, and at least this many. */
export const COMPACT_MIN_LINES = 1000;

interface Entry {
  o: string;
  r: string;
  s: number;
  m: number;
  /** The whole file was sent (every destination confirmed). */
  sent: boolean;
  dests: Set<string>;
  at: number;
}

type Line =
  | { op: 'sent'; o: string; r: string; s: number; m: number; d?: string[]; sent?: boolean; at?: number }
  | { op: 'dest'; o: string; r: string; s: number; m: number; d: string; at?: number }
  | { op: 'forget'; o: string; r: string; at?: number };

export interface JournalOpenOptions {
  /**
   * Compaction keeps an entry only when this says the version still exists. Default: the
   * file at `abs` exists with that size and mtime. Pass `() => true` to keep everything.
   */
  exists?: (abs: string, size: number, mtimeMs: number) => boolean | Promise<boolean>;
  /** At most this many entries survive compaction (most recently written win). Default 100 000. */
  maxEntries?: number;
  log?: Logger;
}

async function defaultExists(abs: string, size: number, mtimeMs: number): Promise<boolean> {
  try {
    const st = await stat(abs);
    return st.isFile() && st.size === size && st.mtimeMs === mtimeMs;
  } catch {
    return false;
  }
}

function keyOf(o: string, r: string): string {
  return `${o}\0${r}`;
}

function parseLine(v: unknown): Line | null {
  if (typeof v !== 'object' || v === null) return null;
  const l = v as Record<string, unknown>;
  if (typeof l.o !== 'string' || typeof l.r !== 'string') return null;
  if (l.op === 'forget') return l as Line;
  if (typeof l.s !== 'number' || typeof l.m !== 'number') return null;
  if (l.op === 'sent' && (l.d === undefined || (Array.isArray(l.d) && l.d.every((x) => typeof x === 'string')))) return l as Line;
  if (l.op === 'dest' && typeof l.d === 'string') return l as Line;
  return null;
}

export class SentJournal {
  readonly file: string;
  private readonly entries = new Map<string, Entry>();
  private writer: JsonlWriter | null = null;
  private readonly log: Logger | undefined;

  private constructor(file: string, log: Logger | undefined) {
    this.file = file;
    this.log = log;
  }

  /** Opens (creating folder and file as needed), compacts and returns the journal. */
  static async open(file: string, opts: JournalOpenOptions = {}): Promise<SentJournal> {
    const j = new SentJournal(path.resolve(file), opts.log);
    let read;
    try {
      read = await readJsonl(j.file, parseLine);
    } catch (err) {
      throw new TdxError('JOURNAL_READ_FAILED', `Cannot read the sent journal ${j.file}: ${describeError(err)}. Check its permissions, or move it away to start a fresh one (kept files may then be sent again).`, { cause: err });
    }
    for (const line of read.items) j.apply(line);
    if (read.torn) j.log?.debug('sent journal: skipped torn last line', { file: j.file });
    if (read.bad > 0) j.log?.warn(`Sent journal ${j.file} had ${read.bad} unreadable line(s); they were dropped.`);
    await j.prune(opts.exists ?? defaultExists, opts.maxEntries ?? 100_000);
    j.writer = await JsonlWriter.open(j.file, {
      snapshot: () => j.snapshot(),
      compactWhen: (lines) => lines > Math.max(COMPACT_MIN_LINES, 2 * j.entries.size),
      onCompactError: (err) => j.log?.warn(`Could not compact the sent journal ${j.file}: ${describeError(err)}; it keeps growing until the next start.`),
      closedError: () => new TdxError('JOURNAL_CLOSED', `The sent journal ${j.file} is closed; this is a bug in the caller (write after close).`),
    });
    await j.writer.rewrite();
    return j;
  }

  /** Lines in the file now (for tests of the compaction). */
  get linesInFile(): number {
    return this.writer?.linesInFile ?? 0;
  }

  /** Entries held (after compaction and since). */
  get size(): number {
    return this.entries.size;
  }

  /** True when this version of `rel` was fully sent (recorded with `record`). */
  has(outboxPath: string, rel: string, size: number, mtimeMs: number): boolean {
    const e = this.entries.get(keyOf(resolvedFolder(outboxPath), rel));
    return e !== undefined && e.sent && e.s === size && e.m === mtimeMs;
  }

  /** Destinations that confirmed this version of `rel` (empty for another version). */
  doneDestinations(outboxPath: string, rel: string, size: number, mtimeMs: number): Set<string> {
    const e = this.entries.get(keyOf(resolvedFolder(outboxPath), rel));
    return e !== undefined && e.s === size && e.m === mtimeMs ? new Set(e.dests) : new Set();
  }

  /** This version was sent to every destination. Durable when the promise resolves. */
  record(outboxPath: string, rel: string, size: number, mtimeMs: number, destinations?: string[]): Promise<void> {
    const line: Line = { op: 'sent', o: resolvedFolder(outboxPath), r: rel, s: size, m: mtimeMs, at: Date.now() };
    if (destinations && destinations.length > 0) line.d = [...destinations];
    this.apply(line);
    return this.append(line);
  }

  /** One destination confirmed this version. Durable when the promise resolves. */
  recordDestination(outboxPath: string, rel: string, size: number, mtimeMs: number, destination: string): Promise<void> {
    const line: Line = { op: 'dest', o: resolvedFolder(outboxPath), r: rel, s: size, m: mtimeMs, d: destination, at: Date.now() };
    this.apply(line);
    return this.append(line);
  }

  /** Drops everything about `rel` (after archive/delete). No write when nothing is known about it. */
  forget(outboxPath: string, rel: string): Promise<void> {
    const o = resolvedFolder(outboxPath);
    if (!this.entries.has(keyOf(o, rel))) return this.writer?.flush() ?? Promise.resolve();
    const line: Line = { op: 'forget', o, r: rel, at: Date.now() };
    this.apply(line);
    return this.append(line);
  }

  /** Waits for pending writes and closes the file. */
  async close(): Promise<void> {
    await this.writer?.close(); // each failed write was already rejected to its caller
  }

  private apply(line: Line): void {
    const k = keyOf(line.o, line.r);
    if (line.op === 'forget') {
      this.entries.delete(k);
      return;
    }
    let e = this.entries.get(k);
    if (!e || e.s !== line.s || e.m !== line.m) {
      e = { o: line.o, r: line.r, s: line.s, m: line.m, sent: false, dests: new Set(), at: 0 };
    }
    // Re-insert so Map order is recency order (compaction keeps the newest).
    this.entries.delete(k);
    this.entries.set(k, e);
    e.at = line.at ?? e.at;
    if (line.op === 'sent') {
      if (line.sent !== false) e.sent = true;
      for (const d of line.d ?? []) e.dests.add(d);
    } else {
      e.dests.add(line.d);
    }
  }

  private append(line: Line): Promise<void> {
    const w = this.writer;
    if (!w) return Promise.reject(new TdxError('JOURNAL_CLOSED', `The sent journal ${this.file} is not open.`));
    return w.append([line], { sync: true }).catch((err: unknown) => {
      if (err instanceof TdxError) throw err;
      throw new TdxError('JOURNAL_WRITE_FAILED', `Cannot write the sent journal ${this.file}: ${describeError(err)}. Free disk space or fix permissions of the data folder.`, { cause: err });
    });
  }

  /** At open: drops entries whose file version is gone, and the oldest beyond maxEntries. */
  private async prune(exists: NonNullable<JournalOpenOptions['exists']>, maxEntries: number): Promise<void> {
    for (const [k, e] of [...this.entries]) {
      if (!(await exists(path.join(e.o, ...e.r.split('/')), e.s, e.m))) this.entries.delete(k);
    }
    const excess = this.entries.size - maxEntries;
    if (excess > 0) {
      let n = 0;
      for (const k of [...this.entries.keys()]) {
        if (n++ >= excess) break;
        this.entries.delete(k);
      }
    }
  }

  /** The current state as lines: one `sent` line per entry. */
  private snapshot(): Line[] {
    return [...this.entries.values()].map((e) => {
      const l: Line = { op: 'sent', o: e.o, r: e.r, s: e.s, m: e.m, at: e.at };
      if (!e.sent) l.sent = false;
      if (e.dests.size > 0) l.d = [...e.dests];
      return l;
    });
  }
}
