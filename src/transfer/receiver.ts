/**
 * Server side of protocol v1 (src/protocol/PROTOCOL.md): one session per accepted
 * connection. Handshake, then files in sequence; each file is acknowledged only after
 * the inbox made it durable and visible (Inbox.commit).
 *
 * Commits run concurrently with the next file's DATA (pipelining), bounded by
 * MAX_PENDING_COMMITS; ACKs therefore may leave out of order, each carrying its id.
 *
 * Eager files (OFFER.eager, section 6.4: small files the sender streams without waiting
 * for ACCEPT) are gathered in memory and handed to the inbox whole at END, so a burst of
 * small files never waits on a file create per file; their memory is bounded by the
 * announced eagerMaxBytes times MAX_PENDING_COMMITS.
 */
import type { Logger } from '../log.js';
import { TdxError, codeOf, describeError, type ReportedCode } from '../errors.js';
import { ProtocolError, errorFrameFor, isRetryable, makeNonce, type Frame, type FrameOf } from '../protocol/index.js';
import { ServerHandshake, type HandshakeAction } from './handshake.js';
import type { HashAlg } from '../hash.js';
import { ReceivingFiles } from './files.js';
import type { Inbox, IncomingFile } from '../inbox/inbox.js';
import type { ReceivedInfo } from '../types.js';
import { FrameChannel } from './channel.js';
import type { IncomingConnection } from '../transport/server.js';
import type { IncomingHandle, IncomingTracker } from '../agent/incoming.js';

const MAX_PENDING_COMMITS = 16;
/** Largest file taken as an eager OFFER (announced in WELCOME.eagerMaxBytes). */
export const EAGER_MAX_BYTES = 1024 * 1024;

export interface ReceiverDeps {
  self: { id: string; name: string; software: string };
  key: Buffer;
  inboxes: Map<string, Inbox>;
  limits: { idleTimeoutMs: number; handshakeTimeoutMs: number; maxFileBytes: number };
  log: Logger;
  /**
   * A file landed. `markAnnounced` (call it right before announcing, in the same tick: it
   * writes synchronously) clears the landing's "not yet announced" record in the inbox
   * journal; a restart announces what is left. `say` logs the landing's `received` line
   * (call it once, when it is announced).
   */
  onReceived: (info: ReceivedInfo, markAnnounced?: () => Promise<void>, say?: () => void) => void;
  onFailure?: (reason: ReportedCode, message: string, peer: string | null) => void;
  /** Shows streamed files while they arrive (status, events, dashboard). */
  incoming?: IncomingTracker;
  /** WELCOME.eagerMaxBytes: 0 turns eager offers off (tests of the classic sequence). Default EAGER_MAX_BYTES. */
  eagerMaxBytes?: number;
  /** Incoming bandwidth limit: see ChannelOptions.inbound. */
  inbound?: (bytes: number) => number;
  /** File hash algorithms accepted, most preferred first (security.hashes); default HASH_ALGS. */
  hashes?: readonly HashAlg[];
  /** Wall clock of received files' times (startedAt, durationMs, at), ms since the epoch; default Date.now (the agent passes its clock). */
  now?: () => number;
}

interface Streaming {
  id: number;
  file: IncomingFile;
  inbox: Inbox;
  expected: number;
  received: number;
  startedAt: number;
  view?: IncomingHandle;
}

/** An eager file being gathered in memory (section 6.4). */
interface Gathering {
  eager: true;
  id: number;
  offer: FrameOf<'offer'>;
  chunks: Buffer[];
  received: number;
  startedAt: number;
}

export class ReceiverSession {
  private readonly channel: FrameChannel;
  private readonly hs: ServerHandshake;
  private peerId = '';
  private peerName = '';
  private current: Streaming | null = null;
  private gathering: Gathering | null = null;
  private readonly commits = new Set<Promise<void>>();
  /** Stopping: frames are no longer taken (see drain()). */
  private stopping = false;
  /** False once a stop gave up waiting: files not renamed yet stay staged (see drain()). */
  private landing = true;
  /** Which OFFER / DATA / END / ABORT is legal now (files.ts); `current` / `gathering` hold the I/O side. */
  private readonly files: ReceivingFiles;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly handshakeTimer: NodeJS.Timeout;

