/**
 * Measuring what really crosses the wire: a loopback TCP proxy that forwards both ways
 * (with backpressure, via pipe) and timestamps every client→server chunk, plus a watch
 * on its own event loop so windows distorted by a stall of this process (the bytes
 * pile up in the kernel and arrive in one read) can be told apart from real bursts.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export class MeterProxy {
  /** [time ms, bytes] of every client→server chunk. */
  readonly samples: Array<[number, number]> = [];
  /** [from, to] ms intervals in which this process's event loop did not run for > 40 ms. */
  readonly stalls: Array<[number, number]> = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;
  private readonly lag: NodeJS.Timeout;
  port = 0;

  private constructor(target: number) {
    this.server = net.createServer((c) => {
      const s = net.connect(target, '127.0.0.1');
      for (const x of [c, s]) {
        this.sockets.add(x);
        x.on('close', () => this.sockets.delete(x));
        x.on('error', () => undefined);
      }
      c.on('data', (d: Buffer) => this.samples.push([performance.now(), d.length]));
      c.pipe(s);
      s.pipe(c);
      c.on('close', () => s.destroy());
      s.on('close', () => c.destroy());
    });
    let last = performance.now();
    this.lag = setInterval(() => {
      const now = performance.now();
      if (now - last > 40) this.stalls.push([last, now]);
      last = now;
    }, 5);
  }

  static async start(targetPort: number): Promise<MeterProxy> {
    const p = new MeterProxy(targetPort);
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  get total(): number {
    return this.samples.reduce((a, [, n]) => a + n, 0);
  }

  /** Time of the first sample after which `bytes` in total had passed (null: not yet). */
  timeAt(bytes: number): number | null {
    let sum = 0;
    for (const [t, n] of this.samples) {
      sum += n;
      if (sum >= bytes) return t;
    }
    return null;
  }

  /** Bytes in [from, to). */
  bytesIn(from: number, to: number): number {
    let sum = 0;
    for (const [t, n] of this.samples) if (t >= from && t < to) sum += n;
    return sum;
  }

  /** Rates (bytes/s) of every `windowMs` window from `from` to `to`, sliding by `stepMs`. */
  windows(from: number, to: number, windowMs: number, stepMs = 100): Array<{ at: number; rate: number; stalled: boolean }> {
    const out: Array<{ at: number; rate: number; stalled: boolean }> = [];
    for (let a = from; a + windowMs <= to; a += stepMs) {
      const stalled = this.stalls.some(([s, e]) => s < a + windowMs && e > a - windowMs);
      out.push({ at: a, rate: (this.bytesIn(a, a + windowMs) * 1000) / windowMs, stalled });
    }
    return out;
  }

  async close(): Promise<void> {
    clearInterval(this.lag);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
