/**
 * PURE: dispatching outbox files to jobs. Which destinations a ready file goes to
 * (named peers, peers not known yet, "*" fan-out), the job each destination gets, and
 * which files a peer that just appeared should get. No sockets, no files: the agent
 * (agent.ts) executes what these return; test/agent/dispatch.test.ts tests them alone.
 */
import type { OutboxConfig, RouteConfig } from '../config/types.js';
import type { JobInfo, PeerInfo } from '../types.js';
import type { ReadyFile } from '../outbox/index.js';
import type { Job } from '../transfer/destination.js';
import { resolveRoutes, type Destination } from '../routing.js';
import { targetFor } from '../config/protocols.js';

export interface FileRecord {
  key: string;
  file: ReadyFile;
  /** Destination keys that still have to confirm the file. */
  remaining: Set<string>;
  jobs: Map<string, Job>;
  superseded: boolean;
  failed: boolean;
  /** More than one destination (or a fan-out): each one's success is journalled. */
  multi: boolean;
  /** "*" routes not yet matched for every peer: re-resolved when peers appear. */
  fanout: RouteConfig[];
  /** Queued with POST /send: journalled in the JobStore until done, failed or cancelled. */
  explicit?: boolean;
}

export interface DispatchContext {
  selfName: string;
  /** Whether discovery runs (only sharpens "waiting" reasons). */
  discovery?: boolean;
}

/** The key of an outbox file's record. */
export function recordKey(outboxPath: string, rel: string): string {
  return `${outboxPath}\0${rel}`;
}

/** A destination for a named peer not known yet: the job waits in it, visibly. */
export function waitingDestination(peer: string, inbox: string | null, flatten: boolean): Destination {
  return { key: `${peer}/${inbox ?? ''}`, peer, peerKey: peer, inbox, protocol: 'tdxfer', flatten };
}

export interface FilePlan {
  record: FileRecord;
  /** Destinations that get a job now (those in `done` are left out). */
  destinations: Destination[];
}

/**
 * A new record for a ready outbox file and the destinations it goes to now. `done`:
 * destination keys the sent-journal says already have this version.
 */
export function planFile(file: ReadyFile, peers: readonly PeerInfo[], ctx: DispatchContext, done: ReadonlySet<string> = new Set()): FilePlan {
  const { destinations, waiting } = resolveRoutes(file.outbox.to, peers, ctx);
  for (const wr of waiting) {
    if (wr.route.peer === '*') continue;
    destinations.push(waitingDestination(wr.route.peer, wr.route.inbox ?? null, wr.route.flatten ?? false));
  }
  const fanout = file.outbox.to.filter((r) => r.peer === '*');
  const record: FileRecord = {
    key: recordKey(file.outbox.path, file.rel),
    file,
    remaining: new Set(),
    jobs: new Map(),
    superseded: false,
    failed: false,
    multi: destinations.length > 1 || fanout.length > 0,
    fanout,
  };
  return { record, destinations: destinations.filter((d) => !done.has(d.key)) };
}

/** Fan-out: the destinations a peer that just came up adds to a waiting record. */
export function fanoutAdditions(rec: FileRecord, peer: PeerInfo, selfName: string): Destination[] {
  if (rec.fanout.length === 0 || rec.superseded || rec.failed) return [];
  return resolveRoutes(rec.fanout, [peer], { selfName }).destinations.filter((d) => !rec.jobs.has(d.key));
}

/** True while a file of `ob` still waits for a destination (its after-action then waits for the batch). */
export function outboxBusy(records: Iterable<FileRecord>, ob: OutboxConfig): boolean {
  for (const r of records) if (r.file.outbox === ob && r.remaining.size > 0 && !r.superseded && !r.failed) return true;
  return false;
}

/** The job for one destination of a record (not yet queued). */
export function newJob(rec: FileRecord, d: Destination, id: string, now: number, target?: string, clientId?: string): Job {
  const file = rec.file;
  const tgt = target ?? targetFor(file.rel, d.flatten);
  const info: JobInfo = {
    id,
    outbox: file.outbox.path,
    file: file.rel,
    source: file.abs,
    peer: d.peer,
    inbox: d.inbox,
    target: tgt,
    state: 'queued',
    bytesDone: 0,
    bytesTotal: file.size,
    rate: 0,
    attempts: 0,
    queuedAt: now,
    startedAt: null,
    finishedAt: null,
    error: null,
    landedAs: null,
    kind: rec.explicit ? 'send' : 'outbox',
    ...(clientId !== undefined ? { clientId } : {}),
  };
  return new QueuedJob(info, file.abs, file.size, file.mtimeMs, tgt);
}

/**
 * A job with its AbortController made when first used (a job starts running, or is
 * cancelled): an AbortController and its signal cost ~1 KiB each, and a backlog of
 * 100,000 files queues many jobs (issue #12). A class, not an object literal with a
 * getter: a getter per literal gives every job its own hidden class and a closure
 * (~0.6 KiB more per job, measured in a heap snapshot of the 20,000-file backlog).
 */
class QueuedJob implements Job {
  #controller: AbortController | null = null;
  constructor(
    readonly info: JobInfo,
    readonly abs: string,
    readonly size: number,
    readonly mtimeMs: number,
    readonly target: string,
  ) {}

  get controller(): AbortController {
    return (this.#controller ??= new AbortController());
  }

  /** Cancelled, asked without making the controller (a job that is never cancelled never needs one on the v1 path). */
  get cancelled(): boolean {
    return this.#controller?.signal.aborted ?? false;
  }
}
