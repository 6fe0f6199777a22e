/**
 * The one JSON-lines journal file, shared by the agent's journals (outbox/journal.ts sent
 * journal, inbox/journal.ts dedupe journal, agent/jobstore.ts explicit jobs). Each keeps
 * its own records in memory; this module only reads and writes the file:
 *
 * - readJsonl(): every line parsed; a torn last line (a crash during an append: no final
 *   newline, not valid JSON) is told apart from unreadable lines in the middle.
 * - JsonlWriter: appends run one at a time in call order, each optionally fsynced
 *   (datasync) before its promise resolves. Appends called while an earlier write is
 *   under way are written together, in call order, with one write (and one datasync if
 *   any of them asked for it) once it ends: the dedupe journal marks every landing
 *   announced, and one open + write + close per mark was ~3 of the receiver's ~10 file
 *   calls per small file (issue #12). rewrite() replaces the file atomically and
 *   durably (as writeFileAtomic: temp + fsync + rename + folder fsync) with a snapshot of the
 *   journal's state taken when the rewrite runs, so it sees every append queued before it.
 *   Replaying a line twice (appended after the snapshot already held it) changes nothing
 *   in any of the journals: their records are "latest wins" or sets.
 * - Compaction while running: with `compactWhen`, an append that leaves more lines in the
 *   file than the journal needs is followed by a rewrite in the same queue (weeks of
 *   operation do not grow the file without bound; issue #20). A failed compaction is
 *   reported to `onCompactError` and leaves the old file, still valid, in place.
 * - appendSync(): a line in the file before the call returns, in the caller's tick (the
 *   inbox journal's write-ahead "announced" mark, issue #19 item 4). It goes around the
 *   queue: it can land between queued appends (each journal's lines are order-free sets
 *   or "latest wins", see above) and during a rewrite, which therefore puts the lines
 *   appended since its snapshot into the new file in the same synchronous step as the
 *   rename: either the old file got the line before that step (and the new file gets it
 *   in the step) or the new file got it, never only a file about to be replaced.
 * - keepOpen false (a journal with no close): the file is not held open for the writer's
 *   life, but a descriptor opened by the first append is reused by the appends that follow
 *   it (appendSync's too) and closed once none came for IDLE_CLOSE_MS, by flush(), close(),
 *   in the synchronous step of a rewrite before its rename (a descriptor must never
 *   outlive the file it was opened on), and after a failed write (the next append opens
 *   the file again). While it is open, Windows cannot remove the folder it is in. Opened
 *   by path per append, the inbox's dedupe journal cost the receiver an open and a close
 *   per landing for its announced mark, plus a pair per group of records through the
 *   thread pool: 2,263 opens for 2,000 small files in one bench run, 2 with the shared
 *   descriptor (issue #12).
 */
import fs from 'node:fs/promises';
import { appendFileSync, closeSync, fdatasync, openSync, renameSync } from 'node:fs';
import path from 'node:path';
import { errCode, fsyncDir, retryTransient, unlinkQuiet, writeAll, writeAllSync, writeTempSynced } from './fsutil.js';

export interface JsonlRead<T> {
  /** The accepted lines, in file order. */
  items: T[];
  /** Lines that were not JSON or that `parse` refused, not counting a torn last line. */
  bad: number;
  /** The file ended in an unfinished line that did not parse (a crash during an append). */
  torn: boolean;
  /** The file ends without a newline (torn or not): an append would continue that line. */
  unterminated: boolean;
  /** Non-empty lines in the file. */
  lines: number;
}

/**
 * Reads a JSON-lines file: `parse` gets each line's JSON value and returns the record or
 * null (refused). A missing file reads as empty; other read errors are thrown as they are.
 */
export async function readJsonl<T>(file: string, parse: (value: unknown) => T | null): Promise<JsonlRead<T>> {
  let text = '';
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if (errCode(err) !== 'ENOENT') throw err;
  }
  return parseJsonl(text, parse);
}

/** PURE: readJsonl on text already read. */
export function parseJsonl<T>(text: string, parse: (value: unknown) => T | null): JsonlRead<T> {
  const out: JsonlRead<T> = { items: [], bad: 0, torn: false, unterminated: text !== '' && !text.endsWith('\n'), lines: 0 };
  const raw = text.split('\n');
  raw.forEach((line, i) => {
    if (line.trim() === '') return;
    out.lines++;
    let item: T | null = null;
    try {
      item = parse(JSON.parse(line));
    } catch {
      item = null;
    }
    if (item !== null) out.items.push(item);
    else if (i === raw.length - 1) out.torn = true;
    else out.bad++;
  });
  return out;
}

/** keepOpen false: the reused descriptor is closed once no append came for this long. */
export const IDLE_CLOSE_MS = 2000;

