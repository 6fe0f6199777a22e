/**
 * Shared setup for the end-to-end tests of issue #6 (status API, dashboard, OSC, hooks,
 * CLI): two real agents on loopback started the way `tdxfer run` starts them (Agent plus
 * its companions: status server, OSC triggers, onReceive hooks), a throttling TCP relay
 * so a transfer lasts long enough to be watched, and small HTTP/SSE/OSC clients.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import net from 'node:net';
import dgram from 'node:dgram';
import http from 'node:http';
import { httpRequest } from '../helpers/http.js';
import { decode } from 'node-osc';
import type { Agent } from '../../src/agent/agent.js';
import { startCompanions, type Companions } from '../../src/cli/companions.js';
import { memoryLogger } from '../../src/log.js';
import { freePort, spawnCli, startAgent, tempDir, writeAgentConfig } from '../helpers/agents.js';
import { deadline } from '../helpers/platform.js';

export type MemLog = ReturnType<typeof memoryLogger>;

export interface Running {
  agent: Agent;
  companions: Companions;
  log: MemLog;
  /** http://127.0.0.1:<status port> */
  base: string;
  stop(): Promise<void>;
}

/** Agent + companions, in the order `tdxfer run` uses; stop() tears down in reverse. */
export async function startRunning(configFile: string): Promise<Running> {
  const log = memoryLogger();
  const agent = await startAgent(configFile, log);
  let companions: Companions;
  try {
    companions = await startCompanions(agent, agent.config, log);
  } catch (err) {
    await agent.stop(1000);
    throw err;
  }
  const base = `http://127.0.0.1:${agent.config.status.port}`;
  let stopped = false;
  return {
    agent,
    companions,
    log,
    base,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await companions.stop();
      await agent.stop(2000);
    },
  };
}

export interface PairOptions {
  senderExtra?: Record<string, unknown>;
  receiverExtra?: Record<string, unknown>;
  /** Route the sender through a throttling relay at this many bytes per second. */
  throttleBytesPerSec?: number;
  settleMs?: number;
}

export interface PairLayout {
  root: string;
  senderCfg: string;
  receiverCfg: string;
  senderDir: string;
  receiverDir: string;
  outbox: string;
  inbox: string;
  senderStatusPort: number;
  receiverStatusPort: number;
  receiverPort: number;
  relay: Relay | null;
  cleanup(): Promise<void>;
}

/**
 * Configs for "render" (sender: outbox → playback/renders, after: archive) and "playback"
 * (receiver: inbox "renders"), both with the status API on its own free loopback port.
 */
export async function writePair(o: PairOptions = {}): Promise<PairLayout> {
  const root = await tempDir('tdx-e2e-status-');
  const [senderPort, receiverPort, senderStatusPort, receiverStatusPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const relay = o.throttleBytesPerSec ? await throttledRelay(receiverPort, o.throttleBytesPerSec) : null;
  const receiverDir = path.join(root, 'playback');
  const senderDir = path.join(root, 'render');
  const receiverCfg = await writeAgentConfig({
    name: 'playback',
    dir: receiverDir,
    port: receiverPort,
    extra: { status: { enabled: true, host: '127.0.0.1', port: receiverStatusPort }, ...o.receiverExtra },
  });
  const senderCfg = await writeAgentConfig({
    name: 'render',
    dir: senderDir,
    port: senderPort,
    extra: {
      outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: 'archive', settleMs: o.settleMs ?? 150 }],
      peers: [{ name: 'playback', host: '127.0.0.1', port: relay ? relay.port : receiverPort }],
      status: { enabled: true, host: '127.0.0.1', port: senderStatusPort },
      ...o.senderExtra,
    },
  });
  await fs.mkdir(path.join(senderDir, 'outbox'), { recursive: true });
  return {
    root,
    senderCfg,
    receiverCfg,
    senderDir,
    receiverDir,
    outbox: path.join(senderDir, 'outbox'),
    inbox: path.join(receiverDir, 'inbox'),
    senderStatusPort,
    receiverStatusPort,
    receiverPort,
    relay,
    cleanup: async () => {
      await relay?.close();
      await fs.rm(root, { recursive: true, force: true });
    },
  };
}

