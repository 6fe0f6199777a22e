/**
 * Explicit jobs: files queued with POST /send (the TOX's QueueJob), journalled in the
 * JobStore until done, refused for good or cancelled. The checks a request passes
 * before it is journalled, the records and job views built from a stored job, and
 * ExplicitJobs: the job journal, job ids, send/restore/cancel. The agent (agent.ts)
 * owns it and queues the jobs.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { OutboxConfig } from '../config/types.js';
import { TdxError, describeError, type ReportedCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { ProgressThrottle } from '../progress.js';
import { needsInbox, targetFor } from '../config/protocols.js';
import { resolveRoutes, selectPeers, type Destination } from '../routing.js';
import { sanitizeRelPath, toWirePath } from '../names.js';
import type { ReadyFile } from '../outbox/index.js';
import type { Job } from '../transfer/destination.js';
import type { JobInfo, PeerInfo, SendRequest } from '../types.js';
import { JobStore, type StoredJob } from './jobstore.js';
import { waitingDestination, type DispatchContext, type FileRecord } from './dispatch.js';
import type { Ring } from './ring.js';

/** Size and mtime of a file to queue, or a TdxError saying why it cannot be sent. */
export async function statSource(abs: string): Promise<{ size: number; mtimeMs: number }> {
  let st;
  try {
    st = await fs.stat(abs);
  } catch {
    throw new TdxError('NO_SUCH_FILE', `file not found: ${abs} (give an absolute path on the agent's machine)`);
  }
  if (!st.isFile()) throw new TdxError('NOT_A_FILE', `${abs} is not a regular file`);
  return { size: st.size, mtimeMs: st.mtimeMs };
}

/** The destination of a POST /send request, or a TdxError (UNKNOWN_PEER, NO_SUCH_INBOX). */
export function sendDestination(req: SendRequest, peers: readonly PeerInfo[], ctx: DispatchContext): Destination {
  const inbox = req.inbox ?? null;
  const { destinations, waiting } = resolveRoutes([{ peer: req.peer, inbox: req.inbox }], peers, ctx);
  const d = destinations[0];
  if (!d) throw new TdxError('UNKNOWN_PEER', waiting[0]?.reason ?? `peer ${req.peer} unknown`);
  // A misspelled inbox is refused now when the peer is known to lack it, instead of a
  // job that is retried forever. Peers whose inboxes are not known yet (a static peer
  // never reached) get the job; the receiver refuses it then (NO_SUCH_INBOX, final).
  if (inbox !== null && needsInbox(d.protocol)) {
    const known = selectPeers(d.peerKey, peers)[0];
    if (known && known.inboxes.length > 0 && !known.inboxes.includes(inbox)) {
      throw new TdxError('NO_SUCH_INBOX', `${known.name} has no inbox "${inbox}" (its inboxes: ${known.inboxes.join(', ')}); check the spelling`);
    }
  }
  return d;
}

/**
 * The target name of a POST /send request ('/'-separated). A bad name is refused here,
 * so a TouchDesigner script gets the reason at once instead of a job that fails at the receiver.
 */
export function sendTarget(req: SendRequest, abs: string): string {
  const wanted = req.as ?? path.basename(abs);
  const named = sanitizeRelPath(toWirePath(wanted));
  if (!named.ok) throw new TdxError('BAD_NAME', `target name ${JSON.stringify(wanted)} is not a safe relative file name: ${named.reason}`);
  return named.rel;
}

/** The record of a stored job: a one-file pseudo outbox with after=keep. */
export function explicitRecord(sj: StoredJob, st: { size: number; mtimeMs: number }): FileRecord {
  const pseudo: OutboxConfig = { path: path.dirname(sj.file), to: [{ peer: sj.peer, inbox: sj.inbox ?? undefined }], include: [], exclude: [], after: 'keep', settleMs: 0 };
  const file: ReadyFile = { outbox: pseudo, rel: path.basename(sj.file), abs: sj.file, size: st.size, mtimeMs: st.mtimeMs };
  return { key: `send\0${sj.id}`, file, remaining: new Set(), jobs: new Map(), superseded: false, failed: false, multi: false, fanout: [], explicit: true };
}

/** A job view of a stored job that never got queued (its source is gone). */
export function blankInfo(sj: StoredJob, size: number): JobInfo {
  return {
    id: sj.id, outbox: path.dirname(sj.file), file: path.basename(sj.file), source: sj.file, peer: sj.peer, inbox: sj.inbox, target: sj.target,
    state: 'queued', bytesDone: 0, bytesTotal: size, rate: 0, attempts: 0, queuedAt: sj.queuedAt, startedAt: null, finishedAt: null, error: null, landedAs: null, kind: 'send',
  };
}

/** Why `cancel(id)` refuses: `job` open (outbox jobs are not cancellable) or not (finished, unknown). Null: it may be cancelled. */
export function cancelRefusal(id: string, job: Job | undefined, finished: JobInfo | undefined): TdxError | null {
  if (!job) {
    return new TdxError(finished ? 'ALREADY_FINISHED' : 'NOT_FOUND', finished ? `job ${id} already ${finished.state === 'done' ? 'finished' : 'failed'}: nothing to cancel` : `no open job with id "${id}" (tdxfer jobs lists them)`);
  }
  if (job.info.kind !== 'send') {
    return new TdxError('NOT_CANCELLABLE', `job ${id} sends ${job.info.source} from an outbox: remove the file from the outbox to stop it being sent`);
  }
  return null;
}