export interface JsonlWriterOptions {
  /**
   * Keep one append handle open until close() (default). false: for a journal that has no
   * close (the inbox's dedupe journal is still marked while its inbox stops), the file is
   * open only while appends keep coming (see the file comment, IDLE_CLOSE_MS).
   */
  keepOpen?: boolean;
  /** Non-empty lines already in the file (from readJsonl), to count toward `compactWhen`. */
  linesInFile?: number;
  /** After an append: true when the file holds enough more lines than `snapshot` to rewrite it. */
  compactWhen?: (linesInFile: number) => boolean;
  /** The journal's current state as lines, for rewrite() and compaction. */
  snapshot?: () => readonly unknown[];
  /** A compaction after an append failed (the append itself succeeded). */
  onCompactError?: (err: unknown) => void;
  /** The error an append after close() rejects with. */
  closedError?: () => Error;
}

/** Appends written together: their text in call order, lines, whether any asked for a datasync. */
interface AppendGroup {
  texts: string[];
  lines: number;
  sync: boolean;
  done: Promise<void>;
}

export class JsonlWriter {
  readonly file: string;
  readonly #opts: JsonlWriterOptions;
  #fh: fs.FileHandle | null = null;
  #closed = false;
  #chain: Promise<unknown> = Promise.resolve();
  /** The appends queued but not started yet (see append()). */
  #group: AppendGroup | null = null;
  #writes = 0;
  #linesInFile: number;
  /** While a rewrite runs: what appendSync() wrote since its snapshot (null otherwise). */
  #late: { text: string; lines: number } | null = null;
  /** A compaction queued by appendSync() and not run yet. */
  #compactQueued = false;
  /** keepOpen false: the descriptor the last appends used, until idle (see the file comment). */
  #idleFd: number | null = null;
  #idleTimer: NodeJS.Timeout | null = null;
  /** Appends since the idle timer was set: it closes the descriptor only after a quiet period. */
  #usedSinceTimer = false;

  private constructor(file: string, opts: JsonlWriterOptions) {
    this.file = file;
    this.#opts = opts;
    this.#linesInFile = opts.linesInFile ?? 0;
  }

  /** Creates the folder and, unless keepOpen is false, opens the file for appending. */
  static async open(file: string, opts: JsonlWriterOptions = {}): Promise<JsonlWriter> {
    const w = new JsonlWriter(path.resolve(file), opts);
    await fs.mkdir(path.dirname(w.file), { recursive: true });
    if (w.#keepOpen) w.#fh = await fs.open(w.file, 'a');
    return w;
  }

  get #keepOpen(): boolean {
    return this.#opts.keepOpen !== false;
  }

  /** Writes made for appends so far (appends written together count once). */
  get writes(): number {
    return this.#writes;
  }

  /** Lines in the file as far as this writer knows (after its appends and rewrites). */
  get linesInFile(): number {
    return this.#linesInFile;
  }

  /**
   * Appends `values`, one JSON line each, in one write; with `sync` durable (datasync)
   * when the promise resolves. Rejects with the I/O error (or `closedError` after close).
   */
  append(values: readonly unknown[], opts: { sync: boolean }): Promise<void> {
    const text = values.map((v) => JSON.stringify(v) + '\n').join('');
    const waiting = this.#group;
    if (waiting !== null) {
      // Not started yet: this append joins it (after the ones already in it).
      waiting.texts.push(text);
      waiting.lines += values.length;
      waiting.sync ||= opts.sync;
      return waiting.done;
    }
    const group: AppendGroup = { texts: [text], lines: values.length, sync: opts.sync, done: Promise.resolve() };
    this.#group = group;
    group.done = this.#queue(async () => {
      if (this.#group === group) this.#group = null; // later appends form the next group
      this.#writes++;
      await this.#write(group.texts.join(''), group.sync);
      this.#linesInFile += group.lines;
      const { compactWhen, onCompactError } = this.#opts;
      if (compactWhen?.(this.#linesInFile) === true) {
        await this.#rewrite().catch((err: unknown) => onCompactError?.(err));
      }
    });
    return group.done;
  }

