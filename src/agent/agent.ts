/**
 * The agent: wiring and lifecycle of the transfer parts (inboxes and listeners,
 * outbox watchers, destination queues, journals) and the AgentView the status API,
 * OSC and the CLI read. The composition root around it is agent/compose.ts; its
 * responsibilities live in dispatch.ts (outbox files → jobs), explicit.ts (POST /send),
 * after.ts (after-actions), view.ts (status view), peers.ts, receiving.ts, senders.ts.
 *
 * Delivery invariant: a file leaves its outbox (after-action) only once every
 * destination acknowledged it durable and verified; until then it stays, and since
 * the outbox is the queue, a restart picks it up again.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { AgentConfig, OutboxConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { TdxError, describeError, type ReportedCode } from '../errors.js';
import type { AgentEvents, AgentSnapshot, AgentView, FailureInfo, HealthReport, JobInfo, LimitRequest, PeerInfo, ReceivedInfo, SendRequest } from '../types.js';
import { Pacer, type LimitsSnapshot } from '../limits/pacer.js';
import { Inbox } from '../inbox/inbox.js';
import { OutboxWatcher, SentJournal, type ReadyFile } from '../outbox/index.js';
import { AfterBatcher } from './after.js';
import { PeerTable } from '../discovery/table.js';
import { resolveRoutes, type Destination } from '../routing.js';
import { PeerBoard, type DiscoveryState } from './peers.js';
import type { Announcement } from '../discovery/table.js';
import { TransportServer } from '../transport/server.js';
import { ReceiverSession } from '../transfer/receiver.js';
import { DestinationQueue, type Job, type JobOutcome } from '../transfer/destination.js';
import { LegacyListener } from '../legacy/server.js';
import { targetFor } from '../config/protocols.js';
import { loadAgentId, softwareVersion } from './identity.js';
import { Ring } from './ring.js';
import { ProgressThrottle } from '../progress.js';
import { JobStore, type StoredJob } from './jobstore.js';
import { IncomingBoard } from './incoming.js';
import { Announcer } from './announce.js';
import { newDestinationQueue } from './senders.js';
import { SendSources } from '../transfer/sources.js';
import { ensureOutbox, listenForTransfers, logLimits, openInboxes, startLegacyListener } from './receiving.js';
import { blankInfo, cancelRefusal, cancelledInfo, explicitRecord, sendDestination, sendTarget, statSource } from './explicit.js';
import { applyLimit, folderHealth, logSent, outboxList, queueCounts } from './view.js';
import { fanoutAdditions, newJob, outboxBusy, planFile, recordKey, waitingDestination, type FileRecord } from './dispatch.js';

export interface AgentOptions {
  log: Logger;
  /** The peer board to share with discovery (agent/compose.ts builds it); a fresh one when absent. */
  peers?: PeerBoard;
  /**
   * Hold `received` announcements until `openAnnouncements()` (compose.ts: once hooks, OSC
   * and the status API listen). Without it they open right after start (next macrotask).
   */
  holdAnnouncements?: boolean;
  /** The agent-wide sources of outgoing bytes (compose.ts builds it; transfer/sources.ts); a fresh one when absent. */
  sources?: SendSources;
}

