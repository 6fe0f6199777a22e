/**
 * Shared setup for the end-to-end tests of issue #6 (status API, dashboard, OSC, hooks,
 * CLI): two real agents on loopback started the way `tdxfer run` starts them (the
 * composition root, agent/compose.ts: Agent plus status server, OSC triggers, onReceive
 * hooks, discovery if enabled), a throttling TCP relay
 * so a transfer lasts long enough to be watched, and small HTTP/SSE/OSC clients.
 */
import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import dgram from 'node:dgram';
import http from 'node:http';
import { httpRequest } from '../helpers/http.js';
import { decode } from 'node-osc';
import type { Agent } from '../../src/agent/agent.js';
import { composeAgent } from '../../src/agent/compose.js';
import type { SharedParts } from '../../src/agent/shared.js';
import type { AgentConfig } from '../../src/config/types.js';
import { loadConfig } from '../../src/config/load.js';
import { memoryLogger } from '../../src/log.js';
import { pinPorts, runAgent, tempDir, writeAgentConfig, type Spawned } from '../helpers/agents.js';
import { reservedPort } from '../helpers/ports.js';

export type MemLog = ReturnType<typeof memoryLogger>;

export interface Running {
  agent: Agent;
  /** The collaborators the composition root built and handed to the agent and discovery (the peer board, ...). */
  shared: SharedParts;
  /** The resolved config it runs with. */
  cfg: AgentConfig;
  log: MemLog;
  /** http://127.0.0.1:<status port> */
  base: string;
  stop(): Promise<void>;
}

/** The status port an in-process agent got (status.port 0), from its `status API and dashboard on http://HOST:PORT/` line. */
function statusPortFromLog(log: MemLog): number | null {
  for (const r of log.records) {
    const m = /^status API and dashboard on http:\/\/\S+:(\d+)\//.exec(r.msg);
    if (m) return Number(m[1]);
  }
  return null;
}

type RawCfg = { listen: { host: string; port: number }; status?: { enabled?: boolean; port?: number }; peers?: Array<{ name: string; port: number }> };

async function readCfg(file: string): Promise<RawCfg> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as RawCfg;
}

/** Per config file: what must happen before its agent starts (a writePair sender learns its receiver's port). */
const beforeStart = new Map<string, () => Promise<void>>();

/** Call before starting an agent from a config written by writePair (startRunning and spawnAgent do). */
export async function prepareStart(configFile: string): Promise<void> {
  await beforeStart.get(path.resolve(configFile))?.();
}

/** Agent + the parts around it, composed as `tdxfer run` does (agent/compose.ts); stop() tears down in reverse. Pins its ports into its config. */
export async function startRunning(configFile: string): Promise<Running> {
  await prepareStart(configFile);
  const log = memoryLogger();
  const cfg = await loadConfig(configFile, { createKey: true, log });
  const composed = await composeAgent(cfg, { log });
  const { agent } = composed;
  const statusPort = cfg.status.enabled ? statusPortFromLog(log) : null;
  if (cfg.status.enabled && statusPort === null) {
    await composed.stop(1000);
    throw new Error(`no status API line in the log of ${configFile}`);
  }
  await pinPorts(configFile, { listen: agent.listenAddress.port, status: statusPort });
  const base = `http://127.0.0.1:${statusPort ?? cfg.status.port}`;
  return { agent, shared: composed.shared, cfg, log, base, stop: () => composed.stop(2000) };
}

/** `tdxfer run` of a config (written by writePair or not) as a child process, its ports pinned (helpers/agents.ts runAgent). */
export async function spawnAgent(configFile: string, timeoutMs = 30_000, env: NodeJS.ProcessEnv = {}): Promise<Spawned> {
  await prepareStart(configFile);
  return runAgent(configFile, { timeoutMs, env });
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
  /** The ports below are read from the configs: known once that agent started (pinned), else this throws. */
  readonly senderStatusPort: number;
  readonly receiverStatusPort: number;
  readonly receiverPort: number;
  relay: Relay | null;
  cleanup(): Promise<void>;
}