  constructor(
    private readonly conn: IncomingConnection,
    private readonly deps: ReceiverDeps,
  ) {
    this.log = deps.log.child({ from: conn.remoteAddress });
    this.now = deps.now ?? Date.now;
    this.channel = new FrameChannel(conn.socket, {
      // The decoder keeps its default size ceiling; the configured limit is the inbox's
      // to enforce, so an oversized offer gets a NACK TOO_LARGE instead of a dropped link.
      idleTimeoutMs: deps.limits.idleTimeoutMs,
      ...(deps.inbound ? { inbound: deps.inbound } : {}),
    });
    this.files = new ReceivingFiles(deps.eagerMaxBytes ?? EAGER_MAX_BYTES);
    this.hs = new ServerHandshake({
      key: deps.key,
      self: deps.self,
      serverNonce: makeNonce(),
      inboxes: [...deps.inboxes.keys()],
      encrypted: conn.encrypted,
      eagerMaxBytes: deps.eagerMaxBytes ?? EAGER_MAX_BYTES,
      ...(deps.hashes ? { hashes: deps.hashes } : {}),
    });
    this.handshakeTimer = setTimeout(() => {
      if (this.hs.step !== 'ready') {
        conn.refusals.warn('slow tdxfer handshakes', `closed connection from ${conn.remoteAddress}: handshake not finished within ${deps.limits.handshakeTimeoutMs} ms`, conn.remoteAddress);
        this.runHandshake(this.hs.on({ kind: 'timeout' }));
      }
    }, deps.limits.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.channel.on('close', (err) => this.onClose(err));
    this.channel.start((f) => this.onFrame(f));
  }

  /** Close for shutdown: files mid-stream keep their partial bytes for resume. */
  shutdown(): void {
    this.channel.fail(new TdxError('SHUTTING_DOWN', 'receiver is stopping'));
  }

  /**
   * Graceful stop (issue #20): no frame is taken any more; files already being landed
   * finish, each with its ACK before the connection closes. Past `landMs`, files not
   * renamed yet are refused instead (they stay staged for resume), and only those whose
   * rename is under way are waited for. So a file is never landed without its ACK being
   * written ahead of the close. Files mid-stream keep their partial bytes, as on any close.
   */
  async drain(landMs: number): Promise<void> {
    this.stopping = true;
    const deadline = Date.now() + landMs;
    while (this.commits.size > 0 && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))));
      await Promise.race([Promise.allSettled([...this.commits]), late]);
      clearTimeout(timer);
    }
    this.landing = false;
    while (this.commits.size > 0) await Promise.allSettled([...this.commits]);
    const socket = this.conn.socket;
    const gone = new Promise<void>((resolve) => {
      if (socket.destroyed) return resolve();
      socket.once('close', () => resolve());
      setTimeout(resolve, 1500).unref();
    });
    this.shutdown();
    await gone;
  }

  get peer(): string {
    return this.peerName || this.conn.remoteAddress;
  }

  private onClose(err: TdxError | null): void {
    clearTimeout(this.handshakeTimer);
    this.files.closed();
    this.gathering = null; // an eager file lives in memory only: nothing to keep
    if (this.current) {
      const c = this.current;
      this.current = null;
      this.log.info(`connection lost while receiving; keeping ${c.file.received} bytes of ${c.file.rel} for resume`, { inbox: c.inbox.name, reason: err?.message ?? 'closed' });
      c.view?.end('interrupted', `connection lost (${err?.message ?? 'closed'}); ${c.file.received} bytes kept for resume`);
      void c.file.abort(true);
    }
    if (err && err.code !== 'CONNECTION_LOST' && err.code !== 'SHUTTING_DOWN') {
      this.log.warn(`connection from ${this.peer} closed: ${err.message}`);
    } else {
      this.log.debug(`connection from ${this.peer} closed`);
    }
  }

  /** Not async: a DATA frame taken at once returns nothing, so the channel goes on without a promise per frame. */
  private onFrame(f: Frame): void | Promise<void> {
    if (this.stopping) return; // drain(): nothing new is started
    if (this.hs.step === 'ready') return this.onReady(f);
    this.runHandshake(this.hs.on({ kind: 'frame', frame: f }));
  }

  private outOfOrder(f: Frame, expected: string): never {
    throw new TdxError('OUT_OF_ORDER', `unexpected ${f.type.toUpperCase()} frame: expected ${expected}`);
  }

  /** Executes the server handshake machine's actions (handshake.ts). */
  private runHandshake(actions: HandshakeAction[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'send':
          this.channel.send(a.frame);
          if (a.frame.type === 'welcome') {
            this.peerId = this.hs.peer.agentId;
            this.peerName = this.hs.peer.name;
          }
          break;
        case 'close':
          if (a.how === 'end') this.channel.end();
          else this.channel.fail(a.error);
          break;
        case 'peerError':
          this.log.warn(`peer ${this.peer} reported ${a.frame.code}: ${a.frame.message}`);
          break;
        case 'authFailed':
          this.conn.refusals.warn('authentication failures', `refused ${this.peerName} (${this.conn.remoteAddress}): authentication failed, it does not hold this installation's key (security.key must be the same on every machine)`, this.conn.remoteAddress);
          this.deps.onFailure?.('AUTH_FAILED', `peer ${this.peerName} at ${this.conn.remoteAddress} failed authentication`, this.peerName);
          break;
        case 'admit': {
          clearTimeout(this.handshakeTimer);
          const refused = this.conn.authenticated({
            idleMs: () => this.channel.idleMs,
            busy: () => this.channel.busy || this.current !== null || this.gathering !== null || this.commits.size > 0,
            evict: (reason) => this.channel.fail(new TdxError('TOO_MANY_CONNECTIONS', `${this.deps.self.name}: ${reason}`)),
          });
          this.runHandshake(this.hs.admitted(refused));
          if (this.hs.step === 'ready') this.log.info(`peer ${this.peerName} connected${this.conn.encrypted ? ' (encrypted)' : ' (NOT encrypted)'}`, { peerId: this.peerId });
          break;
        }
        case 'settle':
          break; // client-side action: not produced by the server machine
      }
    }
  }

  private peerError(f: FrameOf<'error'>): void {
    this.log.warn(`peer ${this.peer} reported ${f.code}: ${f.message}`);
    this.channel.end();
  }

  private onReady(f: Frame): void | Promise<void> {
    switch (f.type) {
      case 'offer':
        return this.onOffer(f);
      case 'data':
        return this.onData(f.data);
      case 'end':
        return this.onEnd(f);
      case 'abort':
        return this.onAbort(f);
      case 'error':
        return this.peerError(f);
      default:
        this.outOfOrder(f, 'OFFER, DATA, END or ABORT');
    }
  }

  private nack(id: number, err: unknown): void {
    const { code, message } = errorFrameFor(err);
    const retryable = (err as { retryable?: unknown })?.retryable;
    this.answer({ type: 'nack', id, code, message, retryable: typeof retryable === 'boolean' ? retryable : isRetryable(code) });
  }

  /** ACK or NACK: the file is finished, its id may be used again (PROTOCOL.md 4.3, 6.2). */
  private answer(f: FrameOf<'ack'> | FrameOf<'nack'>): void {
    this.files.answered(f.id);
    this.channel.send(f);
  }

  private async onOffer(f: FrameOf<'offer'>): Promise<void> {
    if (this.files.offer(f).kind === 'gather') {
      this.gathering = { eager: true, id: f.id, offer: f, chunks: [], received: 0, startedAt: this.now() };
      return;
    }
    while (this.commits.size >= MAX_PENDING_COMMITS) await Promise.race(this.commits);
    const admitted = await this.admit(f, f.resume);
    if (!admitted) return;
    const { file, inbox } = admitted;
    if (this.channel.closed) {
      // The connection closed while the inbox opened the file: onClose found no current
      // file to abort, so it is aborted here (the staged bytes stay for a resume). Otherwise
      // it would stay open and its name busy for that sender until the agent restarts.
      void file.abort(true);
      return;
    }
    this.files.accepted(f.id, file.offset);
    const view = this.deps.incoming?.start({ inbox: inbox.name, file: file.rel, from: this.peer, via: 'tdxfer', bytesTotal: f.size, resumedFrom: file.offset });
    this.current = { id: f.id, file, inbox, expected: f.size, received: file.offset, startedAt: this.now(), ...(view ? { view } : {}) };
    if (file.offset > 0) this.log.info(`resuming ${file.rel} from ${this.peer} at byte ${file.offset} of ${f.size}`, { inbox: inbox.name });
    this.channel.send({
      type: 'accept', id: f.id, offset: file.offset, prefixSha256: file.prefixSha256,
      ...(file.hash === 'xxh3-128' ? { prefixXxh128: file.prefixDigest } : {}),
    });
  }

  /**
   * The inbox's checks for an offered file (streamed or eager): the partial to write to,
   * or null once the offer is answered (NACK for no such inbox or a refusal, ACK when the
   * file is a duplicate or skipped).
   */
  private async admit(f: FrameOf<'offer'>, resume: boolean): Promise<{ file: IncomingFile; inbox: Inbox } | null> {
    const inbox = this.deps.inboxes.get(f.inbox);
    if (!inbox) {
      const names = [...this.deps.inboxes.keys()].join(', ') || 'none';
      this.log.warn(`refused ${f.path} from ${this.peer}: no inbox named "${f.inbox}" here (inboxes: ${names})`);
      this.nack(f.id, new TdxError('NO_SUCH_INBOX', `no inbox named "${f.inbox}" on ${this.deps.self.name} (it has: ${names})`));
      return null;
    }
    try {
      const r = await inbox.begin({ source: this.peerId, path: f.path, size: f.size, mtimeMs: f.mtimeMs, resume, hash: this.hs.peer.hash, from: this.peer, via: 'tdxfer' });
      if (r.kind === 'skip') {
        this.log.info(`${r.status === 'duplicate' ? 'already have' : 'skipped (onCollision=skip, exists)'} ${r.rel} from ${this.peer}`, { inbox: inbox.name });
        this.answer({ type: 'ack', id: f.id, status: r.status, path: r.rel, sha256: null });
        return null;
      }
      return { file: r.file, inbox };
    } catch (err) {
      this.refuse(f, inbox, err);
      return null;
    }
  }

  private refuse(f: FrameOf<'offer'>, inbox: Inbox, err: unknown): void {
    this.log.warn(`refused ${f.path} from ${this.peer}: ${describeError(err)}`, { inbox: inbox.name });
    this.deps.onFailure?.(codeOf(err, 'IO'), describeError(err), this.peerName);
    this.nack(f.id, err);
  }

  /** The hot path (issue #12), once per chunk (a 16 KiB TLS record): synchronous while the inbox takes the bytes at once. */
  private onData(data: Buffer): void | Promise<void> {
    const v = this.files.data(data.length);
    if (v.kind === 'gather') {
      const g = this.gathering!;
      g.chunks.push(data);
      g.received += data.length;
      return;
    }
    const c = this.current!;
    c.received = v.received;
    let taken: void | Promise<void>;
    try {
      taken = c.file.append(data);
    } catch (err) {
      return this.writeFailed(c, err);
    }
    if (taken === undefined) return c.view?.progress(c.received);
    return taken.then(() => c.view?.progress(c.received), (err: unknown) => this.writeFailed(c, err));
  }

  /** Disk full or I/O error mid-file: the inbox already removed the partial. */
  private async writeFailed(c: Streaming, err: unknown): Promise<void> {
    c.view?.end('failed', describeError(err));
    // Tell the sender (NACK) and drop the connection, since it is mid-stream.
    this.current = null;
    this.files.writeFailed();
    this.log.error(`failed writing ${c.file.rel} from ${this.peer}: ${describeError(err)}`, { inbox: c.inbox.name });
    this.deps.onFailure?.(codeOf(err, 'IO'), describeError(err), this.peerName);
    this.nack(c.id, err);
    await c.file.abort(false);
    this.channel.end();
  }

  private onAbort(f: FrameOf<'abort'>): Promise<void> | void {
    const v = this.files.abort(f.id);
    if (v.kind === 'ignore') return; // nothing streaming for it (e.g. aborted right after OFFER was refused)
    if (v.eager) {
      const g = this.gathering!;
      this.log.info(`sender abandoned ${g.offer.path}: ${f.reason}`, { inbox: g.offer.inbox });
      this.gathering = null;
      return;
    }
    const c = this.current!;
    this.current = null;
    this.log.info(`sender abandoned ${c.file.rel}: ${f.reason}`, { inbox: c.inbox.name });
    c.view?.end('failed', `sender abandoned it: ${f.reason}`);
    return c.file.abort(false);
  }

  private async onEnd(f: FrameOf<'end'>): Promise<void> {
    const v = this.files.end(f.id);
    const digest = this.expectedDigest(f);
    if (v.eager) {
      const g = this.gathering!;
      this.gathering = null;
      if (v.kind === 'short') {
        this.nack(f.id, new TdxError('SIZE_MISMATCH', `received ${v.received} of ${v.size} bytes for ${g.offer.path}`));
        return;
      }
      while (this.commits.size >= MAX_PENDING_COMMITS) await Promise.race(this.commits);
      const p = this.commitEager(g, digest).finally(() => this.commits.delete(p));
      this.commits.add(p);
      return;
    }
    const c = this.current!;
    this.current = null;
    if (v.kind === 'short') {
      c.view?.end('failed', `received ${c.received} of ${c.expected} bytes`);
      this.nack(f.id, new TdxError('SIZE_MISMATCH', `received ${c.received} of ${c.expected} bytes for ${c.file.rel}`));
      void c.file.abort(false);
      return;
    }
    c.view?.verifying();
    const p = this.commit(c, digest).finally(() => this.commits.delete(p));
    this.commits.add(p);
  }

  /** END's digest in the connection's hash: its field is required (PROTOCOL.md 4.4), the other one is ignored. */
  private expectedDigest(f: FrameOf<'end'>): string {
    const alg = this.hs.peer.hash;
    const digest = alg === 'sha256' ? f.sha256 : f.xxh128;
    if (digest === undefined) {
      const field = alg === 'sha256' ? 'sha256' : 'xxh128';
      throw new ProtocolError('BAD_MESSAGE', `Received END frame without \`${field}\`: this connection negotiated ${alg}, so END must carry the whole-file ${field}`, { frame: 'end', field });
    }
    return digest;
  }

  /** An eager file, whole in memory: the inbox's checks, write and landing in one go. */
  private async commitEager(g: Gathering, digest: string): Promise<void> {
    const f = g.offer;
    const admitted = await this.admit(f, false);
    if (!admitted) return;
    const { file, inbox } = admitted;
    try {
      await file.writeWhole(g.chunks);
    } catch (err) {
      this.refuse(f, inbox, err);
      return;
    }
    g.chunks = [];
    await this.commit({ id: f.id, file, inbox, expected: f.size, received: f.size, startedAt: g.startedAt }, digest);
  }

  private async commit(c: Streaming, digest: string): Promise<void> {
    try {
      // Lands only while its ACK can still be sent (see drain()).
      const landed = await c.file.commit(digest, { mayLand: () => this.landing && !this.channel.closed });
      const durationMs = this.now() - c.startedAt;
      if (landed.skipped) {
        // onCollision=skip and the target appeared while this file was on its way.
        this.answer({ type: 'ack', id: c.id, status: 'skipped', path: landed.rel, sha256: null });
        c.view?.end('done', null, landed.rel);
        this.log.info(`skipped ${c.file.rel} from ${this.peer}: ${landed.rel} exists (onCollision=skip)`, { inbox: c.inbox.name });
        return;
      }
      this.answer({ type: 'ack', id: c.id, status: 'stored', path: landed.rel, sha256: landed.sha256, ...(landed.hash === 'xxh3-128' ? { xxh128: landed.digest } : {}) });
      c.view?.end('done', null, landed.rel);
      const mbps = durationMs > 0 ? (landed.size / 1e6 / (durationMs / 1000)).toFixed(1) : '∞';
      const peer = this.peer;
      // The log line is one of the announcements: logged once, right after the event (agent/announce.ts).
      const say = (): void =>
        this.log.info(`received ${landed.rel}${landed.renamedFrom ? ` (renamed from ${landed.renamedFrom})` : ''}`, {
          inbox: c.inbox.name, from: peer, size: landed.size, ms: durationMs, MBps: mbps,
        });
      this.deps.onReceived({
        inbox: c.inbox.name, file: landed.rel, path: landed.abs, size: landed.size, sha256: landed.sha256, hash: landed.digest, hashAlg: landed.hash,
        from: peer, via: 'tdxfer', durationMs, at: this.now(),
      }, landed.markAnnounced, say);
    } catch (err) {
      if (this.stopping && codeOf(err, 'IO_ERROR') === 'CLOSED') {
        this.log.info(`stopping: ${c.file.rel} from ${this.peer} stays staged, the sender sends it again`, { inbox: c.inbox.name });
        this.nack(c.id, err);
        return;
      }
      this.log.warn(`could not store ${c.file.rel} from ${this.peer}: ${describeError(err)}`, { inbox: c.inbox.name });
      c.view?.end('failed', describeError(err));
      this.deps.onFailure?.(codeOf(err, 'IO'), describeError(err), this.peerName);
      this.nack(c.id, err);
    }
  }
}
