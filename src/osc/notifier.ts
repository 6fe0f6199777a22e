/**
 * OSC completion triggers for TouchDesigner (an OSC In DAT/CHOP listening on a UDP port).
 *
 * Messages (public contract, README "OSC"):
 *   /tdxfer/received  inbox:s  relPath:s  absPath:s  size:i|f  from:s
 *   /tdxfer/sent      peer:s   inbox:s    relPath:s  size:i|f  durationSeconds:f
 *   /tdxfer/failed    peer:s   inbox:s    relPath:s  error:s
 *   /tdxfer/progress  peer:s   relPath:s  percent:f  bytesDone:i|f  bytesTotal:i|f   (only with `progress: true`, ≤ ~4/s per job)
 *   /tdxfer/receiving inbox:s  relPath:s  percent:f  bytesDone:i|f  bytesTotal:i|f  from:s  (receiving side, only with `progress: true`, ≤ ~4/s per file)
 *   /tdxfer/alive     agent:s  uptimeSeconds:i  [role:s]                              (every heartbeatSeconds; 0 = off)
 *   /tdxfer/waiting   inbox:s  relPath:s  absPath:s  heldSeconds:f   (receiving side: the file is held open by another
 *                     program, so its verified new version waits staged; on each landing attempt, the first with 0;
 *                     /tdxfer/received follows when it lands)
 * Sizes are OSC int32 when below 2 GiB and float32 (approximate) above: OSC 1.0 has no
 * 64-bit integer and node-osc encodes none. A missing inbox is sent as "" (OSC has no
 * reliable null across receivers).
 *
 * Invariants: sending never throws into the agent; each target's failures are logged once
 * per change of state (failing → recovered), not per datagram.
 *
 * `/tdxfer/received` is written ahead in the inbox journal (agent/announce.ts): its
 * datagram is encoded before the mark and must leave in the same synchronous step right
 * after it, or a kill -9 in between loses it. So the
 * sockets are bound in ready() (an unbound socket's first send waits for its bind), and
 * their `lookup` answers synchronously: an IP literal as it is (dgram's default, dns.lookup,
 * answers even those in a process.nextTick), a host name with the address its last lookup
 * gave (resolved in ready() and again after each use, so a changed address is picked up by
 * the next message). Then dgram issues the sendmsg inside send() itself. A name never
 * resolved yet is looked up at the send (getaddrinfo in the thread pool, errors reported as
 * before).
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { Message, encode } from 'node-osc';
import type { AgentView, HeldChange, IncomingInfo, JobInfo, ReceivedInfo } from '../types.js';
import type { OscConfig } from '../config/types.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { ProgressThrottle } from '../progress.js';

const INT32_MAX = 2 ** 31 - 1;

type OscArg = string | number | boolean | { type: 'integer' | 'float' | 'string'; value: number | string };

/** An integer OSC argument if it fits int32, else an explicit float32. */
function sizeArg(n: number): OscArg {
  return Number.isInteger(n) && n >= -INT32_MAX && n <= INT32_MAX ? { type: 'integer', value: n } : { type: 'float', value: n };
}

function floatArg(n: number): OscArg {
  return { type: 'float', value: Number.isFinite(n) ? n : 0 };
}

export interface OscNotifierOptions {
  log: Logger;
  agentName: string;
  /** Optional role label appended to /tdxfer/alive (e.g. "render", "playback"). */
  role?: string | undefined;
  /** Progress rate limit per job, ms (default 250 → ≤ 4/s). */
  progressIntervalMs?: number;
}

interface Target {
  host: string;
  port: number;
  key: string;
  failing: boolean;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

export class OscNotifier {
  private readonly targets: Target[];
  private readonly log: Logger;
  private sock4: dgram.Socket | null = null;
  private sock6: dgram.Socket | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly lastProgress: ProgressThrottle;
  private readonly progressIntervalMs: number;
  private readonly reported = new Set<string>();
  private running = false;
  /** Sends not called back yet: resolved on stop (a closed socket may never call back). */
  private readonly unsent = new Set<() => void>();
  /** Host names' addresses from their last lookup (see the header). */
  private readonly resolved = new Map<string, string>();
  private readonly resolving = new Set<string>();

