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
import { TdxError, describeError } from '../errors.js';
import type { AgentEvents, AgentSnapshot, AgentView, FailureInfo, HealthReport, JobInfo, PeerInfo, ReceivedInfo, SendRequest } from './model.js';
import { Inbox } from '../inbox/inbox.js';
import { OutboxWatcher, SentJournal, applyAfter, finishAfterBatch, newAfterBatch, type AfterBatch, type ReadyFile } from '../outbox/index.js';
import { PeerTable } from '../discovery/table.js';
import { resolveRoutes, selectPeers, type Destination } from '../routing.js';
import { TransportServer } from '../transport/server.js';
import { ReceiverSession } from '../transfer/receiver.js';
import { DestinationQueue, type Job, type JobOutcome } from '../transfer/destination.js';
import { LegacyListener } from '../legacy/server.js';
import { legacyTargetName } from '../legacy/client.js';
import { loadAgentId, softwareVersion } from './identity.js';
import { sanitizeRelPath, toWirePath } from '../names.js';
import { Ring } from './ring.js';
import { ProgressThrottle } from './progress.js';

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
  /** Finished files whose after-action waits for the rest of their outbox's burst (see finishFile). */
  private readonly afterWaiting = new Map<OutboxWatcher, { recs: FileRecord[]; timer: NodeJS.Timeout | null }>();
  private readonly afterRunning = new Set<Promise<void>>();
  private server: TransportServer | null = null;
  private legacy: LegacyListener | null = null;
  private journal: SentJournal | null = null;
  private jobSeq = 0;
  private stopping = false;
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
        if (this.stopping) {
          conn.socket.destroy();
          return;
        }
        const s = new ReceiverSession(conn, {
          self: { id: this.id, name: cfg.name, software: this.version },
          key: cfg.security.key,
          inboxes: this.inboxes,
          limits: cfg.limits,
          eagerMaxBytes: cfg.limits.eagerMaxBytes,
          log: log.child({ component: 'receiver' }),
          onReceived: (info) => this.noteReceived(info),
          onFailure: (reason, message, peer) => this.noteFailure(reason, message, peer),
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
      });
      const a = await this.legacy.start();
      log.warn(`legacy TOX listener on ${a.host}:${a.port} → inbox "${inbox.name}": UNAUTHENTICATED and unencrypted by nature${cfg.legacy.allow.length ? `; allowed sources: ${cfg.legacy.allow.join(', ')}` : '; any source address may send (set legacy.allow)'}`);
    }

    this.journal = await SentJournal.open(path.join(cfg.dataDir, 'state', 'sent.jsonl'), { log: log.child({ component: 'journal' }) });
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

  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const w of this.watchers) await w.stop().catch(() => undefined);
    // Stop accepting now; net.Server.close() resolves only once every connection is gone.
    const closed = this.server?.close().catch(() => undefined);
    await this.legacy?.stop().catch(() => undefined);
    await Promise.all([...this.destinations.values()].map((d) => d.stop(graceMs)));
    for (const w of [...this.afterWaiting.keys()]) this.flushAfter(w);
    await Promise.all([...this.afterRunning]);
    for (const s of this.sessions) s.shutdown();
    this.server?.destroyAll();
    await closed;
    for (const i of this.inboxes.values()) await i.close().catch(() => undefined);
    await this.journal?.close().catch(() => undefined);
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

  private addJob(rec: FileRecord, d: Destination, target?: string): Job {
    const q = this.destination(d);
    const file = rec.file;
    const tgt = target ?? (d.protocol === 'legacy' ? legacyTargetName(file.rel, d.flatten) : d.flatten ? path.posix.basename(file.rel) : file.rel);
    const job: Job = {
      info: {
        id: `j${(++this.jobSeq).toString(36)}-${Date.now().toString(36)}`,
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
      },
      window: cfg.transfer.window,
      connections: cfg.transfer.connections,
      retryInitialMs: cfg.transfer.retryInitialMs,
      retryMaxMs: cfg.transfer.retryMaxMs,
      onJobChange: (job) => this.onJobChange(job),
      onProgress: (job) => this.onJobProgress(job),
      onReachability: (up, why) => {
        if (up) this.table.markReachable(d.peerKey);
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
    if (outcome.kind === 'done' || outcome.kind === 'failed') this.recent.push({ ...job.info });
    if (outcome.kind === 'done') {
      const r = outcome.result;
      const secs = Math.max(0.001, (Date.now() - (job.info.startedAt ?? Date.now())) / 1000);
      this.log.info(`sent ${rec.file.rel} to ${d.peer}/${d.inbox ?? ''}${r.status !== 'stored' ? ` (${r.status} by receiver)` : ''}`, {
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

  private onPeerChange(p: PeerInfo): void {
    this.emit('peer', { ...p });
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

  private noteFailure(reason: string, message: string, peer: string | null): void {
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
      peers: this.table.list(),
      queues,
      active: [...this.jobs.values()].map((j) => ({ ...j.info })),
      recent: this.recent.list(),
      received: this.received.list(),
      failures: this.failures.list(),
    };
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

  /** The original TOX's QueueJob(file_name, target_name): send an existing file to a peer. */
  async send(req: SendRequest): Promise<JobInfo> {
    if (this.stopping) throw new TdxError('SHUTTING_DOWN', 'the agent is stopping');
    const abs = path.resolve(req.file);
    let st;
    try {
      st = await fs.stat(abs);
    } catch {
      throw new TdxError('NO_SUCH_FILE', `file not found: ${abs} (give an absolute path on the agent's machine)`);
    }
    if (!st.isFile()) throw new TdxError('NOT_A_FILE', `${abs} is not a regular file`);
    const route: RouteConfig = { peer: req.peer, inbox: req.inbox };
    const { destinations, waiting } = resolveRoutes([route], this.table.list(), { selfName: this.config.name, discovery: this.config.discovery.enabled });
    const d = destinations[0];
    if (!d) throw new TdxError('UNKNOWN_PEER', waiting[0]?.reason ?? `peer ${req.peer} unknown`);
    const wanted = req.as ?? path.basename(abs);
    // Refuse a bad target name here, so a TouchDesigner script gets the reason at once
    // instead of a job that fails at the receiver.
    const named = sanitizeRelPath(toWirePath(wanted));
    if (!named.ok) throw new TdxError('BAD_NAME', `target name ${JSON.stringify(wanted)} is not a safe relative file name: ${named.reason}`);
    const target = named.rel;
    const pseudo: OutboxConfig = { path: path.dirname(abs), to: [route], include: [], exclude: [], after: 'keep', settleMs: 0 };
    const file: ReadyFile = { outbox: pseudo, rel: path.basename(abs), abs, size: st.size, mtimeMs: st.mtimeMs };
    const rec: FileRecord = { key: `send\0${abs}\0${++this.jobSeq}`, file, remaining: new Set(), jobs: new Map(), superseded: false, failed: false, multi: false, fanout: [] };
    const job = this.addJob(rec, d, d.protocol === 'legacy' ? legacyTargetName(target, d.flatten) : target);
    return { ...job.info };
  }
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100) || '_';
}

/** Creates a missing outbox (logged) and checks the agent may move files out of it. */
async function ensureOutbox(dir: string, log: Logger): Promise<void> {
  try {
    const made = await fs.mkdir(dir, { recursive: true });
    if (made !== undefined) log.info(`created outbox folder ${dir}`);
    await fs.access(dir, fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    throw new TdxError('OUTBOX_UNUSABLE', `outbox ${dir} cannot be created or is not readable and writable by this user: ${describeError(err)}; fix its permissions or change outboxes[].path`, { cause: err });
  }
}