export interface Relay {
  port: number;
  /** Bytes relayed sender → receiver so far. */
  forwarded(): number;
  close(): Promise<void>;
}

/**
 * A loopback TCP relay that forwards client → upstream at most `bytesPerSec` (reading is
 * paused for as long as each chunk "costs"), upstream → client at full speed. TLS passes
 * through untouched: the agents cannot tell it is there, only that the link is slow.
 */
export async function throttledRelay(upstreamPort: number, bytesPerSec: number): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  let forwarded = 0;
  const server = net.createServer((client) => {
    const up = net.connect(upstreamPort, '127.0.0.1');
    sockets.add(client).add(up);
    const kill = (): void => {
      client.destroy();
      up.destroy();
    };
    client.on('error', kill).on('close', () => (sockets.delete(client), up.end()));
    up.on('error', kill).on('close', () => (sockets.delete(up), client.end()));
    up.pipe(client);
    client.on('data', (chunk: Buffer) => {
      forwarded += chunk.length;
      up.write(chunk);
      client.pause();
      setTimeout(() => client.resume(), (chunk.length / bytesPerSec) * 1000);
    });
    client.on('end', () => up.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    forwarded: () => forwarded,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export { httpRequest, type HttpReply } from '../helpers/http.js';

export async function getJson<T = any>(url: string, headers: Record<string, string> = {}): Promise<T> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await httpRequest(url, { headers });
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.text.slice(0, 300)}`);
  return r.json<T>();
}

export interface SseEvent {
  event: string;
  data: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Arrival time at the client, ms. */
  at: number;
}

/** Follows `GET /events`; the connection is open (headers received) when this resolves. */
export async function followEvents(url: string): Promise<{ events: SseEvent[]; close(): void }> {
  const events: SseEvent[] = [];
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`GET ${url}: ${res.statusCode}`));
        res.resume();
        return;
      }
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n\n')) !== -1) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) events.push({ event, data: JSON.parse(data.join('\n')), at: Date.now() });
        }
      });
      res.on('error', () => undefined);
      resolve({ events, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}

export interface OscMessage {
  address: string;
  args: unknown[];
  at: number;
}

/** A UDP socket on 127.0.0.1 standing in for TouchDesigner's OSC In DAT; decoded with node-osc. */
export async function oscListener(): Promise<{ port: number; messages: OscMessage[]; close(): void }> {
  const sock = dgram.createSocket('udp4');
  const messages: OscMessage[] = [];
  sock.on('message', (buf) => {
    const m = decode(buf) as { address: string; args: Array<{ value: unknown }> };
    messages.push({ address: m.address, args: m.args.map((a) => a.value), at: Date.now() });
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  return { port: sock.address().port, messages, close: () => sock.close() };
}

/** Value of one Prometheus sample, e.g. `tdxfer_sent_files_total{peer="playback"}`; null when absent. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number | null {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const kv of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have.set(kv[1]!, kv[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return null;
}

/** Runs the real CLI to completion: exit code and combined output. */
// A hang detector, not a speed check: a CLI command's start alone took over 30 s at load average 80.
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<{ code: number | null; out: string }> {
  const s = spawnCli(args, env);
  let killed = false;
  const code = await new Promise<number | null>((resolve) => {
    if (s.child.exitCode !== null) return resolve(s.child.exitCode);
    const t = setTimeout(() => {
      killed = true;
      s.child.kill('SIGKILL');
    }, deadline(timeoutMs));
    s.child.once('exit', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  // 'exit' can precede the last output chunks.
  await new Promise((r) => setTimeout(r, 50));
  return { code, out: killed ? `${s.output()}\n[tdxfer ${args.join(' ')}: no exit within ${deadline(timeoutMs)} ms, killed]` : s.output() };
}
