/**
 * A loopback TCP proxy that injects real network faults between two agents: it
 * forwards bytes between a listen port on 127.0.0.1 and a target, and per connection
 * (numbered from 0 in accept order) can flip bits at chosen client→server byte
 * offsets, stall the client→server direction after N bytes, cut both sides after N
 * bytes, or refuse the connection. It counts every byte it carries, so a test can
 * prove how much a resumed transfer really re-sent.
 *
 * Offsets and counts are per connection and cover the client→server ("up") direction,
 * the one carrying file data from a sender to a receiver.
 */
import net from 'node:net';

export interface ConnPlan {
  /** XOR `mask` (default 0x01) into the up byte at each `offset`. */
  flip?: Array<{ offset: number; mask?: number }>;
  /** Forward exactly this many up bytes, then destroy both sides (an abrupt cut). */
  cutAfter?: number;
  /** Forward this many up bytes, then hold the rest until `unstall()`. */
  stallAfter?: number;
  /** Close the client socket at once without connecting to the target. */
  refuse?: boolean;
}

export interface ProxyConn {
  index: number;
  /** Client→server bytes forwarded. */
  up: number;
  /** Server→client bytes forwarded. */
  down: number;
  open: boolean;
  cut: boolean;
  stalled: boolean;
  /** Up offsets whose byte was actually flipped. */
  flipped: number[];
}

export class FaultProxy {
  readonly conns: ProxyConn[] = [];
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly unstallers = new Set<() => void>();
  private plan: (index: number) => ConnPlan;
  port = 0;

  private constructor(
    private readonly target: { host: string; port: number },
    plan: (index: number) => ConnPlan,
  ) {
    this.plan = plan;
    this.server = net.createServer((c) => this.onConnection(c));
  }

  static async start(target: { host?: string; port: number }, plan: (index: number) => ConnPlan = () => ({})): Promise<FaultProxy> {
    const p = new FaultProxy({ host: target.host ?? '127.0.0.1', port: target.port }, plan);
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(0, '127.0.0.1', () => resolve());
    });
    p.port = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  /** Forward connections accepted from now on to this port (e.g. a receiver that listened on port 0). */
  setTargetPort(port: number): void {
    this.target.port = port;
  }

  /** Plan for connections accepted from now on. */
  setPlan(plan: (index: number) => ConnPlan): void {
    this.plan = plan;
  }

  /** Release every stalled connection. */
  unstall(): void {
    const fns = [...this.unstallers];
    this.unstallers.clear();
    for (const f of fns) f();
  }

  /** Destroy every open connection (both sides) now. */
  cutAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  get totalUp(): number {
    return this.conns.reduce((n, c) => n + c.up, 0);
  }

  async close(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(client: net.Socket): void {
    const index = this.conns.length;
    const plan = this.plan(index);
    const conn: ProxyConn = { index, up: 0, down: 0, open: true, cut: false, stalled: false, flipped: [] };
    this.conns.push(conn);
    if (plan.refuse) {
      conn.open = false;
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const closeBoth = (): void => {
      conn.open = false;
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());

    upstream.on('data', (chunk: Buffer) => {
      conn.down += chunk.length;
      if (!client.write(chunk)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });

    let held: Buffer[] = [];
    const forwardUp = (chunk: Buffer): void => {
      if (conn.cut || !conn.open) return;
      if (conn.stalled) {
        held.push(chunk);
        return;
      }
      const base = conn.up;
      let data = chunk;
      if (plan.stallAfter !== undefined && base + data.length > plan.stallAfter) {
        const keep = Math.max(0, plan.stallAfter - base);
        held.push(data.subarray(keep));
        data = data.subarray(0, keep);
        conn.stalled = true;
        client.pause();
        this.unstallers.add(() => {
          conn.stalled = false;
          plan.stallAfter = undefined;
          const h = held;
          held = [];
          for (const b of h) forwardUp(b);
          if (!conn.stalled) client.resume();
        });
      }
      if (plan.cutAfter !== undefined && base + data.length >= plan.cutAfter) {
        data = data.subarray(0, plan.cutAfter - base);
        conn.cut = true;
      }
      if (plan.flip) {
        for (const f of plan.flip) {
          if (f.offset >= base && f.offset < base + data.length) {
            if (data === chunk) data = Buffer.from(data); // never mutate the sender's buffer
            data[f.offset - base]! ^= f.mask ?? 0x01;
            conn.flipped.push(f.offset);
          }
        }
      }
      conn.up += data.length;
      if (conn.cut) {
        // The bytes before the cut reach the target, then both sides die at once.
        upstream.write(data, () => closeBoth());
        client.pause();
        return;
      }
      if (data.length > 0 && !upstream.write(data)) {
        client.pause();
        upstream.once('drain', () => {
          if (!conn.stalled) client.resume();
        });
      }
    };
    client.on('data', forwardUp);
  }
}