  /**
   * Appends `values` now, synchronously (open, write, close by path), bypassing the queue:
   * the lines are in the file (the page cache: they survive the process being killed, not
   * a power cut, no fsync) when this returns. Throws the I/O error. May queue a compaction.
   */
  appendSync(values: readonly unknown[]): void {
    if (this.#closed) throw this.#opts.closedError?.() ?? new Error(`${this.file} is closed`);
    const text = values.map((v) => JSON.stringify(v) + '\n').join('');
    if (this.#keepOpen) appendFileSync(this.file, text);
    else {
      const fd = this.#idleDescriptor();
      try {
        const buf = Buffer.from(text);
        writeAllSync(fd, buf, buf.length, null);
      } catch (err) {
        // Not closed here: a queued write may be using it in the thread pool right now.
        if (this.#idleFd === fd) this.#idleFd = null;
        void this.#queue(() => Promise.resolve(closeQuiet(fd)));
        throw err;
      }
    }
    this.#linesInFile += values.length;
    if (this.#late) {
      this.#late.text += text;
      this.#late.lines += values.length;
    }
    const { compactWhen, onCompactError } = this.#opts;
    if (!this.#compactQueued && compactWhen?.(this.#linesInFile) === true) {
      this.#compactQueued = true;
      this.#queue(async () => {
        this.#compactQueued = false;
        if (compactWhen(this.#linesInFile)) await this.#rewrite();
      }).catch((err: unknown) => onCompactError?.(err));
    }
  }

  /** Replaces the file with `snapshot()` (atomic and durable), after the appends queued before. */
  rewrite(): Promise<void> {
    this.#group = null; // appends from now on are written after the rewrite
    return this.#queue(() => this.#rewrite());
  }

  /** Waits for the queued writes (their errors went to their callers); keepOpen false: closes the descriptor. */
  async flush(): Promise<void> {
    await this.#chain.catch(() => undefined);
    await this.#queue(() => Promise.resolve(this.#closeIdle())); // in the queue: never under a write
  }

  /** Waits for the queued writes and closes the file; later appends reject. */
  close(): Promise<void> {
    this.#closed = true;
    this.#group = null;
    return this.#queue(async () => {
      this.#closeIdle();
      const fh = this.#fh;
      this.#fh = null;
      await fh?.close();
      // A close error loses nothing an append promised: synced appends were durable when they
      // resolved, unsynced ones never promised it; a stop must not fail on it.
    }).catch(() => undefined);
  }

  #queue(run: () => Promise<void>): Promise<void> {
    const p = this.#chain.then(run, run);
    this.#chain = p.catch(() => undefined); // `p` carries the error to the caller; the chain only orders
    return p;
  }

  async #write(text: string, sync: boolean): Promise<void> {
    if (this.#closed && this.#fh === null) throw this.#opts.closedError?.() ?? new Error(`${this.file} is closed`);
    if (this.#fh !== null) {
      await this.#fh.write(text);
      if (sync) await this.#fh.datasync();
      return;
    }
    const fd = this.#idleDescriptor();
    try {
      const buf = Buffer.from(text);
      await new Promise<void>((resolve, reject) => writeAll(fd, buf, buf.length, null, (err) => (err ? reject(err) : resolve())));
      if (sync) await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      this.#closeIdle(); // the next append opens the file again, as it was opened per append before
      throw err;
    }
  }

  /**
   * keepOpen false: the descriptor to append with, opened now if there is none; the idle
   * timer closes it after a quiet IDLE_CLOSE_MS, in the queue (never under a queued write).
   */
  #idleDescriptor(): number {
    this.#idleFd ??= openSync(this.file, 'a');
    this.#usedSinceTimer = true;
    if (this.#idleTimer === null) this.#armIdleTimer();
    return this.#idleFd;
  }

  #armIdleTimer(): void {
    this.#usedSinceTimer = false;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      if (this.#idleFd === null) return;
      if (this.#usedSinceTimer) return this.#armIdleTimer();
      void this.#queue(() => {
        if (this.#idleTimer === null && !this.#usedSinceTimer) this.#closeIdle();
        return Promise.resolve();
      });
    }, IDLE_CLOSE_MS);
    this.#idleTimer.unref();
  }

  /**
   * Closes the idle descriptor, synchronously (a rewrite relies on it being gone when this
   * returns). Called only from a task of the queue, so no write of the queue is using it.
   */
  #closeIdle(): void {
    if (this.#idleTimer !== null) clearTimeout(this.#idleTimer);
    this.#idleTimer = null;
    const fd = this.#idleFd;
    this.#idleFd = null;
    this.#usedSinceTimer = false;
    if (fd !== null) closeQuiet(fd);
  }

  async #rewrite(): Promise<void> {
    const lines = this.#opts.snapshot?.() ?? [];
    const late = (this.#late = { text: '', lines: 0 });
    // The append handle is closed around the rename: Windows refuses to replace a file
    // that is open without delete sharing, and the new file needs a new handle anyway.
    const reopen = this.#fh !== null;
    await this.#fh?.close();
    this.#fh = null;
    try {
      const tmp = await writeTempSynced(this.file, lines.map((v) => JSON.stringify(v) + '\n').join(''));
      let copied = 0;
      try {
        // One synchronous step (see appendSync): the late lines, then the rename.
        await retryTransient(() => {
          this.#closeIdle(); // appendSync may have opened one on the file about to be replaced
          appendFileSync(tmp, late.text.slice(copied));
          copied = late.text.length;
          renameSync(tmp, this.file);
          return Promise.resolve();
        });
      } catch (err) {
        await unlinkQuiet(tmp);
        throw err;
      }
      this.#linesInFile = lines.length + late.lines;
      this.#late = null;
      await fsyncDir(path.dirname(this.file));
    } finally {
      this.#late = null;
      if (reopen) this.#fh = await fs.open(this.file, 'a');
    }
  }
}

/** Nothing an append promised depends on a close (see JsonlWriter.close()). */
function closeQuiet(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already reported by the write that failed, if any
  }
}
