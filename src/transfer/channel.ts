/**
 * A framed, keep-alive'd connection: the only place that turns socket bytes into
 * protocol frames and back. Sessions (sender.ts, receiver.ts) see frames only.
 *
 * Invariants:
 * - frames are handed to `onFrame` one at a time, in order; the next waits for the
 *   previous handler's promise (so a handler may await disk writes);
 * - the socket is paused while more than `budgetBytes` of decoded frames wait for the
 *   handler (backpressure towards the peer), and resumed below it;
 * - PING is answered here, immediately, even while the handler is busy, so a long
 *   fsync or prefix hash on one side never looks like a dead link to the other;
 * - a connection with nothing received for `idleTimeoutMs` (while we are not the one
 *   holding it paused) is dead: cable pulled, peer frozen, slow-loris;
 * - any decode or handler error closes this connection only, with an ERROR frame when
 *   the socket is still writable;
 * - output is bounded: every write goes through send()/sendData(), DATA waits for drain,
 *   and when more than `maxOutputBytes` wait in the socket's buffer the peer is not
 *   reading what it asks for (e.g. PINGs without reading the PONGs): the connection is
 *   dropped with SLOW_PEER instead of buffering without end (issue #10).
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { FrameDecoder, encodeDataHeader, encodeFrame, errorFrameFor, type Frame } from '../protocol/index.js';
import { TdxError, describeError } from '../errors.js';

export interface ChannelOptions {
  idleTimeoutMs: number;
  pingIntervalMs?: number;
  budgetBytes?: number;
  /** Bytes that may wait unsent in the socket's buffer before the peer counts as not reading (default 4 MiB). */
  maxOutputBytes?: number;
  limits?: { maxControlBytes?: number; maxDataBytes?: number; maxFileBytes?: number };
  /**
   * Incoming bandwidth limit (limits/pacer.ts): told every chunk read, answers how long
   * to stop reading (ms, 0: go on). Reading less is what slows the sender: TCP backpressure.
   */
  inbound?: (bytes: number) => number;
}

type ControlFrame = Exclude<Frame, { type: 'data' }>;

/** Buffers in one gathered socket write at most (see gatheredOne). */
const MAX_GATHER = 256;

export class FrameChannel extends EventEmitter<{ close: [TdxError | null] }> {
  private readonly decoder: FrameDecoder;
  private handler: ((f: Frame) => void | Promise<void>) | null = null;
  private queue: Frame[] = [];
  private queuedBytes = 0;
  private running = false;
  private pausedByUs = false;
  private lastReceived = Date.now();
  private lastSent = Date.now();
  private readonly timer: NodeJS.Timeout;
  private closedWith: TdxError | null | undefined = undefined;
  private readonly budget: number;
  private readonly pingEvery: number;
  private readonly maxOutput: number;
  /** Last frame other than PING/PONG, either way (idle eviction). */
  private lastActive = Date.now();
  private drainWaiters: Array<() => void> = [];
  private corked = false;
  /** Writes gathered since the socket was last corked (see corkUntilNextTick). */
  private gathered = 0;
  /** Reading held by the incoming bandwidth limit (see holdReading). */
  private pacing: NodeJS.Timeout | null = null;

  constructor(
    readonly socket: Duplex & { destroyed: boolean },
    private readonly opts: ChannelOptions,
  ) {
    super();
    this.decoder = new FrameDecoder(opts.limits ?? {}, { splitData: true });
    this.budget = opts.budgetBytes ?? 8 * 1024 * 1024;
    this.maxOutput = opts.maxOutputBytes ?? 4 * 1024 * 1024;
    this.pingEvery = opts.pingIntervalMs ?? Math.min(5000, Math.max(100, Math.floor(opts.idleTimeoutMs / 3)));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.flushDrainWaiters());
    socket.on('error', (err) => this.finish(new TdxError('CONNECTION_LOST', `connection error: ${describeError(err)}`, { cause: err })));
    socket.on('close', () => this.finish(new TdxError('CONNECTION_LOST', 'connection closed by peer')));
    socket.on('end', () => socket.end());
    this.timer = setInterval(() => this.tick(), Math.min(1000, this.pingEvery));
    this.timer.unref();
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Start delivering frames. */
  start(handler: (f: Frame) => void | Promise<void>): void {
    this.handler = handler;
    void this.pump();
  }

  send(frame: ControlFrame): void {
    if (this.closed || this.socket.destroyed) return;
    this.lastSent = Date.now();
    if (frame.type !== 'ping' && frame.type !== 'pong') this.lastActive = this.lastSent;
    this.corkUntilNextTick();
    this.socket.write(encodeFrame(frame));
    this.gatheredOne();
    this.checkOutput();
  }

  /** Milliseconds since this connection last received or sent a frame (idle connections may be evicted). */
  get idleMs(): number {
    return Date.now() - this.lastActive;
  }

  /** True while a handler runs or frames wait for it. */
  get busy(): boolean {
    return this.running || this.queue.length > 0;
  }

  private checkOutput(): void {
    const pending = this.socket.writableLength;
    if (pending <= this.maxOutput) return;
    this.destroy(new TdxError('SLOW_PEER', `the peer does not read what it asks for: ${pending} bytes wait unsent (limit ${this.maxOutput}); connection dropped`));
  }

