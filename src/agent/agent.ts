/**
 * The agent: wiring and lifecycle of the transfer parts (inboxes and listeners,
 * outbox watchers, destination queues, journals) and the AgentView the status API,
 * OSC and the CLI read. The composition root around it is agent/compose.ts; its
 * responsibilities live in outbox-dispatch.ts + dispatch.ts (outbox files → records and
 * jobs, admission window), explicit.ts (POST /send jobs), after.ts (after-actions),
 * view.ts (status view), peers.ts, receiving.ts, senders.ts.
 *
 * Delivery invariant: a file leaves its outbox (after-action) only once every
 * destination acknowledged it durable and verified; until then it stays, and since
 * the outbox is the queue, a restart picks it up again.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { AgentConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { describeError, type ReportedCode } from '../errors.js';
import type { AgentEvents, AgentSnapshot, AgentView, FailureInfo, HealthReport, JobInfo, LimitRequest, PeerInfo, ReceivedInfo, SendRequest } from '../types.js';
import type { Pacer, LimitsSnapshot } from '../limits/pacer.js';
import { Inbox } from '../inbox/inbox.js';
import { OutboxWatcher, SentJournal } from '../outbox/index.js';
import { AfterBatcher } from './after.js';
import type { Destination } from '../routing.js';
import type { PeerBoard } from './peers.js';
import { TransportServer } from '../transport/server.js';
import { ReceiverSession } from '../transfer/receiver.js';
import { DestinationQueue, type Job, type JobOutcome } from '../transfer/destination.js';
import { LegacyListener } from '../legacy/server.js';
import { loadAgentId, softwareVersion } from './identity.js';
import { Ring } from './ring.js';
import { ProgressThrottle } from '../progress.js';
import { IncomingBoard } from './incoming.js';
import { Announcer, type PrepareAnnouncement } from './announce.js';
import { newDestinationQueue } from './senders.js';
import type { SendSources } from '../transfer/sources.js';
import { ensureOutbox, listenForTransfers, logLimits, openInboxes, startLegacyListener } from './receiving.js';
import { ExplicitJobs } from './explicit.js';
import { applyLimit, folderHealth, logSent, outboxList, queueCounts } from './view.js';
import { newJob, type FileRecord } from './dispatch.js';
import { ADMIT_WINDOW } from './admission.js';
import { OutboxDispatch } from './outbox-dispatch.js';
import { systemClock, type Clock } from '../clock.js';
import { newPacer, newPeerBoard, newSendSources } from './shared.js';

export interface AgentOptions {
  log: Logger;
  /** The peer board to share with discovery (agent/compose.ts builds it, agent/shared.ts); a fresh one when absent. */
  peers?: PeerBoard;
  /** The bandwidth pacer (compose.ts builds it from the config, agent/shared.ts); a fresh one when absent. */
  pacer?: Pacer;
  /**
   * Hold `received` announcements until `openAnnouncements()` (compose.ts: once hooks, OSC
   * and the status API listen). Without it they open right after start (next macrotask).
   */
  holdAnnouncements?: boolean;
  /** Outbox records in flight at most (agent/admission.ts); default ADMIT_WINDOW. Tests use small ones. */
  admitWindow?: number;
  /** The agent-wide sources of outgoing bytes (compose.ts builds it; transfer/sources.ts); a fresh one when absent. */
  sources?: SendSources;
  /** Timestamps of the status model, jobs and progress (compose.ts passes its clock); default systemClock. */
  clock?: Clock;
}

/**
 * Everything but the AgentView methods is private: the parts around the agent (discovery,
 * status API, OSC, hooks) get the shared collaborators from the composition root
 * (agent/compose.ts, agent/shared.ts), and what is the agent's own (its id, its bound
 * listen address) through read-only accessors.
 */
export class Agent extends EventEmitter<AgentEvents> implements AgentView {
  readonly version = softwareVersion();
  /** The peers: routing table, link reasons, other installations (agent/peers.ts). */
  private readonly peers: PeerBoard;
  private readonly inboxes = new Map<string, Inbox>();
  private readonly destinations = new Map<string, DestinationQueue>();
  /** Outbox files → records and jobs through the admission window (agent/outbox-dispatch.ts). */
  private readonly dispatch: OutboxDispatch;
  /** POST /send jobs: job journal, ids, send/restore/cancel (agent/explicit.ts). */
  private readonly explicit: ExplicitJobs;
  private readonly jobs = new Map<string, Job>();
  private readonly recent = new Ring<JobInfo>(100);
  private readonly received = new Ring<ReceivedInfo>(100);
  private readonly failures = new Ring<FailureInfo>(100);
  private readonly sessions = new Set<ReceiverSession>();
  private readonly watchers: OutboxWatcher[] = [];
  private readonly progress = new ProgressThrottle(100);
  private readonly incoming: IncomingBoard;
  private readonly clock: Clock;
  /** Announces landings once, crash or not (agent/announce.ts). */
  private readonly announcer: Announcer;
  /** Bandwidth limits: every sender and receiving connection goes through it. */
  private readonly pacer: Pacer;
  /** Read buffers, shared reads and eager files of every destination (one budget, transfer/sources.ts). */
  private readonly sources: SendSources;
  /** After-actions of finished files, batched per outbox burst (agent/after.ts). */
  private readonly after: AfterBatcher;
  private server: TransportServer | null = null;
  private legacy: LegacyListener | null = null;
  private journal: SentJournal | null = null;
  private stopping = false;
  /** False once stopReceiving() began: new connections are refused. */
  private receiving = true;
  private readonly startedAt: number;
  private readonly log: Logger;
  private agentId = '';
  private listening = { host: '', port: 0 };