/** The final view of a cancelled job. */
export function cancelledInfo(job: Job, now: number): JobInfo {
  const wasSending = job.info.state === 'sending';
  return {
    ...job.info,
    state: 'failed',
    error: wasSending ? 'cancelled by the operator (while sending: the transfer in flight may still complete, it is not retried)' : 'cancelled by the operator',
    finishedAt: now,
  };
}

export interface ExplicitJobsDeps {
  log: Logger;
  ctx: DispatchContext;
  peers: () => readonly PeerInfo[];
  stopping: () => boolean;
  /** The agent's open jobs (outbox and POST /send), by id. */
  jobs: Map<string, Job>;
  recent: Ring<JobInfo>;
  progress: ProgressThrottle;
  emitJob: (info: JobInfo) => void;
  noteFailure: (reason: ReportedCode, message: string, peer: string | null) => void;
  /** Queue a job (the agent's addJob). */
  addJob: (rec: FileRecord, d: Destination, target: string, id: string, clientId?: string) => Job;
  /** The agent's clock (ms since the epoch): queued/finished times and job ids. */
  now: () => number;
}

/** POST /send jobs: journalled (jobstore.ts) before they are queued, restored after a restart, cancellable. */
export class ExplicitJobs {
  private store: JobStore | null = null;
  private seq = 0;

  constructor(private readonly deps: ExplicitJobsDeps) {}

  /** Opens the job journal and queues its jobs again (after a restart or crash) with their ids. */
  async open(file: string): Promise<void> {
    this.store = await JobStore.open(file, { log: this.deps.log.child({ component: 'jobs' }) });
    await this.restore(this.store.list());
  }

  async close(): Promise<void> {
    await this.store?.close();
  }

  /** See Agent.send. */
  async send(req: SendRequest): Promise<JobInfo> {
    if (this.deps.stopping()) throw new TdxError('SHUTTING_DOWN', 'the agent is stopping');
    const abs = path.resolve(req.file);
    const st = await statSource(abs);
    const inbox = req.inbox ?? null;
    const d = sendDestination(req, this.deps.peers(), this.deps.ctx);
    const target = sendTarget(req, abs);
    const stored: StoredJob = {
      id: this.newJobId(), file: abs, peer: req.peer, inbox, target, queuedAt: this.deps.now(),
      ...(req.clientId !== undefined ? { clientId: req.clientId } : {}),
    };
    await this.store!.add(stored);
    const job = this.add(stored, st, d);
    this.deps.log.info(`queued ${abs} for ${d.peer}/${inbox ?? ''} as ${target} (job ${stored.id})`);
    return { ...job.info };
  }

  private async restore(stored: StoredJob[]): Promise<void> {
    for (const sj of stored) {
      let st: { size: number; mtimeMs: number };
      try {
        st = await statSource(sj.file);
      } catch (err) {
        await this.store!.end(sj.id, 'source gone');
        const msg = `${describeError(err)}; the queued job ${sj.id} for ${sj.peer}/${sj.inbox ?? ''} is dropped`;
        this.deps.log.warn(msg);
        this.deps.recent.push({ ...blankInfo(sj, 0), state: 'failed', error: describeError(err), finishedAt: this.deps.now() });
        this.deps.noteFailure('SOURCE_GONE', msg, sj.peer);
        continue;
      }
      const { destinations } = resolveRoutes([{ peer: sj.peer, inbox: sj.inbox ?? undefined }], this.deps.peers(), { selfName: this.deps.ctx.selfName });
      // A peer not known yet (discovery still listening) gets a waiting destination, as outbox files do.
      const d = destinations[0] ?? waitingDestination(sj.peer, sj.inbox, false);
      this.add(sj, st, d);
    }
    if (stored.length > 0) this.deps.log.info(`resumed ${stored.length} job(s) queued with POST /send before the restart`, { ids: stored.map((j) => j.id).join(', ') });
  }

  private add(sj: StoredJob, st: { size: number; mtimeMs: number }, d: Destination): Job {
    const job = this.deps.addJob(explicitRecord(sj, st), d, targetFor(sj.target, d.flatten), sj.id, sj.clientId);
    job.info.queuedAt = sj.queuedAt;
    return job;
  }

  /** A fresh job id, unused by open jobs and the job journal. */
  newJobId(): string {
    let id: string;
    do id = `j${(++this.seq).toString(36)}-${this.deps.now().toString(36)}`;
    while (this.deps.jobs.has(id) || this.store?.has(id));
    return id;
  }

  /** A POST /send job finished (done or failed for good): it leaves the job journal. */
  ended(id: string, kind: 'done' | 'failed'): void {
    this.store?.end(id, kind).catch((err: unknown) => this.deps.log.warn(`job journal: ${describeError(err)}; job ${id} may be sent again after a restart`));
  }

  /** See Agent.cancel. */
  async cancel(id: string): Promise<JobInfo> {
    const job = this.deps.jobs.get(id);
    const refused = cancelRefusal(id, job, job ? undefined : this.deps.recent.list().find((x) => x.id === id));
    if (refused || !job) throw refused;
    await this.store!.end(id, 'cancelled');
    const info = cancelledInfo(job, this.deps.now());
    job.controller.abort();
    this.deps.jobs.delete(id);
    this.deps.progress.forget(id);
    this.deps.recent.push(info);
    this.deps.emitJob({ ...info });
    this.deps.log.info(`job ${id} (${job.info.source} → ${job.info.peer}/${job.info.inbox ?? ''}) cancelled`);
    return info;
  }
}