export class Agent extends EventEmitter<AgentEvents> implements AgentView {
  readonly version = softwareVersion();
  /** The peers: routing table, link reasons, other installations (agent/peers.ts). */
  readonly peers: PeerBoard;
  readonly inboxes = new Map<string, Inbox>();
  private readonly destinations = new Map<string, DestinationQueue>();
  private readonly records = new Map<string, FileRecord>();
  private readonly jobs = new Map<string, Job>();
  private readonly recent = new Ring<JobInfo>(100);
  private readonly received = new Ring<ReceivedInfo>(100);
  private readonly failures = new Ring<FailureInfo>(100);
  private readonly sessions = new Set<ReceiverSession>();
  private readonly watchers: OutboxWatcher[] = [];
  private readonly progress = new ProgressThrottle(100);
  private readonly incoming = new IncomingBoard((info) => this.emit('incoming', info));
  /** Announces landings once, crash or not (agent/announce.ts). */
  private readonly announcer: Announcer;
  /** Bandwidth limits: every sender and receiving connection goes through it. */
  readonly pacer: Pacer;
  /** Read buffers, shared reads and eager files of every destination (one budget, transfer/sources.ts). */
  readonly sources: SendSources;
  /** After-actions of finished files, batched per outbox burst (agent/after.ts). */
  private readonly after: AfterBatcher;
  private server: TransportServer | null = null;
  private legacy: LegacyListener | null = null;
  private journal: SentJournal | null = null;
  private jobStore: JobStore | null = null;
  private jobSeq = 0;
  private stopping = false;
  /** False once stopReceiving() began: new connections are refused. */
  private receiving = true;
  private readonly startedAt = Date.now();
  private readonly log: Logger;
  id = '';
  listenAddress = { host: '', port: 0 };
  get table(): PeerTable {
    return this.peers.table;
  }

  get discoveryState(): DiscoveryState {
    return this.peers.discoveryState;
  }

  private constructor(
    readonly config: AgentConfig,
    opts: AgentOptions,
  ) {
    super();
    this.setMaxListeners(100);
    this.log = opts.log;
    this.announcer = new Announcer((info) => {
      this.received.push(info);
      this.emit('received', info);
    }, this.log);
    this.after = new AfterBatcher({
      log: this.log,
      journal: () => this.journal!,
      busy: (w) => outboxBusy(this.records.values(), w.outbox),
      settled: (rec) => {
        if (this.records.get(rec.key) === rec) this.records.delete(rec.key);
      },
    });
    this.peers = opts.peers ?? new PeerBoard(new PeerTable());
    this.sources = opts.sources ?? new SendSources({ chunkBytes: config.transfer.chunkBytes, log: opts.log });
    this.peers.on('peer', (p) => this.emit('peer', p));
    const peerRates: Record<string, number> = { ...config.transfer.peerMaxBytesPerSecond };
    for (const p of config.peers) if (p.maxBytesPerSecond) peerRates[p.name] = p.maxBytesPerSecond;
    this.pacer = new Pacer({ outgoing: config.transfer.maxBytesPerSecond, incoming: config.limits.maxIncomingBytesPerSecond, peers: peerRates });
  }

  static async start(config: AgentConfig, opts: AgentOptions): Promise<Agent> {
    const agent = new Agent(config, opts);
    try {
      await agent.startParts();
    } catch (err) {
      // The start error is the one to report; a teardown error is logged, not lost.
      await agent.stop().catch((e: unknown) => agent.log.warn(`cleaning up after a failed start: ${describeError(e)}`));
      throw err;
    }
    if (!opts.holdAnnouncements) setImmediate(() => agent.openAnnouncements());
    return agent;
  }

  /** Starts announcing landings (those waiting first: see AgentOptions.holdAnnouncements). */
  openAnnouncements(): void {
    this.announcer.open();
  }

  /** A `received` listener delays the landing's "announced" mark until `until` settles (OSC: its datagrams sent). */
  holdAnnouncement(info: ReceivedInfo, until: Promise<unknown>): void {
    this.announcer.hold(info, until);
  }

