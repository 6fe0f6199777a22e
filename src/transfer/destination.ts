/**
 * One destination (peer + inbox): a queue of jobs in detection order (a plain FIFO, at most
 * the sender's window running; a queued job costs one array slot, issue #12), a FileSender
 * (file-sender.ts: v1 shared connections or legacy TOX, chosen once here) and one shared backoff.
 * A job is never dropped: connection and retryable failures put it back to 'waiting'
 * until the next attempt; only permanent refusals (bad name, too large) fail it.
 * Reachability is logged once per state change, not once per attempt.
 */
import type { Logger } from '../log.js';
import { TdxError, codeOf, describeError, type ErrorCode, type ReportedCode } from '../errors.js';
import type { JobInfo } from '../types.js';
import type { Destination } from '../routing.js';
import type { PeerInfo } from '../types.js';
import { PeerError } from '../protocol/index.js';
import { Backoff } from './backoff.js';
import { SourceChangedError, type OpenOptions, type SendResult } from './sender.js';
import { fileSenderFor, type FileSender } from './file-sender.js';

export interface Job {
  info: JobInfo;
  abs: string;
  size: number;
  mtimeMs: number;
  /** Wire path at the receiver ('/'-separated). */
  target: string;
  controller: AbortController;
  /**
   * True once `controller` was aborted, read without making it: a job may make its
   * AbortController on first use (agent/dispatch.ts QueuedJob), and only a cancel or the
   * legacy client needs one. Absent: `controller.signal.aborted` is asked.
   */
  readonly cancelled?: boolean;
}

/** Whether `job` was cancelled (see Job.cancelled). */
function isCancelled(job: Job): boolean {
  return job.cancelled ?? job.controller.signal.aborted;
}

export type JobOutcome = { kind: 'done'; result: SendResult } | { kind: 'failed'; error: TdxError } | { kind: 'superseded' } | { kind: 'cancelled' };

export interface DestinationDeps {
  log: Logger;
  /** The peer's current entry (addresses, port), or null while unknown. */
  resolvePeer: () => PeerInfo | null;
  connectBase: Omit<OpenOptions, 'host' | 'port' | 'log'>;
  window: number;
  /** Connections per destination (v1 peers). */
  connections?: number;
  retryInitialMs: number;
  retryMaxMs: number;
  onJobChange: (job: Job) => void;
  onProgress: (job: Job) => void;
  onReachability: (up: boolean, why: string | null, code?: ReportedCode) => void;
  /** Every failed connection attempt (code and message), also while already unreachable: the peer row shows why. */
  onLinkProblem?: (code: ReportedCode, message: string) => void;
  /** The inbox names the peer's WELCOME announced (lets the agent refuse misspelled inboxes up front). */
  onPeerInboxes?: (inboxes: string[]) => void;
  /** The clock of jobs' startedAt / finishedAt, ms since the epoch (default Date.now; the agent passes its clock). */
  now?: () => number;
}

/** File refusals that no retry can change. */
const PERMANENT: ReadonlySet<ReportedCode> = new Set<ErrorCode>(['BAD_NAME', 'TOO_LARGE']);

interface Queued {
  job: Job;
  resolve: (o: JobOutcome) => void;
  reject: (err: unknown) => void;
}

export class DestinationQueue {
  /** Jobs waiting to run, oldest first, from index `head` (compacted as it advances). */
  private line: Array<Queued | undefined> = [];
  private head = 0;
  private running = 0;
  private paused = false;
  private idleWaiters: Array<() => void> = [];
  private readonly concurrency: number;
  readonly backoff: Backoff;
  /** v1 or legacy TOX: chosen once, here, from the destination's protocol. */
  readonly sender: FileSender;
  private up: boolean | null = null;
  private readonly log: Logger;
  readonly jobs = new Set<Job>();
  private stopping = false;
  private lastFileProblem: string | null = null;

  constructor(
    readonly dest: Destination,
    private readonly deps: DestinationDeps,
  ) {
    this.log = deps.log.child({ to: dest.key });
    this.sender = fileSenderFor(dest.protocol, {
      log: this.log,
      peer: dest.peer,
      inbox: dest.inbox,
      resolvePeer: deps.resolvePeer,
      connectBase: deps.connectBase,
      window: deps.window,
      ...(deps.connections !== undefined ? { connections: deps.connections } : {}),
      ...(deps.onPeerInboxes ? { onPeerInboxes: deps.onPeerInboxes } : {}),
    });
    this.concurrency = Math.max(1, this.sender.concurrency);
    this.backoff = new Backoff(deps.retryInitialMs, deps.retryMaxMs);
  }

  /** Queue sizes: `size` jobs waiting, `pending` running. */
  get queue(): { size: number; pending: number } {
    return { size: this.line.length - this.head, pending: this.running };
  }

  add(job: Job): Promise<JobOutcome> {
    this.jobs.add(job);
    return new Promise<JobOutcome>((resolve, reject) => {
      this.line.push({ job, resolve, reject });
      this.pump();
    });
  }

  /** Starts waiting jobs while fewer than `concurrency` run. */
  private pump(): void {
    while (!this.paused && this.running < this.concurrency && this.head < this.line.length) {
      const q = this.line[this.head]!;
      this.line[this.head++] = undefined;
      if (this.head >= 1024 && this.head * 2 >= this.line.length) {
        this.line = this.line.slice(this.head);
        this.head = 0;
      }
      this.running++;
      this.run(q.job)
        .then(q.resolve, q.reject)
        .finally(() => {
          this.running--;
          this.jobs.delete(q.job);
          if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w();
          this.pump();
        });
    }
  }

