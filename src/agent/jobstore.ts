/**
 * The explicit-job journal: jobs queued with `POST /send` (the TOX's QueueJob) survive a
 * restart or a crash (kill -9) with their ids. Outbox files need no such record (the
 * outbox is their queue); an explicit job has nothing else on disk saying it exists.
 *
 * On disk: JSON lines in `<dataDir>/state/jobs.jsonl`: `{"op":"add",...}` when a job is
 * accepted, `{"op":"end","id":...}` when it is done, failed for good or cancelled.
 * Every record is fsynced before its promise resolves, so a 202 answered after `add()`
 * means the job is on disk. On open the file is read (a torn last line from a crash is
 * skipped), reduced to the open jobs and rewritten atomically (jsonl.ts); while running it
 * is rewritten the same way once it holds more than twice the lines needed (at least
 * COMPACT_MIN_LINES), so weeks of POST /send jobs do not grow it without bound.
 */
import path from 'node:path';
import { TdxError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { JsonlWriter, readJsonl } from '../jsonl.js';

/** While running, the file is compacted once it holds more than twice the open jobs' lines, and at least this many. */
export const COMPACT_MIN_LINES = 1000;

export interface StoredJob {
  id: string;
  /** Absolute source path on this machine. */
  file: string;
  /** The peer reference as given (name, or name#idprefix). */
  peer: string;
  inbox: string | null;
  /** Name at the receiver (relative, '/'-separated). */
  target: string;
  queuedAt: number;
  /** The caller's own id (POST /send `clientId`), kept across restarts. */
  clientId?: string;
}

type Line = ({ op: 'add' } & StoredJob) | { op: 'end'; id: string; why?: string };

function parseLine(v: unknown): Line | null {
  if (typeof v !== 'object' || v === null) return null;
  const l = v as Record<string, unknown>;
  if (typeof l.id !== 'string') return null;
  if (l.op === 'end') return l as Line;
  if (l.op !== 'add') return null;
  if (typeof l.file !== 'string' || typeof l.peer !== 'string' || typeof l.target !== 'string' || typeof l.queuedAt !== 'number') return null;
  if (l.inbox !== null && typeof l.inbox !== 'string') return null;
  if (l.clientId !== undefined && typeof l.clientId !== 'string') return null;
  return l as Line;
}

export class JobStore {
  private readonly jobs = new Map<string, StoredJob>();
  private writer: JsonlWriter | null = null;

  private constructor(
    readonly file: string,
    private readonly log: Logger | undefined,
  ) {}

  static async open(file: string, opts: { log?: Logger } = {}): Promise<JobStore> {
    const s = new JobStore(path.resolve(file), opts.log);
    let read;
    try {
      read = await readJsonl(s.file, parseLine);
    } catch (err) {
      throw new TdxError('JOURNAL_READ_FAILED', `cannot read the job journal ${s.file}: ${describeError(err)}; fix its permissions, or move it away (queued POST /send jobs in it are then lost)`, { cause: err });
    }
    for (const line of read.items) {
      if (line.op === 'add') {
        const { op: _op, ...job } = line;
        s.jobs.set(job.id, job);
      } else s.jobs.delete(line.id);
    }
    if (read.torn) s.log?.debug('job journal: skipped torn last line', { file: s.file });
    if (read.bad > 0) s.log?.warn(`job journal ${s.file} had ${read.bad} unreadable line(s); they were dropped`);
    s.writer = await JsonlWriter.open(s.file, {
      snapshot: () => [...s.jobs.values()].map((j) => ({ op: 'add', ...j })),
      compactWhen: (lines) => lines > Math.max(COMPACT_MIN_LINES, 2 * s.jobs.size),
      onCompactError: (err) => s.log?.warn(`could not compact the job journal ${s.file}: ${describeError(err)}; it keeps growing until the next start`),
      closedError: () => new TdxError('JOURNAL_CLOSED', `the job journal ${s.file} is closed (the agent is stopping)`),
    });
    await s.writer.rewrite();
    return s;
  }

  /** Open jobs in the order they were queued. */
  list(): StoredJob[] {
    return [...this.jobs.values()].map((j) => ({ ...j }));
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  /** Durable when the promise resolves. */
  add(job: StoredJob): Promise<void> {
    this.jobs.set(job.id, { ...job });
    return this.append({ op: 'add', ...job });
  }

  /** The job is finished (done, failed for good or cancelled). No write for an unknown id. */
  end(id: string, why: string): Promise<void> {
    if (!this.jobs.delete(id)) return Promise.resolve();
    return this.append({ op: 'end', id, why });
  }

  async close(): Promise<void> {
    await this.writer?.close();
  }

  /** Lines in the file now (for tests of the compaction). */
  get linesInFile(): number {
    return this.writer?.linesInFile ?? 0;
  }

  private append(line: Line): Promise<void> {
    const w = this.writer;
    if (!w) return Promise.reject(new TdxError('JOURNAL_CLOSED', `the job journal ${this.file} is not open`));
    return w.append([line], { sync: true }).catch((err: unknown) => {
      if (err instanceof TdxError) throw err;
      throw new TdxError('JOURNAL_WRITE_FAILED', `cannot write the job journal ${this.file}: ${describeError(err)}; free disk space or fix permissions of the data folder`, { cause: err });
    });
  }
}