  /**
   * With an agent: encoded before the landing's journal mark, sent right after it, before
   * the hook is released (agent/announce.ts); else sent in the `received` event. Stopping
   * the agent waits for the send callbacks.
   */
  private readonly prepareReceived = (r: ReceivedInfo): (() => void) | undefined => {
    const packet = this.encode('/tdxfer/received', [r.inbox, r.file, r.path, sizeArg(r.size), r.from]);
    if (!packet) return undefined;
    return () => {
      const sent = this.sendPacket(packet);
      this.view.holdAnnouncement?.(r, sent);
    };
  };
  private readonly onReceived = (r: ReceivedInfo): void => this.prepareReceived(r)?.();
  private unprepare: (() => void) | null = null;
  private readonly onJob = (j: JobInfo): void => this.job(j);
  private readonly onProgress = (j: JobInfo): void => this.progress(j);
  private readonly onIncoming = (i: IncomingInfo): void => this.receiving(i);
  private readonly onHeld = (c: HeldChange): void => this.waiting(c);

  constructor(
    private readonly view: AgentView,
    private readonly cfg: OscConfig,
    private readonly opts: OscNotifierOptions,
  ) {
    this.log = opts.log;
    this.progressIntervalMs = opts.progressIntervalMs ?? 250;
    this.lastProgress = new ProgressThrottle(this.progressIntervalMs);
    this.targets = cfg.targets.map((t) => ({ host: t.host, port: t.port, key: `${t.host}:${t.port}`, failing: false }));
  }

  /**
   * Binds the sockets and resolves the targets given by name (see the header); call after
   * start(), before landings are announced (compose.ts). Never rejects.
   */
  async ready(): Promise<void> {
    if (!this.running) return;
    const binds = [...new Set(this.targets.map((t) => this.socketFor(t.host)))].map(
      (sock) =>
        new Promise<void>((resolve) => {
          try {
            sock.once('listening', () => resolve());
            sock.once('error', () => resolve());
            sock.once('close', () => resolve());
            sock.bind(0);
          } catch {
            resolve(); // already bound (or closed by stop): sends bind it or report it
          }
        }),
    );
    await Promise.all([...binds, ...this.targets.map((t) => this.refresh(t.host))]);
  }

  /** dgram's lookup for our sockets: synchronous for IP literals and names resolved before. */
  private readonly lookup = (host: string, family: unknown, cb: LookupCallback): void => {
    const ip = net.isIP(host);
    if (ip !== 0) return cb(null, host, ip);
    const known = this.resolved.get(host);
    if (known !== undefined) {
      cb(null, known, 4);
      void this.refresh(host); // the next message goes to a fresh answer
      return;
    }
    dns.lookup(host, { family: family === 6 ? 6 : 4 }, (err, address, fam) => {
      if (!err) this.resolved.set(host, address);
      cb(err, address, fam);
    });
  };

  /** Looks a host name up again for the next send; never rejects. */
  private refresh(host: string): Promise<void> {
    if (net.isIP(host) !== 0 || this.resolving.has(host)) return Promise.resolve();
    this.resolving.add(host);
    return dns.promises
      .lookup(host, { family: 4 })
      .then(
        (r) => void this.resolved.set(host, r.address),
        () => void this.resolved.delete(host),
      )
      .finally(() => this.resolving.delete(host));
  }

  start(): void {
    if (this.running || this.targets.length === 0) return;
    this.running = true;
    if (this.view.prepareAnnouncement) this.unprepare = this.view.prepareAnnouncement(this.prepareReceived);
    else this.view.on('received', this.onReceived);
    this.view.on('job', this.onJob);
    this.view.on('held', this.onHeld);
    if (this.cfg.progress) {
      this.view.on('progress', this.onProgress);
      this.view.on('incoming', this.onIncoming);
    }
    if (this.cfg.heartbeatSeconds > 0) {
      this.heartbeat = setInterval(() => this.alive(), this.cfg.heartbeatSeconds * 1000);
      this.heartbeat.unref();
      this.alive();
    }
    this.log.info('OSC triggers on', { targets: this.targets.map((t) => t.key).join(', '), progress: this.cfg.progress });
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.unprepare?.();
    this.unprepare = null;
    this.view.off('received', this.onReceived);
    this.view.off('job', this.onJob);
    this.view.off('progress', this.onProgress);
    this.view.off('incoming', this.onIncoming);
    this.view.off('held', this.onHeld);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    for (const done of [...this.unsent]) done();
    this.sock4?.close();
    this.sock6?.close();
    this.sock4 = this.sock6 = null;
    this.lastProgress.clear();
  }

