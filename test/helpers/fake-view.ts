/**
 * An in-memory `AgentView` for the status API, OSC and CLI adapter tests: it keeps jobs,
 * peers, received files and failures the way the real agent's model does and emits the
 * same events, driven step by step by the test (startJob → progress → finish/fail).
 * `send()` validates like the agent (absolute existing file, known peer) with TdxError codes.
 */
import { EventEmitter } from 'node:events';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { TdxError, type ReportedCode } from '../../src/errors.js';
import type {
  AgentEvents,
  AgentSnapshot,
  AgentView,
  FailureInfo,
  HealthReport,
  JobInfo,
  PeerInfo,
  ReceivedInfo,
  SendRequest,
} from '../../src/agent/model.js';

export interface FakeViewOptions {
  name?: string;
  version?: string;
  listen?: string;
  startedAt?: number;
  recentLimit?: number;
}

export class FakeView extends EventEmitter<AgentEvents> implements AgentView {
  readonly name: string;
  readonly version: string;
  readonly listen: string;
  readonly startedAt: number;
  readonly peers = new Map<string, PeerInfo>();
  readonly jobs = new Map<string, JobInfo>();
  readonly received: ReceivedInfo[] = [];
  readonly failures: FailureInfo[] = [];
  /** Set by tests to flip the canary. */
  problems: string[] = [];
  /** Every request `send()` accepted, in order. */
  readonly sent: SendRequest[] = [];
  private seq = 0;
  private readonly recentLimit: number;

  constructor(opts: FakeViewOptions = {}) {
    super();
    this.name = opts.name ?? 'fake-agent';
    this.version = opts.version ?? '0.1.0-test';
    this.listen = opts.listen ?? '127.0.0.1:7770';
    this.startedAt = opts.startedAt ?? Date.now();
    this.recentLimit = opts.recentLimit ?? 50;
  }

  // ---- AgentView ----

  snapshot(): AgentSnapshot {
    const jobs = [...this.jobs.values()];
    const queues = new Map<string, AgentSnapshot['queues'][number]>();
    for (const j of jobs) {
      const destination = `${j.peer}/${j.inbox ?? ''}`;
      let q = queues.get(destination);
      if (!q) {
        q = { destination, peer: j.peer, inbox: j.inbox, queued: 0, sending: 0, waiting: 0, failed: 0 };
        queues.set(destination, q);
      }
      if (j.state === 'queued') q.queued++;
      else if (j.state === 'sending') q.sending++;
      else if (j.state === 'waiting') q.waiting++;
      else if (j.state === 'failed') q.failed++;
    }
    const finished = jobs
      .filter((j) => j.state === 'done' || j.state === 'failed')
      .sort((a, b) => (b.finishedAt ?? 0) - (a.finishedAt ?? 0))
      .slice(0, this.recentLimit);
    return {
      agent: { id: 'fake-id', name: this.name, version: this.version, listen: this.listen, startedAt: this.startedAt, discovery: 'off' },
      peers: [...this.peers.values()].map((p) => ({ ...p })),
      queues: [...queues.values()],
      active: jobs.filter((j) => j.state === 'sending' || j.state === 'queued' || j.state === 'waiting').map((j) => ({ ...j })),
      recent: finished.map((j) => ({ ...j })),
      received: this.received.slice(-this.recentLimit).reverse(),
      failures: this.failures.slice(-this.recentLimit).reverse(),
    };
  }

  async health(): Promise<HealthReport> {
    return {
      ok: this.problems.length === 0,
      uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
      version: this.version,
      listen: this.listen,
      discovery: 'off',
      folders: [],
      problems: [...this.problems],
    };
  }

  async send(req: SendRequest): Promise<JobInfo> {
    if (typeof req.file !== 'string' || req.file === '') throw new TdxError('BAD_REQUEST', '`file` is required: the absolute path of the file to send');
    if (!path.isAbsolute(req.file)) throw new TdxError('BAD_REQUEST', `\`file\` must be an absolute path, got "${req.file}"`);
    const st = await stat(req.file).catch(() => null);
    if (!st || !st.isFile()) throw new TdxError('NO_SUCH_FILE', `no such file: ${req.file}`);
    if (!this.peers.has(req.peer)) throw new TdxError('UNKNOWN_PEER', `unknown peer "${req.peer}": known peers are ${[...this.peers.keys()].join(', ') || 'none'}`);
    this.sent.push(req);
    return this.queueJob(req.file, req.peer, { inbox: req.inbox ?? null, target: req.as ?? path.basename(req.file), size: st.size });
  }

  job(id: string): JobInfo | undefined {
    const j = this.jobs.get(id);
    return j ? { ...j } : undefined;
  }

  openJobs(): JobInfo[] {
    return [...this.jobs.values()].filter((j) => j.state !== 'done' && j.state !== 'failed').map((j) => ({ ...j }));
  }