/** The peer port writePair leaves in the sender's config until the receiver's port is known. */
const UNKNOWN_PORT = 0;

function pinned(file: string, pick: (c: RawCfg) => number | undefined, what: string): number {
  const port = pick(JSON.parse(readFileSync(file, 'utf8')) as RawCfg);
  if (!port) throw new Error(`${what} is not known yet: start that agent first (it listens on port 0 until then)`);
  return port;
}

/**
 * Configs for "render" (sender: outbox → playback/renders, after: archive) and "playback"
 * (receiver: inbox "renders"), both with the status API on loopback. Every port is 0 (any
 * free port); startRunning / spawnAgent pin what an agent got into its config. The
 * sender's config names the receiver's port when the sender starts (prepareStart): the
 * port the receiver listens on, or, if the receiver has not started yet, a reservedPort()
 * written into the receiver's config too (nothing listens there until the receiver does).
 * Start them one after the other, not at once.
 */
export async function writePair(o: PairOptions = {}): Promise<PairLayout> {
  const root = await tempDir('tdx-e2e-status-');
  const relay = o.throttleBytesPerSec ? await throttledRelay(o.throttleBytesPerSec) : null;
  const receiverDir = path.join(root, 'playback');
  const senderDir = path.join(root, 'render');
  const receiverCfg = await writeAgentConfig({
    name: 'playback',
    dir: receiverDir,
    port: 0,
    extra: { status: { enabled: true, host: '127.0.0.1', port: 0 }, ...o.receiverExtra },
  });
  const senderCfg = await writeAgentConfig({
    name: 'render',
    dir: senderDir,
    port: 0,
    extra: {
      outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: 'archive', settleMs: o.settleMs ?? 150 }],
      peers: [{ name: 'playback', host: '127.0.0.1', port: relay ? relay.port : UNKNOWN_PORT }],
      status: { enabled: true, host: '127.0.0.1', port: 0 },
      ...o.senderExtra,
    },
  });
  beforeStart.set(path.resolve(senderCfg), async () => {
    const r = await readCfg(receiverCfg);
    if (r.listen.port === 0) {
      r.listen.port = await reservedPort();
      await fs.writeFile(receiverCfg, JSON.stringify(r, null, 2));
    }
    relay?.setUpstream(r.listen.port);
    const sCfg = await readCfg(senderCfg);
    const peer = sCfg.peers?.find((x) => x.name === 'playback' && x.port === UNKNOWN_PORT);
    if (peer) {
      peer.port = r.listen.port;
      await fs.writeFile(senderCfg, JSON.stringify(sCfg, null, 2));
    }
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
    get senderStatusPort() {
      return pinned(senderCfg, (c) => c.status?.port, "the sender's status port");
    },
    get receiverStatusPort() {
      return pinned(receiverCfg, (c) => c.status?.port, "the receiver's status port");
    },
    get receiverPort() {
      return pinned(receiverCfg, (c) => c.listen.port, "the receiver's transfer port");
    },
    relay,
    cleanup: async () => {
      beforeStart.delete(path.resolve(senderCfg));
      await relay?.close();
      await fs.rm(root, { recursive: true, force: true });
    },
  };
}

export interface Relay {
  port: number;
  /** Where it forwards to (until set, connections are closed at once). */
  setUpstream(port: number): void;
  /** Bytes relayed sender → receiver so far. */
  forwarded(): number;
  close(): Promise<void>;
}

/**
 * A loopback TCP relay that forwards client → upstream at most `bytesPerSec` (reading is
 * paused for as long as each chunk "costs"), upstream → client at full speed. TLS passes
 * through untouched: the agents cannot tell it is there, only that the link is slow.
 */
export async function throttledRelay(bytesPerSec: number, upstreamPort = 0): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  let forwarded = 0;
  let upstream = upstreamPort;
  const server = net.createServer((client) => {
    if (upstream === 0) {
      client.destroy();
      return;
    }
    const up = net.connect(upstream, '127.0.0.1');
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
    setUpstream: (port) => (upstream = port),
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

export { runCli } from '../helpers/agents.js';