  private async startParts(): Promise<void> {
    const cfg = this.config;
    const log = this.log;
    await fs.mkdir(cfg.dataDir, { recursive: true });
    this.id = await loadAgentId(cfg.dataDir);
    if (!cfg.security.encrypt) {
      log.warn('ENCRYPTION IS OFF (security.encrypt=false): file contents cross the network in clear text; peers still authenticate with the installation key');
    }

    await openInboxes(cfg, log, this.inboxes);
    for (const i of this.inboxes.values()) this.announcer.recovered(i.name, await i.recoverAnnouncements());
    for (const i of this.inboxes.values()) i.onHeldChange((c) => this.emit('held', c));

    const listening = await listenForTransfers(cfg, log, (conn) => {
      if (this.stopping || !this.receiving) {
        conn.socket.destroy();
        return;
      }
      const s = new ReceiverSession(conn, {
        self: { id: this.id, name: cfg.name, software: this.version },
        key: cfg.security.key,
        inboxes: this.inboxes,
        limits: cfg.limits,
        eagerMaxBytes: cfg.limits.eagerMaxBytes,
        ...(cfg.security.hashes ? { hashes: cfg.security.hashes } : {}),
        inbound: this.pacer.inbound,
        log: log.child({ component: 'receiver' }),
        onReceived: (info, markAnnounced) => this.announcer.announce(info, markAnnounced),
        onFailure: (reason, message, peer) => this.noteFailure(reason, message, peer),
        incoming: this.incoming,
      });
      this.sessions.add(s);
      conn.socket.once('close', () => this.sessions.delete(s));
    });
    this.server = listening.server;
    this.listenAddress = listening.address;
    logLimits(this.pacer.snapshot(), log);
    this.table.setSelf({ id: this.id, name: cfg.name, port: this.listenAddress.port, inboxes: [...this.inboxes.keys()], version: this.version });
    this.table.setStatic(cfg.peers);
    this.table.on('change', (p) => this.onPeerChange(p));

    this.legacy = await startLegacyListener(cfg, this.inboxes, { log, onReceived: (info, markAnnounced) => this.announcer.announce(info, markAnnounced), incoming: this.incoming });

    this.journal = await SentJournal.open(path.join(cfg.dataDir, 'state', 'sent.jsonl'), { log: log.child({ component: 'journal' }) });
    this.jobStore = await JobStore.open(path.join(cfg.dataDir, 'state', 'jobs.jsonl'), { log: log.child({ component: 'jobs' }) });
    await this.restoreJobs(this.jobStore.list());
    const ownFolders = [path.join(cfg.dataDir, 'state'), ...[...this.inboxes.values()].flatMap((i) => [i.path, i.stagingDir])];
    for (const ob of cfg.outboxes) {
      await ensureOutbox(ob.path, log);
      const w = new OutboxWatcher(ob, { log, ignore: ownFolders.filter((f) => f !== ob.path) });
      w.on('ready', (f) => this.onReady(w, f));
      w.on('gone', ({ rel }) => this.onGone(ob, rel));
      this.watchers.push(w);
      await w.start();
      log.info(`watching outbox ${ob.path}`, { to: ob.to.map((r) => `${r.peer}/${r.inbox ?? ''}`).join(', '), after: ob.after, settleMs: ob.settleMs });
    }
  }