  private job(j: JobInfo): void {
    if (j.state !== 'done' && j.state !== 'failed') return;
    this.lastProgress.forget(j.id);
    // The model may re-emit a finished job; one trigger per job and outcome.
    const key = `${j.id}:${j.state}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    if (this.reported.size > 2048) this.reported.delete(this.reported.values().next().value as string);
    const rel = j.landedAs ?? j.target;
    if (j.state === 'done') {
      const seconds = j.startedAt !== null && j.finishedAt !== null ? Math.max(0, (j.finishedAt - j.startedAt) / 1000) : 0;
      void this.send('/tdxfer/sent', [j.peer, j.inbox ?? '', rel, sizeArg(j.bytesTotal), floatArg(seconds)]);
    } else {
      void this.send('/tdxfer/failed', [j.peer, j.inbox ?? '', rel, j.error ?? 'unknown error']);
    }
  }

  private progress(j: JobInfo): void {
    if (j.state !== 'sending') return;
    const now = Date.now();
    if (!this.lastProgress.due(j.id, now)) return;
    const percent = j.bytesTotal > 0 ? (j.bytesDone / j.bytesTotal) * 100 : 0;
    void this.send('/tdxfer/progress', [j.peer, j.target, floatArg(percent), sizeArg(j.bytesDone), sizeArg(j.bytesTotal)]);
  }

  /** Receiving side: while bytes arrive (a final 100 % comes with /tdxfer/received). */
  private receiving(i: IncomingInfo): void {
    const key = `in:${i.id}`;
    if (i.state !== 'receiving') {
      this.lastProgress.forget(key);
      return;
    }
    const now = Date.now();
    if (!this.lastProgress.due(key, now)) return;
    const total = i.bytesTotal ?? 0;
    const percent = total > 0 ? (i.bytesDone / total) * 100 : 0;
    void this.send('/tdxfer/receiving', [i.inbox, i.file, floatArg(percent), sizeArg(i.bytesDone), sizeArg(total), i.from]);
  }

  /** A held inbox target (Windows): its new version waits staged; the landing itself sends /tdxfer/received. */
  private waiting(c: HeldChange): void {
    if (c.state !== 'held') return;
    const f = c.file;
    void this.send('/tdxfer/waiting', [f.inbox, f.rel, f.path, floatArg(Math.max(0, (c.atMs - f.sinceMs) / 1000))]);
  }

  private alive(): void {
    const startedAt = this.view.snapshot().agent.startedAt;
    const args: OscArg[] = [this.opts.agentName, { type: 'integer', value: Math.max(0, Math.floor((Date.now() - startedAt) / 1000)) }];
    if (this.opts.role) args.push(this.opts.role);
    void this.send('/tdxfer/alive', args);
  }

  /** Sends to every target; resolves (never rejects) once each send has called back. */
  private send(address: string, args: OscArg[]): Promise<void> {
    const packet = this.encode(address, args);
    return packet ? this.sendPacket(packet) : Promise.resolve();
  }

  private encode(address: string, args: OscArg[]): Buffer | null {
    if (!this.running) return null;
    try {
      return encode(new Message(address, ...args));
    } catch (err) {
      this.log.error('OSC: cannot encode message', { address, error: describeError(err) });
      return null;
    }
  }

  private sendPacket(packet: Buffer): Promise<void> {
    if (!this.running) return Promise.resolve();
    const sent: Promise<void>[] = [];
    for (const t of this.targets) {
      sent.push(
        new Promise<void>((resolve) => {
          const done = (): void => {
            this.unsent.delete(done);
            resolve();
          };
          this.unsent.add(done);
          try {
            this.socketFor(t.host).send(packet, t.port, t.host, (err) => {
              this.outcome(t, err);
              done();
            });
          } catch (err) {
            this.outcome(t, err as Error);
            done();
          }
        }),
      );
    }
    return Promise.all(sent).then(() => undefined);
  }

  private socketFor(host: string): dgram.Socket {
    const v6 = net.isIPv6(host);
    const existing = v6 ? this.sock6 : this.sock4;
    if (existing) return existing;
    const s = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', lookup: this.lookup });
    // Asynchronous socket errors (e.g. ICMP unreachable surfaced on some platforms) must not crash the agent.
    s.on('error', (err) => this.log.debug('OSC socket error', { error: describeError(err) }));
    s.unref();
    if (v6) this.sock6 = s;
    else this.sock4 = s;
    return s;
  }

  private outcome(t: Target, err: Error | null | undefined): void {
    if (err && !t.failing) {
      t.failing = true;
      this.log.warn('OSC: cannot send to target; further errors for it are silent until it recovers', {
        target: t.key,
        error: describeError(err),
        hint: 'check osc.targets in the config (host must resolve, port 1-65535)',
      });
    } else if (!err && t.failing) {
      t.failing = false;
      this.log.info('OSC: target reachable again', { target: t.key });
    }
  }
}
