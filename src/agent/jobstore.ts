/**
 * The explicit-job journal: jobs queued with `POST /send` (the TOX's QueueJob) survive a
 * restart or a crash (kill -9) with their ids. Outbox files need no such record (the
 * outbox is their queue); an explicit job has nothing else on disk saying it exists.
 *
 * On disk: JSON lines in `<dataDir>/state/jobs.jsonl`: `{"op":"add",...}` when a job is
 * accepted, `{"op":"end","id":...}` when it is done, failed for good or cancelled.
 * Every record is fsynced before its promise resolves, so a 202 answered after `add()`
 * means the job is on disk. On open the file is read (a torn last line from a crash is
 * skipped), reduced to the open jobs and rewritten atomically (temp file + rename).
 */
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { TdxError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { Mutex, fsyncDir } from '../fsutil.js';

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

function parseLine(text: string): Line | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
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
  private fh: FileHandle | null = null;
  private readonly mutex = new Mutex();

  private constructor(
    readonly file: string,
    private readonly log: Logger | undefined,
  ) {}

  static async open(file: string, opts: { log?: Logger } = {}): Promise<JobStore> {
    const s = new JobStore(path.resolve(file), opts.log);
    await mkdir(path.dirname(s.file), { recursive: true });
    let text = '';
    try {
      text = await readFile(s.file, 'utf8');
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') {
        throw new TdxError('JOURNAL_READ_FAILED', `cannot read the job journal ${s.file}: ${describeError(err)}; fix its permissions, or move it away (queued POST /send jobs in it are then lost)`, { cause: err });
      }
    }
    const lines = text.split('\n');
    let bad = 0;
    lines.forEach((raw, i) => {
      if (raw.trim() === '') return;
      const line = parseLine(raw);
      if (!line) {
        if (i === lines.length - 1) s.log?.debug('job journal: skipped torn last line', { file: s.file });
        else bad++;
        return;
      }
      if (line.op === 'add') {
        const { op: _op, ...job } = line;
        s.jobs.set(job.id, job);
      } else s.jobs.delete(line.id);
    });
    if (bad > 0) s.log?.warn(`job journal ${s.file} had ${bad} unreadable line(s); they were dropped`);
    await s.compact();
    s.fh = await open(s.file, 'a');
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
    await this.mutex.run(async () => {
      const fh = this.fh;
      this.fh = null;
      await fh?.close();
    });
  }

  private append(line: Line): Promise<void> {
    const text = JSON.stringify(line) + '\n';
    return this.mutex.run(async () => {
      const fh = this.fh;
      if (!fh) throw new TdxError('JOURNAL_CLOSED', `the job journal ${this.file} is closed (the agent is stopping)`);
      try {
        await fh.write(text);
        await fh.datasync();
      } catch (err) {
        throw new TdxError('JOURNAL_WRITE_FAILED', `cannot write the job journal ${this.file}: ${describeError(err)}; free disk space or fix permissions of the data folder`, { cause: err });
      }
    });
  }

  private async compact(): Promise<void> {
    const text = [...this.jobs.values()].map((j) => JSON.stringify({ op: 'add', ...j }) + '\n').join('');
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.write(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    await fsyncDir(path.dirname(this.file));
  }
}
