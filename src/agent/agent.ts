/**
 * The composition root: builds every part of a running agent from a resolved config
 * and tears them down in reverse. No module-level singletons; everything the parts
 * share is passed in here.
 *
 * Delivery invariant: a file leaves its outbox (after-action) only once every
 * destination acknowledged it durable and verified; until then it stays, and since
 * the outbox is the queue, a restart picks it up again.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { AgentConfig, OutboxConfig, RouteConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { folderProblem, mkdirp } from '../fsutil.js';
import { TdxError, describeError, type ReportedCode } from '../errors.js';
import type { AgentEvents, AgentSnapshot, AgentView, FailureInfo, HealthReport, JobInfo, LimitRequest, OutboxInfo, PeerInfo, ReceivedInfo, SendRequest } from './model.js';
import { Pacer, type LimitsSnapshot } from '../limits/pacer.js';
import { formatRate } from '../limits/rate.js';
import { NAME_PATTERN } from '../config/schema.js';
import { Inbox } from '../inbox/inbox.js';
import { OutboxWatcher, SentJournal, applyAfter, finishAfterBatch, newAfterBatch, type AfterBatch, type ReadyFile } from '../outbox/index.js';
import { PeerTable } from '../discovery/table.js';
import { peerKeyOf, resolveRoutes, selectPeers, type Destination } from '../routing.js';
import { PEER_REASON, peerReason } from '../discovery/reasons.js';
import type { Announcement } from '../discovery/table.js';
import { TransportServer } from '../transport/server.js';
import { ReceiverSession } from '../transfer/receiver.js';
import { DestinationQueue, type Job, type JobOutcome } from '../transfer/destination.js';
import { LegacyListener } from '../legacy/server.js';
import { legacyTargetName } from '../legacy/client.js';
import { loadAgentId, softwareVersion } from './identity.js';
import { sanitizeRelPath, toWirePath } from '../names.js';
import { Ring } from './ring.js';
import { ProgressThrottle } from './progress.js';
import { JobStore, type StoredJob } from './jobstore.js';
import { IncomingBoard } from './incoming.js';

export interface AgentOptions {
  log: Logger;
  /** Extra hooks (status server, OSC, discovery) are started by the caller around the view. */
}

/** Longest an after-action waits for the rest of its outbox's burst (see Agent.finishFile). */
const AFTER_BATCH_MS = 5000;
/** After-actions (archive moves, deletes) run at most this many at a time. */
const AFTER_CONCURRENCY = 8;

interface FileRecord {
  key: string;
  file: ReadyFile;
  remaining: Set<string>;
  jobs: Map<string, Job>;
  superseded: boolean;
  failed: boolean;
  multi: boolean;
  /** "*" routes not yet matched for every peer: re-resolved when peers appear. */
  fanout: RouteConfig[];
  /** Queued with POST /send: journalled in the JobStore until done, failed or cancelled. */
  explicit?: boolean;
}

export class Agent extends EventEmitter<AgentEvents> implements AgentView {
  readonly version = softwareVersion();
  readonly table = new PeerTable();
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
  /** Short reason per peer key why its link fails (see discovery/reasons.ts); cleared on success. */
  private readonly peerReasons = new Map<string, string>();
  /** Agents discovery sees with another installation key, by mDNS instance: shown, never routed to. */
  private readonly foreign = new Map<string, PeerInfo>();
  private readonly incoming = new IncomingBoard((info) => this.emit('incoming', info));
  /** Bandwidth limits: every sender and receiving connection goes through it. */
  readonly pacer: Pacer;
  /** Finished files whose after-action waits for the rest of their outbox's burst (see finishFile). */
  private readonly afterWaiting = new Map<OutboxWatcher, { recs: FileRecord[]; timer: NodeJS.Timeout | null }>();
  private readonly afterRunning = new Set<Promise<void>>();
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
  discoveryState: 'off' | 'on' | 'error' = 'off';

  private constructor(
    readonly config: AgentConfig,
    opts: AgentOptions,
  ) {
    super();
    this.setMaxListeners(100);
    this.log = opts.log;
    const peerRates: Record<string, number> = { ...config.transfer.peerMaxBytesPerSecond };
    for (const p of config.peers) if (p.maxBytesPerSecond) peerRates[p.name] = p.maxBytesPerSecond;
    this.pacer = new Pacer({ outgoing: config.transfer.maxBytesPerSecond, incoming: config.limits.maxIncomingBytesPerSecond, peers: peerRates });
  }