  /** This agent's id (dataDir/agent-id), known once started. */
  get id(): string {
    return this.agentId;
  }

  /** Where the transfer listener is bound (listen.port 0: the port the system gave), known once started. */
  get listenAddress(): { host: string; port: number } {
    return { ...this.listening };
  }

  private constructor(
    private readonly config: AgentConfig,
    opts: AgentOptions,
  ) {
    super();
    this.setMaxListeners(100);
    this.log = opts.log;
    this.clock = opts.clock ?? systemClock;
    this.startedAt = this.clock.now();
    this.incoming = new IncomingBoard((info) => this.emit('incoming', info), 100, () => this.clock.now());
    this.announcer = new Announcer((info) => {
      this.received.push(info);
      this.emit('received', info);
    }, this.log);
    this.after = new AfterBatcher({
      log: this.log,
      journal: () => this.journal!,
      busy: (w) => this.dispatch.busy(w.outbox),
      settled: (rec) => this.dispatch.settled(rec),
      quick: () => this.sources.quick,
    });
    this.peers = opts.peers ?? newPeerBoard(this.clock);
    this.sources = opts.sources ?? newSendSources(config, opts.log);
    this.pacer = opts.pacer ?? newPacer(config);
    this.dispatch = new OutboxDispatch({
      log: this.log,
      ctx: { selfName: config.name, discovery: config.discovery.enabled },
      window: Math.max(1, opts.admitWindow ?? ADMIT_WINDOW),
      peers: () => this.peers.table.snapshot(),
      journal: () => this.journal!,
      watchers: this.watchers,
      sources: this.sources,
      after: () => this.after,
      stopping: () => this.stopping,
      addJob: (rec, d) => this.addJob(rec, d),
    });
    this.explicit = new ExplicitJobs({
      log: this.log,
      ctx: { selfName: config.name, discovery: config.discovery.enabled },
      peers: () => this.peers.table.snapshot(),
      stopping: () => this.stopping,
      jobs: this.jobs,
      recent: this.recent,
      progress: this.progress,
      emitJob: (info) => this.emit('job', info),
      noteFailure: (reason, message, peer) => this.noteFailure(reason, message, peer),
      addJob: (rec, d, target, id, clientId) => this.addJob(rec, d, target, id, clientId),
      now: () => this.clock.now(),
    });
    this.peers.on('peer', (p) => this.emit('peer', p));
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

  /** Work to start before a landing's journal mark and let go right after it (the gated onReceive hook; agent/announce.ts). */
  prepareAnnouncement(prepare: PrepareAnnouncement): () => void {
    return this.announcer.prepare(prepare);
  }

  /** A `received` listener's work for the landing (OSC: its datagrams sent): stopping waits for it (agent/announce.ts). */
  holdAnnouncement(info: ReceivedInfo, until: Promise<unknown>): void {
    this.announcer.hold(info, until);
  }

  private async startParts(): Promise<void> {
    const cfg = this.config;
    const log = this.log;
    await fs.mkdir(cfg.dataDir, { recursive: true });
    this.agentId = await loadAgentId(cfg.dataDir);
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
        onReceived: (info, markAnnounced, say) => this.announcer.announce(info, markAnnounced, say),
        onFailure: (reason, message, peer) => this.noteFailure(reason, message, peer),
        incoming: this.incoming,
        now: () => this.clock.now(),
      });
      this.sessions.add(s);
      conn.socket.once('close', () => this.sessions.delete(s));
    });
    this.server = listening.server;
    this.listening = listening.address;
    logLimits(this.pacer.snapshot(), log);
    this.peers.table.setSelf({ id: this.id, name: cfg.name, port: this.listening.port, inboxes: [...this.inboxes.keys()], version: this.version });
    this.peers.table.setStatic(cfg.peers);
    this.peers.table.on('change', (p) => this.onPeerChange(p));

    this.legacy = await startLegacyListener(cfg, this.inboxes, { log, onReceived: (info, markAnnounced, say) => this.announcer.announce(info, markAnnounced, say), incoming: this.incoming, now: () => this.clock.now() });

    this.journal = await SentJournal.open(path.join(cfg.dataDir, 'state', 'sent.jsonl'), { log: log.child({ component: 'journal' }) });
    await this.explicit.open(path.join(cfg.dataDir, 'state', 'jobs.jsonl'));
    const ownFolders = [path.join(cfg.dataDir, 'state'), ...[...this.inboxes.values()].flatMap((i) => [i.path, i.stagingDir])];
    for (const ob of cfg.outboxes) {
      await ensureOutbox(ob.path, log);
      const w = new OutboxWatcher(ob, { log, ignore: ownFolders.filter((f) => f !== ob.path), quick: this.sources.quick });
      w.on('ready', (f) => this.dispatch.onReady(f));
      w.on('gone', ({ rel }) => this.dispatch.onGone(ob, rel));
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
    await this.explicit.close().catch(warn('the job journal'));
    this.log.info(`agent stopped (${this.sources.summary()})`);
  }

  // ------------------------------------------------------------------ outbox → jobs

  private addJob(rec: FileRecord, d: Destination, target?: string, id?: string, clientId?: string): Job {
    const q = this.destination(d);
    const job = newJob(rec, d, id ?? this.explicit.newJobId(), this.clock.now(), target, clientId);
    rec.remaining.add(d.key);
    rec.jobs.set(d.key, job);
    this.dispatch.track(rec);
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
      listen: () => this.listening,
      pacer: this.pacer,
      sources: this.sources,
      peers: this.peers,
      onJobChange: (job) => this.onJobChange(job),
      onProgress: (job) => this.onJobProgress(job),
      onFailure: (reason, message, peer) => this.noteFailure(reason, message, peer),
      clock: this.clock,
    });
    this.destinations.set(d.key, q);
    return q;
  }

  private onOutcome(rec: FileRecord, d: Destination, job: Job, outcome: JobOutcome): void {
    this.jobs.delete(job.info.id);
    this.progress.forget(job.info.id);
    if (rec.explicit && (outcome.kind === 'done' || outcome.kind === 'failed')) {
      this.explicit.ended(job.info.id, outcome.kind);
    }
    if (outcome.kind === 'done' || outcome.kind === 'failed') this.recent.push({ ...job.info });
    if (outcome.kind === 'done') {
      logSent(this.log, rec, d, job, outcome.result, this.clock.now());
      this.dispatch.done(rec, d);
    } else if (outcome.kind === 'failed') {
      this.dispatch.failed(rec);
      this.noteFailure(outcome.error.code, outcome.error.message, d.peer);
    }
  }

  // ------------------------------------------------------------------ peers

  private onPeerChange(p: PeerInfo): void {
    if (p.state !== 'up') return;
    for (const q of this.destinations.values()) {
      if (q.dest.peer === p.name) q.wake();
    }
    this.dispatch.peerUp(p);
  }

  // ------------------------------------------------------------------ model

  private onJobChange(job: Job): void {
    this.emit('job', { ...job.info });
  }

  private onJobProgress(job: Job): void {
    const now = this.clock.now();
    job.info.rate = this.progress.rate(job.info.id, job.info.bytesDone, now);
    if (this.progress.due(job.info.id, now) || job.info.bytesDone === job.info.bytesTotal) this.emit('progress', { ...job.info });
  }

  private noteFailure(reason: ReportedCode, message: string, peer: string | null): void {
    const f = { reason, message, peer, at: this.clock.now() };
    this.failures.push(f);
    this.emit('failure', f);
  }

  snapshot(): AgentSnapshot {
    return {
      agent: { id: this.id, name: this.config.name, version: this.version, listen: `${this.listening.host}:${this.listening.port}`, startedAt: this.startedAt, discovery: this.peers.discoveryState },
      peers: this.peers.list(),
      queues: queueCounts(this.destinations.values(), this.dispatch.waitingByDestination()),
      active: [...this.jobs.values()].map((j) => ({ ...j.info })),
      recent: this.recent.list(),
      received: this.received.list(),
      failures: this.failures.list(),
      incoming: this.incoming.list(),
      outboxes: outboxList(this.config.outboxes, this.dispatch.list, this.watchers, (ob) => this.dispatch.waiting(ob)),
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
    if (this.peers.discoveryState === 'error') problems.push('discovery failed to start (see the log)');
    return {
      ok: problems.length === 0 && !this.stopping,
      uptimeSeconds: Math.round((this.clock.now() - this.startedAt) / 1000),
      version: this.version,
      listen: `${this.listening.host}:${this.listening.port}`,
      discovery: this.peers.discoveryState,
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
  send(req: SendRequest): Promise<JobInfo> {
    return this.explicit.send(req);
  }

  openJobs(): JobInfo[] {
    return [...this.jobs.values()].map((j) => ({ ...j.info }));
  }

  /** Cancels an open POST /send job (journalled first); outbox jobs are not cancellable. */
  cancel(id: string): Promise<JobInfo> {
    return this.explicit.cancel(id);
  }
}