  async cancel(id: string): Promise<JobInfo> {
    const j = this.jobs.get(id);
    if (!j || j.state === 'done' || j.state === 'failed') throw new TdxError('NOT_FOUND', `no open job with id "${id}"`);
    if (j.kind !== 'send') throw new TdxError('NOT_CANCELLABLE', `job ${id} is an outbox file`);
    j.state = 'failed';
    j.error = 'cancelled by the operator';
    j.finishedAt = Date.now();
    this.emit('job', { ...j });
    return { ...j };
  }

  // ---- test drivers ----

  addPeer(p: Partial<PeerInfo> & { name: string }): PeerInfo {
    const peer: PeerInfo = {
      id: p.id ?? `id-${p.name}`,
      name: p.name,
      source: p.source ?? 'static',
      protocol: p.protocol ?? 'tdxfer',
      addresses: p.addresses ?? ['127.0.0.1'],
      port: p.port ?? 7770,
      inboxes: p.inboxes ?? ['renders'],
      version: p.version === undefined ? '0.1.0' : p.version,
      state: p.state ?? 'up',
      lastSeen: p.lastSeen === undefined ? Date.now() : p.lastSeen,
    };
    this.peers.set(peer.name, peer);
    this.emit('peer', { ...peer });
    return peer;
  }

  setPeerState(name: string, state: PeerInfo['state']): void {
    const p = this.mustPeer(name);
    p.state = state;
    p.lastSeen = Date.now();
    this.emit('peer', { ...p });
  }

  queueJob(source: string, peer: string, o: { inbox?: string | null; target?: string; size?: number } = {}): JobInfo {
    const id = `job-${++this.seq}`;
    const job: JobInfo = {
      id,
      outbox: path.dirname(source),
      file: path.basename(source),
      source,
      peer,
      inbox: o.inbox === undefined ? 'renders' : o.inbox,
      target: o.target ?? path.basename(source),
      state: 'queued',
      bytesDone: 0,
      bytesTotal: o.size ?? 0,
      rate: 0,
      attempts: 0,
      queuedAt: Date.now(),
      startedAt: null,
      finishedAt: null,
      error: null,
      landedAs: null,
    };
    this.jobs.set(id, job);
    this.emit('job', { ...job });
    return { ...job };
  }

  start(id: string): void {
    const j = this.mustJob(id);
    j.state = 'sending';
    j.attempts++;
    j.startedAt = Date.now();
    this.emit('job', { ...j });
  }

  progress(id: string, bytesDone: number, rate = 1_000_000): void {
    const j = this.mustJob(id);
    j.bytesDone = bytesDone;
    j.rate = rate;
    this.emit('progress', { ...j });
  }

  finish(id: string, o: { landedAs?: string; finishedAt?: number } = {}): JobInfo {
    const j = this.mustJob(id);
    j.state = 'done';
    j.bytesDone = j.bytesTotal;
    j.rate = 0;
    j.finishedAt = o.finishedAt ?? Date.now();
    j.landedAs = o.landedAs ?? j.target;
    this.emit('job', { ...j });
    return { ...j };
  }

  fail(id: string, error: string, reason: ReportedCode = 'CONNECT_FAILED'): JobInfo {
    const j = this.mustJob(id);
    j.state = 'failed';
    j.rate = 0;
    j.finishedAt = Date.now();
    j.error = error;
    this.emit('job', { ...j });
    this.addFailure({ reason, message: error, peer: j.peer });
    return { ...j };
  }

  addFailure(f: Omit<FailureInfo, 'at'> & { at?: number }): FailureInfo {
    const failure: FailureInfo = { ...f, at: f.at ?? Date.now() };
    this.failures.push(failure);
    this.emit('failure', { ...failure });
    return failure;
  }

  receive(r: Partial<ReceivedInfo> & { file: string }): ReceivedInfo {
    const info: ReceivedInfo = {
      inbox: r.inbox ?? 'renders',
      file: r.file,
      path: r.path ?? path.join('/srv/tdxfer/renders', ...r.file.split('/')),
      size: r.size ?? 1234,
      sha256: r.sha256 === undefined ? 'ab'.repeat(32) : r.sha256,
      from: r.from ?? 'render-1',
      via: r.via ?? 'tdxfer',
      durationMs: r.durationMs ?? 250,
      at: r.at ?? Date.now(),
    };
    this.received.push(info);
    this.emit('received', { ...info });
    return info;
  }

  private mustJob(id: string): JobInfo {
    const j = this.jobs.get(id);
    if (!j) throw new Error(`FakeView: no job ${id}`);
    return j;
  }

  private mustPeer(name: string): PeerInfo {
    const p = this.peers.get(name);
    if (!p) throw new Error(`FakeView: no peer ${name}`);
    return p;
  }
}