  static async start(config: AgentConfig, opts: AgentOptions): Promise<Agent> {
    const agent = new Agent(config, opts);
    try {
      await agent.startParts();
    } catch (err) {
      await agent.stop().catch(() => undefined);
      throw err;
    }
    return agent;
  }

  private async startParts(): Promise<void> {
    const cfg = this.config;
    const log = this.log;
    await fs.mkdir(cfg.dataDir, { recursive: true });
    this.id = await loadAgentId(cfg.dataDir);
    if (!cfg.security.encrypt) {
      log.warn('ENCRYPTION IS OFF (security.encrypt=false): file contents cross the network in clear text; peers still authenticate with the installation key');
    }

    for (const ic of cfg.inboxes) {
      const inbox = await Inbox.open(ic, {
        log: log.child({ component: 'inbox', inbox: ic.name }),
        stateDir: path.join(cfg.dataDir, 'state', 'inboxes', safeName(ic.name)),
        maxFileBytes: cfg.limits.maxFileBytes,
        reserveBytes: cfg.limits.reserveBytes,
      });
      this.inboxes.set(ic.name, inbox);
      log.info(`inbox "${ic.name}" ready`, { path: inbox.path, staging: inbox.stagingDir, onCollision: ic.onCollision });
    }

    this.server = new TransportServer(
      {
        host: cfg.listen.host,
        port: cfg.listen.port,
        key: cfg.security.key,
        encrypt: cfg.security.encrypt,
        maxConnections: cfg.limits.maxConnections,
        maxConnectionsPerPeer: cfg.limits.maxConnectionsPerPeer,
        handshakeTimeoutMs: cfg.limits.handshakeTimeoutMs,
        log: log.child({ component: 'listener' }),
      },
      (conn) => {
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
          inbound: this.pacer.inbound,
          log: log.child({ component: 'receiver' }),
          onReceived: (info) => this.noteReceived(info),
          onFailure: (reason, message, peer) => this.noteFailure(reason, message, peer),
          incoming: this.incoming,
        });
        this.sessions.add(s);
        conn.socket.once('close', () => this.sessions.delete(s));
      },
    );
    try {
      this.listenAddress = await this.server.listen();
    } catch (err) {
      throw new TdxError('LISTEN_FAILED', `cannot listen on ${cfg.listen.host}:${cfg.listen.port} (listen): ${describeError(err)}; is another agent running? change "listen.port"`, { cause: err });
    }
    log.info(`listening for transfers on ${this.listenAddress.host}:${this.listenAddress.port}${cfg.security.encrypt ? ' (TLS, installation key)' : ' (plain TCP)'}`);
    const l = this.pacer.snapshot();
    if (l.outgoing.maxBytesPerSecond > 0 || l.incoming.maxBytesPerSecond > 0 || l.peers.length > 0) {
      const peers = l.peers.map((p) => `${p.name} ${formatRate(p.maxBytesPerSecond)}`).join(', ');
      log.info(`bandwidth limits: outgoing ${formatRate(l.outgoing.maxBytesPerSecond)}, incoming ${formatRate(l.incoming.maxBytesPerSecond)}${peers ? `; per peer: ${peers}` : ''}`);
    }

    this.table.setSelf({ id: this.id, name: cfg.name, port: this.listenAddress.port, inboxes: [...this.inboxes.keys()], version: this.version });
    this.table.setStatic(cfg.peers);
    this.table.on('change', (p) => this.onPeerChange(p));

    if (cfg.legacy.listen) {
      const inbox = this.inboxes.get(cfg.legacy.inbox ?? '');
      if (!inbox) throw new TdxError('CONFIG_INVALID', `legacy.inbox "${cfg.legacy.inbox}" is not one of this agent's inboxes`);
      this.legacy = new LegacyListener({
        host: cfg.legacy.listen.host,
        port: cfg.legacy.listen.port,
        inbox,
        allow: cfg.legacy.allow,
        maxFileBytes: Math.min(cfg.legacy.maxFileBytes, cfg.limits.maxFileBytes),
        log: log.child({ component: 'legacy' }),
        idleTimeoutMs: cfg.limits.idleTimeoutMs,
        maxConnections: cfg.limits.maxConnections,
        onReceived: (info) => this.noteReceived(info),
        incoming: this.incoming,
      });
      const a = await this.legacy.start();
      log.warn(`legacy TOX listener on ${a.host}:${a.port} → inbox "${inbox.name}": UNAUTHENTICATED and unencrypted by nature${cfg.legacy.allow.length ? `; allowed sources: ${cfg.legacy.allow.join(', ')}` : '; any source address may send (set legacy.allow)'}`);
    }

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
  }

  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const receiversDone = this.stopReceiving();
    for (const w of this.watchers) await w.stop().catch(() => undefined);
    // Stop accepting now; net.Server.close() resolves only once every connection is gone.
    const closed = this.server?.close().catch(() => undefined);
    await this.legacy?.stop().catch(() => undefined);
    await Promise.all([...this.destinations.values()].map((d) => d.stop(graceMs)));
    for (const w of [...this.afterWaiting.keys()]) this.flushAfter(w);
    await Promise.all([...this.afterRunning]);
    await receiversDone;
    for (const s of this.sessions) s.shutdown();
    this.server?.destroyAll();
    await closed;
    this.pacer.stop();
    for (const i of this.inboxes.values()) await i.close().catch(() => undefined);
    await this.journal?.close().catch(() => undefined);
    await this.jobStore?.close().catch(() => undefined);
    this.log.info('agent stopped');
  }

  // ------------------------------------------------------------------ outbox → jobs

  private onReady(w: OutboxWatcher, file: ReadyFile): void {
    if (this.stopping) return;
    const key = `${file.outbox.path}\0${file.rel}`;
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
    const { destinations, waiting } = resolveRoutes(file.outbox.to, this.table.list(), { selfName: this.config.name, discovery: this.config.discovery.enabled });
    // Named peers not known yet still get a destination: the job waits in it, visibly.
    for (const wr of waiting) {
      if (wr.route.peer === '*') continue;
      const inbox = wr.route.inbox ?? null;
      destinations.push({ key: `${wr.route.peer}/${inbox ?? ''}`, peer: wr.route.peer, peerKey: wr.route.peer, inbox, protocol: 'tdxfer', flatten: wr.route.flatten ?? false });
    }
    const fanout = file.outbox.to.filter((r) => r.peer === '*');
    const done = journal.doneDestinations(file.outbox.path, file.rel, file.size, file.mtimeMs);
    const rec: FileRecord = { key, file, remaining: new Set(), jobs: new Map(), superseded: false, failed: false, multi: destinations.length > 1 || fanout.length > 0, fanout };
    this.records.set(key, rec);
    for (const d of destinations) {
      if (done.has(d.key)) continue;
      this.addJob(rec, d);
    }
    if (rec.remaining.size === 0 && fanout.length === 0) this.finishFile(w, rec);
    else if (rec.remaining.size === 0) this.log.info(`${file.rel}: waiting for a peer with the right inbox to appear (route "*")`);
  }

  private addJob(rec: FileRecord, d: Destination, target?: string, id?: string, clientId?: string): Job {
    const q = this.destination(d);
    const file = rec.file;
    const tgt = target ?? (d.protocol === 'legacy' ? legacyTargetName(file.rel, d.flatten) : d.flatten ? path.posix.basename(file.rel) : file.rel);
    const job: Job = {
      info: {
        id: id ?? this.newJobId(),
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
        queuedAt: Date.now(),
        startedAt: null,
        finishedAt: null,
        error: null,
        landedAs: null,
        kind: rec.explicit ? 'send' : 'outbox',
        ...(clientId !== undefined ? { clientId } : {}),
      },
      abs: file.abs,
      size: file.size,
      mtimeMs: file.mtimeMs,
      target: tgt,
      controller: new AbortController(),
    };
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
    const cfg = this.config;
    q = new DestinationQueue(d, {
      log: this.log.child({ component: 'sender' }),
      resolvePeer: () => this.resolvePeer(d),
      connectBase: {
        key: cfg.security.key,
        encrypt: cfg.security.encrypt,
        self: { id: this.id, name: cfg.name, software: this.version },
        connectTimeoutMs: Math.min(10_000, cfg.limits.handshakeTimeoutMs),
        handshakeTimeoutMs: cfg.limits.handshakeTimeoutMs,
        idleTimeoutMs: cfg.limits.idleTimeoutMs,
        chunkBytes: cfg.transfer.chunkBytes,
        pace: this.pacer.forPeer(d.peer),
      },
      window: cfg.transfer.window,
      connections: cfg.transfer.connections,
      retryInitialMs: cfg.transfer.retryInitialMs,
      retryMaxMs: cfg.transfer.retryMaxMs,
      onJobChange: (job) => this.onJobChange(job),
      onProgress: (job) => this.onJobProgress(job),
      onPeerInboxes: (inboxes) => this.table.learnInboxes(d.peerKey, inboxes),
      onLinkProblem: (code, message) => this.notePeerReason(d.peerKey, peerReason(code, message)),
      onReachability: (up, why) => {
        if (up) {
          this.notePeerReason(d.peerKey, null);
          this.table.markReachable(d.peerKey);
        }
        else {
          this.table.markUnreachable(d.peerKey, why ?? undefined);
          this.noteFailure('UNREACHABLE', why ?? 'unreachable', d.peer);
        }
      },
    });
    this.destinations.set(d.key, q);
    return q;
  }

  private resolvePeer(d: Destination): PeerInfo | null {
    const p = selectPeers(d.peerKey, this.table.list())[0] ?? null;
    if (p?.source === 'self') {
      const h = this.listenAddress.host;
      const local = h === '0.0.0.0' || h === '::' || h === '' ? '127.0.0.1' : h;
      return { ...p, addresses: [local], port: this.listenAddress.port };
    }
    return p;
  }

  private onOutcome(rec: FileRecord, d: Destination, job: Job, outcome: JobOutcome): void {
    this.jobs.delete(job.info.id);
    this.progress.forget(job.info.id);
    if (rec.explicit && (outcome.kind === 'done' || outcome.kind === 'failed')) {
      this.jobStore?.end(job.info.id, outcome.kind).catch((err: unknown) => this.log.warn(`job journal: ${describeError(err)}; job ${job.info.id} may be sent again after a restart`));
    }
    if (outcome.kind === 'done' || outcome.kind === 'failed') this.recent.push({ ...job.info });
    if (outcome.kind === 'done') {
      const r = outcome.result;
      const secs = Math.max(0.001, (Date.now() - (job.info.startedAt ?? Date.now())) / 1000);
      // The receiver may have landed it under another name (a collision rename, or a name Windows cannot hold: CON.png → _CON.png).
      const renamed = r.path && r.path !== job.target ? ` as ${r.path}` : '';
      this.log.info(`sent ${rec.file.rel} to ${d.peer}/${d.inbox ?? ''}${renamed}${r.status !== 'stored' ? ` (${r.status} by receiver)` : ''}`, {
        size: rec.file.size, ms: Math.round(secs * 1000), MBps: (r.bytesSent / 1e6 / secs).toFixed(1), ...(r.resumedFrom ? { resumedFrom: r.resumedFrom } : {}),
      });
      rec.remaining.delete(d.key);
      if (rec.multi && !rec.superseded) {
        void this.journal?.recordDestination(rec.file.outbox.path, rec.file.rel, rec.file.size, rec.file.mtimeMs, d.key).catch((err) => this.log.warn(`journal: ${describeError(err)}`));
      }
      if (rec.remaining.size === 0 && !rec.superseded && this.records.get(rec.key) === rec) {
        const w = this.watchers.find((x) => x.outbox === rec.file.outbox);
        if (w) this.finishFile(w, rec);
        else this.records.delete(rec.key); // POST /send jobs have no outbox
      }
    } else if (outcome.kind === 'failed') {
      rec.failed = true;
      this.noteFailure(outcome.error.code, outcome.error.message, d.peer);
    }
  }

  /**
   * Every destination has the file: its after-action runs once nothing else of its outbox
   * is still being sent, or AFTER_BATCH_MS later at the latest. Moving files out one by
   * one while the rest of a dropped folder is still on its way makes chokidar re-read
   * (and stat every entry of) that folder after every move: O(files²) work that starved
   * the sender (2000 files: ~45 s of CPU). In a batch the folder is re-read a few times.
   * The longest wait matters: with 500 ms the sender needed twice the CPU for a burst of
   * 2000 small files, and a burst that outlasts the wait starts archiving mid-way (5 s).
   */
  private finishFile(w: OutboxWatcher, rec: FileRecord): void {
    let b = this.afterWaiting.get(w);
    if (!b) {
      b = { recs: [], timer: null };
      this.afterWaiting.set(w, b);
    }
    b.recs.push(rec);
    if (!this.outboxBusy(w.outbox)) this.flushAfter(w);
    else b.timer ??= setTimeout(() => this.flushAfter(w), AFTER_BATCH_MS);
  }

  /** True while a file of `ob` still waits for a destination. */
  private outboxBusy(ob: OutboxConfig): boolean {
    for (const r of this.records.values()) if (r.file.outbox === ob && r.remaining.size > 0 && !r.superseded && !r.failed) return true;
    return false;
  }

  private flushAfter(w: OutboxWatcher): void {
    const b = this.afterWaiting.get(w);
    if (!b) return;
    this.afterWaiting.delete(w);
    if (b.timer) clearTimeout(b.timer);
    let next = 0;
    const batch = newAfterBatch();
    const worker = async (): Promise<void> => {
      while (next < b.recs.length) await this.applyAfterNow(w, b.recs[next++]!, batch);
    };
    const run: Promise<void> = Promise.all(Array.from({ length: Math.min(AFTER_CONCURRENCY, b.recs.length) }, worker))
      .then(() => finishAfterBatch(batch, w.outbox.path))
      .catch((err: unknown) => this.log.debug(`removing emptied outbox folders: ${describeError(err)}`))
      .then(() => {
        this.afterRunning.delete(run);
      });
    this.afterRunning.add(run);
  }

  /** Never throws: failures are logged and the file stays in the outbox. */
  private async applyAfterNow(w: OutboxWatcher, rec: FileRecord, batch?: AfterBatch): Promise<void> {
    // Released first: the archive move or delete then reads as a plain 'gone' for an
    // unknown file, and a rewrite during the move is emitted as a new version.
    w.release(rec.file.rel);
    try {
      const r = await applyAfter(rec.file, this.journal!, this.log.child({ component: 'outbox' }), batch ? { batch } : {});
      if (r.action === 'changed') this.log.info(`${rec.file.rel} changed after it was sent: the new version will be sent`);
      else if (r.action === 'archived') this.log.debug(`archived ${rec.file.rel}`, { to: r.to });
    } catch (err) {
      this.log.error(`after-action "${rec.file.outbox.after}" failed for ${rec.file.abs}: ${describeError(err)}; the file stays in the outbox and may be sent again`);
    } finally {
      if (this.records.get(rec.key) === rec) this.records.delete(rec.key);
    }
  }

  private onGone(ob: OutboxConfig, rel: string): void {
    const key = `${ob.path}\0${rel}`;
    const rec = this.records.get(key);
    if (!rec || rec.remaining.size === 0) return; // unknown, or being archived/deleted by us
    for (const j of rec.jobs.values()) if (j.info.state !== 'sending') j.controller.abort();
    this.records.delete(key);
    this.log.info(`${rel} was removed from the outbox before it was sent everywhere; its pending jobs are cancelled`);
  }

  // ------------------------------------------------------------------ peers

  private withReason(p: PeerInfo): PeerInfo {
    return { ...p, reason: this.peerReasons.get(peerKeyOf(p)) ?? null };
  }

  /** Records why a peer's link fails (null: it works); a change is emitted as a 'peer' event. */
  private notePeerReason(peerKey: string, reason: string | null): void {
    const p = selectPeers(peerKey, this.table.list())[0];
    const key = p ? peerKeyOf(p) : peerKey;
    if ((this.peerReasons.get(key) ?? null) === reason) return;
    if (reason === null) this.peerReasons.delete(key);
    else this.peerReasons.set(key, reason);
    if (p) this.emit('peer', this.withReason(p));
  }

  /**
   * Discovery heard an agent of another installation (another key fingerprint): it is
   * shown with the reason, never routed to (it is not in the peer table).
   */
  noteForeignPeer(a: Announcement): void {
    const info: PeerInfo = {
      id: a.id, name: a.name, source: 'discovered', protocol: 'tdxfer', addresses: [...a.addresses], port: a.port, inboxes: [...a.inboxes],
      version: a.version, state: 'unreachable', lastSeen: Date.now(), reason: PEER_REASON.otherKey,
    };
    const prev = this.foreign.get(a.instance);
    this.foreign.set(a.instance, info);
    if (!prev || prev.name !== info.name || prev.port !== info.port || prev.addresses.join() !== info.addresses.join()) this.emit('peer', { ...info });
  }

  /** The instance is gone, or announces our key again. */
  forgetForeignPeer(instance: string): void {
    const prev = this.foreign.get(instance);
    if (!prev) return;
    this.foreign.delete(instance);
    this.emit('peer', { ...prev, state: 'gone' });
  }

  private onPeerChange(p: PeerInfo): void {
    this.emit('peer', this.withReason(p));
    if (p.state !== 'up') return;
    for (const q of this.destinations.values()) {
      if (q.dest.peer === p.name) q.wake();
    }
    // Fan-out routes: give waiting files to a peer that just appeared with the inbox.
    for (const rec of this.records.values()) {
      if (rec.fanout.length === 0 || rec.superseded || rec.failed) continue;
      const { destinations } = resolveRoutes(rec.fanout, [p], { selfName: this.config.name });
      for (const d of destinations) if (!rec.jobs.has(d.key)) this.addJob(rec, d);
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

  private noteReceived(info: ReceivedInfo): void {
    this.received.push(info);
    this.emit('received', info);
  }

  private noteFailure(reason: ReportedCode, message: string, peer: string | null): void {
    const f = { reason, message, peer, at: Date.now() };
    this.failures.push(f);
    this.emit('failure', f);
  }

  snapshot(): AgentSnapshot {
    const queues = [...this.destinations.values()].map((q) => {
      const c = { queued: 0, sending: 0, waiting: 0, failed: 0 };
      for (const j of q.jobs) if (j.info.state in c) c[j.info.state as keyof typeof c]++;
      return { destination: q.dest.key, peer: q.dest.peer, inbox: q.dest.inbox, ...c };
    });
    return {
      agent: { id: this.id, name: this.config.name, version: this.version, listen: `${this.listenAddress.host}:${this.listenAddress.port}`, startedAt: this.startedAt, discovery: this.discoveryState },
      peers: this.peerList(),
      queues,
      active: [...this.jobs.values()].map((j) => ({ ...j.info })),
      recent: this.recent.list(),
      received: this.received.list(),
      failures: this.failures.list(),
      incoming: this.incoming.list(),
      outboxes: this.outboxList(),
      limits: this.pacer.snapshot(),
      held: [...this.inboxes.values()].flatMap((i) => i.heldFiles()),
    };
  }

  private outboxList(): OutboxInfo[] {
    const by = new Map<OutboxConfig, OutboxInfo>(this.config.outboxes.map((ob) => [ob, { path: ob.path, pending: 0, sending: 0, stuck: [] }]));
    for (const rec of this.records.values()) {
      const o = by.get(rec.file.outbox);
      if (!o || rec.superseded) continue;
      if (rec.remaining.size > 0) o.pending++;
      for (const j of rec.jobs.values()) {
        const i = j.info;
        if (i.state === 'sending') o.sending++;
        const stuck = i.state === 'failed' || (i.state === 'waiting' && i.error !== null) || (i.state === 'queued' && i.error !== null);
        if (stuck && o.stuck.length < 50) o.stuck.push({ file: i.file, peer: i.peer, inbox: i.inbox, state: i.state, error: i.error, attempts: i.attempts, queuedAt: i.queuedAt });
      }
    }
    for (const w of this.watchers) {
      const o = by.get(w.outbox);
      if (!o) continue;
      o.unreadable = w.unreadableFiles().slice(0, 50).map((u) => ({ file: u.rel, path: u.abs, code: u.code, fix: u.fix }));
      o.excluded = w.excludedFiles();
    }
    return [...by.values()];
  }

  /** The peer table with reasons, plus agents of another installation (instead of their stale entries). */
  private peerList(): PeerInfo[] {
    const foreignIds = new Set([...this.foreign.values()].map((f) => f.id));
    const own = this.table.list().filter((p) => !(p.source === 'discovered' && foreignIds.has(p.id)));
    return [...own.map((p) => this.withReason(p)), ...[...this.foreign.values()].map((f) => ({ ...f }))];
  }

  /** POST /limits, `tdxfer limit`: applies from the next slice of every running transfer. */
  setLimit(req: LimitRequest): LimitsSnapshot {
    const rate = req.maxBytesPerSecond;
    if (!Number.isSafeInteger(rate) || rate < 0) throw new TdxError('BAD_RATE', `maxBytesPerSecond must be a whole number of bytes per second, 0 for unlimited; got ${JSON.stringify(rate)}`);
    if (req.peer !== undefined) {
      if (!new RegExp(NAME_PATTERN).test(req.peer)) throw new TdxError('BAD_REQUEST', `peer ${JSON.stringify(req.peer)} is not a valid peer name`);
      if (req.direction === 'incoming') throw new TdxError('BAD_REQUEST', 'a peer limit is for outgoing transfers; the incoming limit is agent-wide (leave out peer)');
      this.pacer.setPeer(req.peer, rate);
      this.log.info(`bandwidth limit to peer ${req.peer}: ${formatRate(rate)}`);
    } else if (req.direction === 'incoming') {
      this.pacer.setIncoming(rate);
      this.log.info(`incoming bandwidth limit: ${formatRate(rate)}`);
    } else {
      this.pacer.setOutgoing(rate);
      this.log.info(`outgoing bandwidth limit: ${formatRate(rate)}`);
    }
    return this.pacer.snapshot();
  }

  async health(): Promise<HealthReport> {
    const folders: HealthReport['folders'] = [];
    const problems: string[] = [];
    for (const inbox of this.inboxes.values()) {
      const h = await inbox.health();
      folders.push({ kind: 'inbox', name: inbox.name, path: inbox.path, ...h });
      if (!h.exists || !h.writable) problems.push(`inbox "${inbox.name}" (${inbox.path}) is ${h.exists ? 'not writable' : 'missing'}`);
    }
    for (const ob of this.config.outboxes) {
      let exists = false;
      let writable = false;
      try {
        exists = (await fs.stat(ob.path)).isDirectory();
        await fs.access(ob.path, fs.constants.W_OK);
        writable = true;
      } catch {
        /* reported below */
      }
      folders.push({ kind: 'outbox', name: path.basename(ob.path), path: ob.path, exists, writable, freeBytes: null });
      if (!exists || !writable) problems.push(`outbox ${ob.path} is ${exists ? 'not writable' : 'missing'}`);
    }
    for (const w of this.watchers) {
      for (const l of w.skippedLinks()) {
        problems.push(`outbox ${w.root}: symlink ${l.rel} -> ${l.target} is not sent (links are not followed; put the file itself there, or set outboxes[].followSymlinks)`);
      }
      for (const u of w.unreadableFiles()) problems.push(`outbox ${w.root}: ${u.abs} is not readable (${u.code}) and is not sent: ${u.fix}`);
    }
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
    const { destinations, waiting } = resolveRoutes([{ peer: req.peer, inbox: req.inbox }], this.table.list(), { selfName: this.config.name, discovery: this.config.discovery.enabled });
    const d = destinations[0];
    if (!d) throw new TdxError('UNKNOWN_PEER', waiting[0]?.reason ?? `peer ${req.peer} unknown`);
    // A misspelled inbox is refused now when the peer is known to lack it, instead of a
    // job that is retried forever. Peers whose inboxes are not known yet (a static peer
    // never reached) get the job; the receiver refuses it then (NO_SUCH_INBOX, final).
    if (inbox !== null && d.protocol === 'tdxfer') {
      const known = selectPeers(d.peerKey, this.table.list())[0];
      if (known && known.inboxes.length > 0 && !known.inboxes.includes(inbox)) {
        throw new TdxError('NO_SUCH_INBOX', `${known.name} has no inbox "${inbox}" (its inboxes: ${known.inboxes.join(', ')}); check the spelling`);
      }
    }
    const wanted = req.as ?? path.basename(abs);
    // Refuse a bad target name here, so a TouchDesigner script gets the reason at once
    // instead of a job that fails at the receiver.
    const named = sanitizeRelPath(toWirePath(wanted));
    if (!named.ok) throw new TdxError('BAD_NAME', `target name ${JSON.stringify(wanted)} is not a safe relative file name: ${named.reason}`);
    const stored: StoredJob = {
      id: this.newJobId(), file: abs, peer: req.peer, inbox, target: named.rel, queuedAt: Date.now(),
      ...(req.clientId !== undefined ? { clientId: req.clientId } : {}),
    };
    await this.jobStore!.add(stored);
    const job = this.addExplicit(stored, st, d);
    this.log.info(`queued ${abs} for ${d.peer}/${inbox ?? ''} as ${named.rel} (job ${stored.id})`);
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
        this.recent.push({ ...this.blankInfo(sj, 0), state: 'failed', error: describeError(err), finishedAt: Date.now() });
        this.noteFailure('SOURCE_GONE', msg, sj.peer);
        continue;
      }
      const { destinations } = resolveRoutes([{ peer: sj.peer, inbox: sj.inbox ?? undefined }], this.table.list(), { selfName: this.config.name });
      // A peer not known yet (discovery still listening) gets a waiting destination, as outbox files do.
      const d = destinations[0] ?? { key: `${sj.peer}/${sj.inbox ?? ''}`, peer: sj.peer, peerKey: sj.peer, inbox: sj.inbox, protocol: 'tdxfer' as const, flatten: false };
      this.addExplicit(sj, st, d);
    }
    if (stored.length > 0) this.log.info(`resumed ${stored.length} job(s) queued with POST /send before the restart`, { ids: stored.map((j) => j.id).join(', ') });
  }

  private addExplicit(sj: StoredJob, st: { size: number; mtimeMs: number }, d: Destination): Job {
    const pseudo: OutboxConfig = { path: path.dirname(sj.file), to: [{ peer: sj.peer, inbox: sj.inbox ?? undefined }], include: [], exclude: [], after: 'keep', settleMs: 0 };
    const file: ReadyFile = { outbox: pseudo, rel: path.basename(sj.file), abs: sj.file, size: st.size, mtimeMs: st.mtimeMs };
    const rec: FileRecord = { key: `send\0${sj.id}`, file, remaining: new Set(), jobs: new Map(), superseded: false, failed: false, multi: false, fanout: [], explicit: true };
    const job = this.addJob(rec, d, d.protocol === 'legacy' ? legacyTargetName(sj.target, d.flatten) : sj.target, sj.id, sj.clientId);
    job.info.queuedAt = sj.queuedAt;
    return job;
  }

  private blankInfo(sj: StoredJob, size: number): JobInfo {
    return {
      id: sj.id, outbox: path.dirname(sj.file), file: path.basename(sj.file), source: sj.file, peer: sj.peer, inbox: sj.inbox, target: sj.target,
      state: 'queued', bytesDone: 0, bytesTotal: size, rate: 0, attempts: 0, queuedAt: sj.queuedAt, startedAt: null, finishedAt: null, error: null, landedAs: null, kind: 'send',
    };
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
    if (!job) {
      const done = this.recent.list().find((x) => x.id === id);
      throw new TdxError(done ? 'ALREADY_FINISHED' : 'NOT_FOUND', done ? `job ${id} already ${done.state === 'done' ? 'finished' : 'failed'}: nothing to cancel` : `no open job with id "${id}" (tdxfer jobs lists them)`);
    }
    if (job.info.kind !== 'send') {
      throw new TdxError('NOT_CANCELLABLE', `job ${id} sends ${job.info.source} from an outbox: remove the file from the outbox to stop it being sent`);
    }
    await this.jobStore!.end(id, 'cancelled');
    const wasSending = job.info.state === 'sending';
    job.controller.abort();
    this.jobs.delete(id);
    this.progress.forget(id);
    const info: JobInfo = { ...job.info, state: 'failed', error: wasSending ? 'cancelled by the operator (while sending: the transfer in flight may still complete, it is not retried)' : 'cancelled by the operator', finishedAt: Date.now() };
    this.recent.push(info);
    this.emit('job', { ...info });
    this.log.info(`job ${id} (${job.info.source} → ${job.info.peer}/${job.info.inbox ?? ''}) cancelled`);
    return info;
  }
}

/** Size and mtime of a file to queue, or a TdxError saying why it cannot be sent. */
async function statSource(abs: string): Promise<{ size: number; mtimeMs: number }> {
  let st;
  try {
    st = await fs.stat(abs);
  } catch {
    throw new TdxError('NO_SUCH_FILE', `file not found: ${abs} (give an absolute path on the agent's machine)`);
  }
  if (!st.isFile()) throw new TdxError('NOT_A_FILE', `${abs} is not a regular file`);
  return { size: st.size, mtimeMs: st.mtimeMs };
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100) || '_';
}

/** Creates a missing outbox (logged) and checks the agent may move files out of it. */
async function ensureOutbox(dir: string, log: Logger): Promise<void> {
  try {
    const made = await mkdirp(dir);
    if (made !== undefined) log.info(`created outbox folder ${dir}`);
    await fs.access(dir, fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    // The agent moves sent files out of an outbox (archive, delete): it needs write access too.
    throw new TdxError('OUTBOX_UNUSABLE', folderProblem(`outbox ${dir}`, err, 'outboxes[].path'), { cause: err });
  }
}