  /** The peer announced itself again (maybe at a new address): retry now. */
  wake(): void {
    this.sender.refresh();
    this.backoff.wake();
  }

  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.paused = true;
    for (const j of this.jobs) if (j.info.state !== 'sending') j.controller.abort();
    const idle = this.running === 0 ? Promise.resolve() : new Promise<void>((r) => this.idleWaiters.push(r));
    await Promise.race([idle, new Promise((r) => setTimeout(r, graceMs).unref())]);
    const cut = [...this.jobs].filter((j) => j.info.state === 'sending');
    if (cut.length > 0) {
      // Nothing is lost: the file stays in its outbox (or job journal) and the receiver keeps the partial.
      const names = cut.slice(0, 3).map((j) => j.info.file).join(', ') + (cut.length > 3 ? ` and ${cut.length - 3} more` : '');
      this.log.warn(`stopping: ${names} to ${this.dest.key} still in flight after ${Math.round(graceMs / 1000)} s: interrupted; it resumes on the next start`);
    }
    for (const j of this.jobs) j.controller.abort();
    this.sender.close();
    // Jobs that never started: cancelled (their files stay in the outbox for the next run).
    const left = this.line.slice(this.head);
    this.line = [];
    this.head = 0;
    for (const q of left) if (q) q.resolve({ kind: 'cancelled' });
  }

  private setState(job: Job, state: JobInfo['state'], error: string | null = job.info.error): void {
    job.info.state = state;
    job.info.error = error;
    const now = this.deps.now ?? Date.now;
    if (state === 'sending' && job.info.startedAt === null) job.info.startedAt = now();
    if (state === 'done' || state === 'failed') job.info.finishedAt = now();
    this.deps.onJobChange(job);
  }

  private reachability(up: boolean, why: string | null): void {
    if (this.up === up) return;
    const first = this.up === null;
    this.up = up;
    if (up) this.log.info(first ? `connected to ${this.dest.peer}` : `${this.dest.peer} reachable again`);
    else this.log.warn(`${this.dest.peer} unreachable: ${why ?? 'unknown reason'}; files wait and are retried with backoff (up to ${Math.round(this.deps.retryMaxMs / 1000)} s apart)`);
    this.deps.onReachability(up, why);
  }

  /** A retryable refusal of one file (NO_SPACE, HASH_MISMATCH…): logged once per code until a file gets through. */
  private fileProblem(job: Job, e: TdxError): void {
    if (this.lastFileProblem === e.code) {
      this.log.debug(`${job.info.file} to ${this.dest.key}: ${e.message}; retrying`);
      return;
    }
    this.lastFileProblem = e.code;
    this.log.warn(`${job.info.file} to ${this.dest.key}: ${e.message}; retrying with backoff (further ${e.code} refusals are logged at debug until a file gets through)`);
  }

  private async attempt(job: Job): Promise<SendResult> {
    const onProgress = (done: number, total: number) => {
      job.info.bytesDone = done;
      job.info.bytesTotal = total;
      this.deps.onProgress(job);
    };
    const link = await this.sender.open();
    if (this.sender.openProvesReachable) this.reachability(true, null);
    this.setState(job, 'sending');
    return link.send({ abs: job.abs, size: job.size, mtimeMs: job.mtimeMs, target: job.target, abortSignal: () => job.controller.signal }, onProgress);
  }

  private async run(job: Job): Promise<JobOutcome> {
    for (;;) {
      if (isCancelled(job) || this.stopping) return { kind: 'cancelled' };
      job.info.attempts++;
      try {
        const result = await this.attempt(job);
        this.backoff.succeeded();
        this.reachability(true, null);
        this.lastFileProblem = null;
        job.info.bytesDone = job.size;
        job.info.landedAs = result.path;
        job.info.error = null;
        this.setState(job, 'done');
        return { kind: 'done', result };
      } catch (err) {
        if (err instanceof SourceChangedError || codeOf(err, 'SEND_FAILED') === 'SOURCE_CHANGED') {
          this.log.info(`${job.info.file}: ${describeError(err)}`);
          return { kind: 'superseded' };
        }
        const e = err instanceof TdxError ? err : new TdxError('SEND_FAILED', describeError(err), { cause: err });
        if (e instanceof PeerError && e.scope === 'file' && PERMANENT.has(e.code)) {
          this.log.error(`${job.info.file} refused by ${this.dest.peer}: ${e.message}; it stays in the outbox (rename or shrink it to send it)`);
          this.setState(job, 'failed', e.message);
          return { kind: 'failed', error: e };
        }
        // A TOX receiver that answered {"success": false} is reachable: the refusal is about this file.
        const linkProblem = !(e instanceof PeerError && e.scope === 'file') && e.code !== 'LEGACY_REFUSED';
        if (linkProblem) {
          this.deps.onLinkProblem?.(e.code, e.message);
          this.reachability(false, e.message);
        }
        else this.fileProblem(job, e);
        if (isCancelled(job) || this.stopping) return { kind: 'cancelled' };
        this.setState(job, 'waiting', e.message);
        this.backoff.failed();
        await this.backoff.wait(job.controller.signal);
        if (isCancelled(job) || this.stopping) return { kind: 'cancelled' };
        this.setState(job, 'queued');
      }
    }
  }
}