  /**
   * First step of a stop, before the status API and OSC go (issue #20): receiving sessions
   * take nothing new; files being landed finish with their ACK and their announcement, or,
   * past `landMs`, stay staged for resume. New connections are refused from now on.
   */
  async stopReceiving(landMs = 5000): Promise<void> {
    this.receiving = false;
    await Promise.all([...this.sessions].map((s) => s.drain(landMs)));
    await this.announcer.settled();
  }

  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const receiversDone = this.stopReceiving();
    // Teardown goes on past a part that fails to stop (the rest must still close), but says so.
    const warn = (what: string) => (err: unknown) => this.log.warn(`stopping ${what}: ${describeError(err)}`);
    for (const w of this.watchers) await w.stop().catch(warn('an outbox watcher'));
    // Stop accepting now; net.Server.close() resolves only once every connection is gone.
    const closed = this.server?.close().catch(warn('the transfer listener'));
    await this.legacy?.stop().catch(warn('the TOX listener'));
    await Promise.all([...this.destinations.values()].map((d) => d.stop(graceMs)));
    await this.after.drain();
    await receiversDone;
    for (const s of this.sessions) s.shutdown();
    this.server?.destroyAll();
    await closed;
    this.pacer.stop();
    for (const i of this.inboxes.values()) await i.close().catch(warn(`an inbox`));
    await this.journal?.close().catch(warn('the sent journal'));
    await this.jobStore?.close().catch(warn('the job journal'));
    this.log.info(`agent stopped (${this.sources.summary()})`);
  }

  // ------------------------------------------------------------------ outbox → jobs

  private onReady(w: OutboxWatcher, file: ReadyFile): void {
    if (this.stopping) return;
    const key = recordKey(file.outbox.path, file.rel);
    const old = this.records.get(key);
    if (old) {
      if (old.file.size === file.size && old.file.mtimeMs === file.mtimeMs) return;
      old.superseded = true;
      for (const j of old.jobs.values()) if (j.info.state !== 'sending') j.controller.abort();
      this.records.delete(key);
    }
    const journal = this.journal!;
    if (file.outbox.after === 'keep' && journal.has(file.outbox.path, file.rel, file.size, file.mtimeMs)) {
      this.log.debug(`already sent (after=keep): ${file.rel}`);
      return;
    }
    const done = journal.doneDestinations(file.outbox.path, file.rel, file.size, file.mtimeMs);
    const { record: rec, destinations } = planFile(file, this.table.list(), { selfName: this.config.name, discovery: this.config.discovery.enabled }, done);
    const fanout = rec.fanout;
    this.records.set(key, rec);
    for (const d of destinations) this.addJob(rec, d);
    this.sources.expect(file, destinations.length); // the first to stream it keeps its start for the others
    if (rec.remaining.size === 0 && fanout.length === 0) this.after.finish(w, rec);
    else if (rec.remaining.size === 0) this.log.info(`${file.rel}: waiting for a peer with the right inbox to appear (route "*")`);
  }

  private addJob(rec: FileRecord, d: Destination, target?: string, id?: string, clientId?: string): Job {
    const q = this.destination(d);
    const job = newJob(rec, d, id ?? this.newJobId(), Date.now(), target, clientId);
    rec.remaining.add(d.key);
    rec.jobs.set(d.key, job);
    this.jobs.set(job.info.id, job);
    this.emit('job', { ...job.info });
    void q.add(job).then(
      (outcome) => this.onOutcome(rec, d, job, outcome),
      (err) => this.log.error(`internal error in job ${job.info.id}: ${describeError(err)}`),
    );
    return job;
  }

  private destination(d: Destination): DestinationQueue {
    let q = this.destinations.get(d.key);
    if (q) return q;
    q = newDestinationQueue(d, {
      cfg: this.config,
      log: this.log,
      self: { id: this.id, name: this.config.name, software: this.version },
      listen: () => this.listenAddress,
      pacer: this.pacer,
      sources: this.sources,
      peers: this.peers,
      onJobChange: (job) => this.onJobChange(job),
      onProgress: (job) => this.onJobProgress(job),
      onFailure: (reason, message, peer) => this.noteFailure(reason, message, peer),
    });
    this.destinations.set(d.key, q);
    return q;
  }

  private onOutcome(rec: FileRecord, d: Destination, job: Job, outcome: JobOutcome): void {
    this.jobs.delete(job.info.id);
    this.progress.forget(job.info.id);
    if (rec.explicit && (outcome.kind === 'done' || outcome.kind === 'failed')) {
      this.jobStore?.end(job.info.id, outcome.kind).catch((err: unknown) => this.log.warn(`job journal: ${describeError(err)}; job ${job.info.id} may be sent again after a restart`));
    }
    if (outcome.kind === 'done' || outcome.kind === 'failed') this.recent.push({ ...job.info });
    if (outcome.kind === 'done') {
      logSent(this.log, rec, d, job, outcome.result);
      rec.remaining.delete(d.key);
      if (rec.multi && !rec.superseded) {
        void this.journal?.recordDestination(rec.file.outbox.path, rec.file.rel, rec.file.size, rec.file.mtimeMs, d.key).catch((err) => this.log.warn(`journal: ${describeError(err)}`));
      }
      if (rec.remaining.size === 0 && !rec.superseded && this.records.get(rec.key) === rec) {
        const w = this.watchers.find((x) => x.outbox === rec.file.outbox);
        if (w) this.after.finish(w, rec);
        else this.records.delete(rec.key); // POST /send jobs have no outbox
      }
    } else if (outcome.kind === 'failed') {
      rec.failed = true;
      this.noteFailure(outcome.error.code, outcome.error.message, d.peer);
    }
  }

  private onGone(ob: OutboxConfig, rel: string): void {
    const key = recordKey(ob.path, rel);
    const rec = this.records.get(key);
    if (!rec || rec.remaining.size === 0) return; // unknown, or being archived/deleted by us
    for (const j of rec.jobs.values()) if (j.info.state !== 'sending') j.controller.abort();
    this.records.delete(key);
    this.log.info(`${rel} was removed from the outbox before it was sent everywhere; its pending jobs are cancelled`);
  }

  // ------------------------------------------------------------------ peers

  /** Discovery heard an agent of another installation (see PeerBoard.noteForeign). */
  noteForeignPeer(a: Announcement): void {
    this.peers.noteForeign(a);
  }

  forgetForeignPeer(instance: string): void {
    this.peers.forgetForeign(instance);
  }

  private onPeerChange(p: PeerInfo): void {
    if (p.state !== 'up') return;
    for (const q of this.destinations.values()) {
      if (q.dest.peer === p.name) q.wake();
    }
    // Fan-out routes: give waiting files to a peer that just appeared with the inbox.
    for (const rec of this.records.values()) {
      for (const d of fanoutAdditions(rec, p, this.config.name)) this.addJob(rec, d);
    }
  }

  // ------------------------------------------------------------------ model

  private onJobChange(job: Job): void {
    this.emit('job', { ...job.info });
  }

  private onJobProgress(job: Job): void {
    const now = Date.now();
    job.info.rate = this.progress.rate(job.info.id, job.info.bytesDone, now);
    if (this.progress.due(job.info.id, now) || job.info.bytesDone === job.info.bytesTotal) this.emit('progress', { ...job.info });
  }

  private noteFailure(reason: ReportedCode, message: string, peer: string | null): void {
    const f = { reason, message, peer, at: Date.now() };
    this.failures.push(f);
    this.emit('failure', f);
  }

  snapshot(): AgentSnapshot {
    return {
      agent: { id: this.id, name: this.config.name, version: this.version, listen: `${this.listenAddress.host}:${this.listenAddress.port}`, startedAt: this.startedAt, discovery: this.discoveryState },
      peers: this.peers.list(),
      queues: queueCounts(this.destinations.values()),
      active: [...this.jobs.values()].map((j) => ({ ...j.info })),
      recent: this.recent.list(),
      received: this.received.list(),
      failures: this.failures.list(),
      incoming: this.incoming.list(),
      outboxes: outboxList(this.config.outboxes, this.records.values(), this.watchers),
      limits: this.pacer.snapshot(),
      held: [...this.inboxes.values()].flatMap((i) => i.heldFiles()),
    };
  }

  /** POST /limits, `tdxfer limit`: applies from the next slice of every running transfer. */
  setLimit(req: LimitRequest): LimitsSnapshot {
    return applyLimit(this.pacer, req, this.log);
  }

  async health(): Promise<HealthReport> {
    const { folders, problems } = await folderHealth(this.inboxes.values(), this.config.outboxes, this.watchers);
    if (this.discoveryState === 'error') problems.push('discovery failed to start (see the log)');
    return {
      ok: problems.length === 0 && !this.stopping,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      version: this.version,
      listen: `${this.listenAddress.host}:${this.listenAddress.port}`,
      discovery: this.discoveryState,
      folders,
      problems,
    };
  }

  job(id: string): JobInfo | undefined {
    const j = this.jobs.get(id);
    if (j) return { ...j.info };
    return this.recent.list().find((x) => x.id === id);
  }

  /**
   * The original TOX's QueueJob(file_name, target_name): send an existing file to a peer.
   * The job is journalled (fsync) before this resolves, so it survives a restart or a
   * crash with its id, until it is done, refused for good or cancelled.
   */
  async send(req: SendRequest): Promise<JobInfo> {
    if (this.stopping) throw new TdxError('SHUTTING_DOWN', 'the agent is stopping');
    const abs = path.resolve(req.file);
    const st = await statSource(abs);
    const inbox = req.inbox ?? null;
    const d = sendDestination(req, this.table.list(), { selfName: this.config.name, discovery: this.config.discovery.enabled });
    const target = sendTarget(req, abs);
    const stored: StoredJob = {
      id: this.newJobId(), file: abs, peer: req.peer, inbox, target, queuedAt: Date.now(),
      ...(req.clientId !== undefined ? { clientId: req.clientId } : {}),
    };
    await this.jobStore!.add(stored);
    const job = this.addExplicit(stored, st, d);
    this.log.info(`queued ${abs} for ${d.peer}/${inbox ?? ''} as ${target} (job ${stored.id})`);
    return { ...job.info };
  }

  /** Jobs of the job journal, after a restart or crash: queued again with their ids. */
  private async restoreJobs(stored: StoredJob[]): Promise<void> {
    for (const sj of stored) {
      let st: { size: number; mtimeMs: number };
      try {
        st = await statSource(sj.file);
      } catch (err) {
        await this.jobStore!.end(sj.id, 'source gone');
        const msg = `${describeError(err)}; the queued job ${sj.id} for ${sj.peer}/${sj.inbox ?? ''} is dropped`;
        this.log.warn(msg);
        this.recent.push({ ...blankInfo(sj, 0), state: 'failed', error: describeError(err), finishedAt: Date.now() });
        this.noteFailure('SOURCE_GONE', msg, sj.peer);
        continue;
      }
      const { destinations } = resolveRoutes([{ peer: sj.peer, inbox: sj.inbox ?? undefined }], this.table.list(), { selfName: this.config.name });
      // A peer not known yet (discovery still listening) gets a waiting destination, as outbox files do.
      const d = destinations[0] ?? waitingDestination(sj.peer, sj.inbox, false);
      this.addExplicit(sj, st, d);
    }
    if (stored.length > 0) this.log.info(`resumed ${stored.length} job(s) queued with POST /send before the restart`, { ids: stored.map((j) => j.id).join(', ') });
  }

  private addExplicit(sj: StoredJob, st: { size: number; mtimeMs: number }, d: Destination): Job {
    const job = this.addJob(explicitRecord(sj, st), d, targetFor(sj.target, d.flatten), sj.id, sj.clientId);
    job.info.queuedAt = sj.queuedAt;
    return job;
  }

  private newJobId(): string {
    let id: string;
    do id = `j${(++this.jobSeq).toString(36)}-${Date.now().toString(36)}`;
    while (this.jobs.has(id) || this.jobStore?.has(id));
    return id;
  }

  openJobs(): JobInfo[] {
    return [...this.jobs.values()].map((j) => ({ ...j.info }));
  }

  async cancel(id: string): Promise<JobInfo> {
    const job = this.jobs.get(id);
    const refused = cancelRefusal(id, job, job ? undefined : this.recent.list().find((x) => x.id === id));
    if (refused || !job) throw refused;
    await this.jobStore!.end(id, 'cancelled');
    const info = cancelledInfo(job, Date.now());
    job.controller.abort();
    this.jobs.delete(id);
    this.progress.forget(id);
    this.recent.push(info);
    this.emit('job', { ...info });
    this.log.info(`job ${id} (${job.info.source} → ${job.info.peer}/${job.info.inbox ?? ''}) cancelled`);
    return info;
  }
}