  /**
   * Control frames written in one tick leave together: an eager file's OFFER, DATA and
   * END, or the ACKs of a landing batch, become one write (one TLS record, one syscall)
   * instead of one each.
   */
  private corkUntilNextTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.gathered = 0;
    this.socket.cork();
    process.nextTick(() => {
      this.corked = false;
      if (!this.socket.destroyed) this.socket.uncork();
    });
  }

  /**
   * At most MAX_GATHER buffers leave in one gathered write: the corked writes go out and
   * gathering goes on. A peer's flood of PINGs made one tick's PONGs a write of thousands
   * of buffers, which under wine fails with EMSGSIZE (wine hands a WSASend's buffers to
   * one sendmsg(), which takes at most IOV_MAX = 1024), so the connection died of a write
   * error instead of the output bound (issue #14).
   */
  private gatheredOne(): void {
    if (!this.corked || ++this.gathered < MAX_GATHER || this.socket.destroyed) return;
    this.gathered = 0;
    this.socket.uncork();
    this.socket.cork();
  }

  /**
   * Write one DATA frame; resolves when the socket can take more (drain). `onWritten`
   * runs once the socket no longer needs `chunk` (written out, or dropped with the
   * connection), so the caller may reuse its memory; it does not run if this throws.
   */
  async sendData(chunk: Buffer, onWritten?: () => void): Promise<void> {
    if (this.closed) throw this.closedWith ?? new TdxError('CONNECTION_LOST', 'connection closed');
    this.lastSent = Date.now();
    this.lastActive = this.lastSent;
    this.socket.write(encodeDataHeader(chunk.length));
    this.gatheredOne();
    const more = this.socket.write(chunk, onWritten);
    this.gatheredOne();
    if (!more) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
      if (this.closed) throw this.closedWith ?? new TdxError('CONNECTION_LOST', 'connection closed');
    }
  }

  /** Close with an ERROR frame telling the peer why (when still writable). */
  fail(err: unknown): void {
    if (this.closed) return;
    const e = toTdx(err);
    if (!this.socket.destroyed) {
      try {
        this.socket.write(encodeFrame({ type: 'error', ...errorFrameFor(e) }));
      } catch {
        /* encoding a message can only fail on invalid input; the close below still happens */
      }
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }
    this.finish(e);
  }

  /** Orderly close (no error). */
  end(): void {
    if (this.closed) return;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.finish(null);
  }

  destroy(err?: TdxError): void {
    this.socket.destroy();
    this.finish(err ?? null);
  }

  private finish(err: TdxError | null): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = err;
    clearInterval(this.timer);
    if (this.pacing) clearTimeout(this.pacing);
    this.queue = [];
    this.flushDrainWaiters();
    if (!this.socket.destroyed) {
      // Give a final ERROR frame a moment to leave, then make sure the fd is released.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }
    this.emit('close', err);
  }

  private flushDrainWaiters(): void {
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of w) f();
  }

  private tick(): void {
    if (this.closed) return;
    const now = Date.now();
    const silent = now - this.lastReceived;
    // While we hold the socket paused the peer's PINGs cannot reach us: only a handler
    // stuck far beyond any sane disk operation counts then.
    const limit = this.pausedByUs || this.pacing ? this.opts.idleTimeoutMs * 4 : this.opts.idleTimeoutMs;
    if (silent > limit) {
      const what = this.pausedByUs ? 'our disk writes made no progress' : 'nothing received';
      this.destroy(new TdxError('TIMEOUT', `connection dead: ${what} for ${Math.round(silent / 1000)} s (limits.idleTimeoutMs=${this.opts.idleTimeoutMs})`));
      return;
    }
    if (now - this.lastSent >= this.pingEvery) this.send({ type: 'ping', t: now });
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastReceived = Date.now();
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.fail(err);
      return;
    }
    for (const f of frames) {
      if (f.type === 'ping') {
        this.send({ type: 'pong', t: f.t });
        continue;
      }
      if (f.type === 'pong') continue;
      this.lastActive = this.lastReceived;
      this.queue.push(f);
      this.queuedBytes += f.type === 'data' ? f.data.length : 256;
    }
    if (this.queuedBytes > this.budget && !this.pausedByUs) {
      this.pausedByUs = true;
      this.socket.pause();
    }
    if (this.opts.inbound) this.holdReading(this.opts.inbound(chunk.length));
    void this.pump();
  }

  /** Stop reading for `ms` (incoming limit); the budget's own pause is kept apart. */
  private holdReading(ms: number): void {
    if (ms <= 0 || this.pacing || this.closed) return;
    this.socket.pause();
    this.pacing = setTimeout(() => {
      this.pacing = null;
      this.lastReceived = Date.now(); // the silence while held was ours
      if (!this.pausedByUs && !this.closed) this.socket.resume();
    }, ms);
  }

  private async pump(): Promise<void> {
    if (this.running || !this.handler) return;
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const f = this.queue.shift()!;
        this.queuedBytes -= f.type === 'data' ? f.data.length : 256;
        if (this.pausedByUs && this.queuedBytes < this.budget / 2) {
          this.pausedByUs = false;
          this.lastReceived = Date.now(); // the silence while paused was ours
          if (!this.pacing) this.socket.resume();
        }
        // A handler that finished at once returns nothing: no promise per DATA chunk.
        const pending = this.handler(f);
        if (pending) await pending;
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.running = false;
    }
  }
}

export function toTdx(err: unknown): TdxError {
  if (err instanceof TdxError) return err;
  return new TdxError('INTERNAL', describeError(err), { cause: err });
}

