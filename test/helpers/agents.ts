/**
 * Real agents for integration tests: configs in fresh temp folders, agents started
 * in-process (Agent.start, real sockets and files) or as child processes of the built
 * CLI (for restarts and kill -9). Agents listen on port 0 (transfer and status) and the
 * test reads the port back (`agent.listenAddress`, `Spawned.transferPort()` /
 * `statusPort()`); runAgent pins what a spawned agent got into its config for restarts
 * and CLI commands. Never pick a port free and hand it out later: node --test runs files
 * in parallel, and another process's listen(0) or outgoing connection can take it first.
 * The few ports needed before anything listens come from helpers/ports.ts reservedPort().
 */
import fs from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitUntil, MIN_DEADLINE_MS } from './wait.js';
import { deadline } from './platform.js';
import { spawnChild, type SpawnFn } from './spawn.js';
import { loadConfig } from '../../src/config/load.js';
import { Agent } from '../../src/agent/agent.js';
import { createLogger, memoryLogger, type Logger } from '../../src/log.js';

export const TEST_KEY = randomBytes(32).toString('base64');

export { tempDir } from './tmp.js';

export interface AgentSpec {
  name: string;
  dir: string;
  port: number;
  /** Extra/overriding config fields (shallow-merged at the top level). */
  extra?: Record<string, unknown>;
}

/** Writes `<dir>/config.json` for an agent with inbox `<dir>/inbox` (name "renders"). */
export async function writeAgentConfig(spec: AgentSpec): Promise<string> {
  await fs.mkdir(spec.dir, { recursive: true });
  const cfg = {
    name: spec.name,
    listen: { host: '127.0.0.1', port: spec.port },
    dataDir: 'data',
    inboxes: [{ name: 'renders', path: 'inbox' }],
    outboxes: [],
    peers: [],
    security: { key: TEST_KEY },
    status: { enabled: false },
    limits: { idleTimeoutMs: 5000, handshakeTimeoutMs: 3000 },
    transfer: { retryInitialMs: 100, retryMaxMs: 1000 },
    ...spec.extra,
  };
  const file = path.join(spec.dir, 'config.json');
  await fs.writeFile(file, JSON.stringify(cfg, null, 2));
  return file;
}

export interface AgentPairOptions {
  /** The sender's outbox entries; default one `outbox` → playback/renders with `after` and `settleMs`. */
  outboxes?: unknown[];
  /** After-action of the default outbox (default 'archive'). */
  after?: string;
  /** settleMs of the default outbox (default 200). */
  settleMs?: number;
  /** Extra/overriding config fields of the sender ("render", `<root>/a`) and the receiver ("playback", `<root>/b`). */
  senderExtra?: Record<string, unknown>;
  receiverExtra?: Record<string, unknown>;
  /**
   * The receiver's port, fixed up front, for a test whose sender starts before its receiver
   * (a reservedPort(), or a fixed port inside a private network namespace). Default 0: the
   * receiver listens on any port and `receiverListening` names it in the sender's config.
   */
  receiverPort?: number;
  /** The host the sender connects to (default 127.0.0.1; a namespace address in netns tests). */
  receiverHost?: string;
  /** Something between them (a proxy): the port the sender connects to instead of the receiver's. */
  via?: (receiverPort: number) => number | Promise<number>;
}

export interface AgentPair {
  root: string;
  /** The sender's config ("render": outbox → playback/renders). Names the receiver's port once known. */
  aCfg: string;
  /** The receiver's config ("playback", inbox "renders" at `<root>/b/inbox` unless receiverExtra says otherwise). */
  bCfg: string;
  /**
   * Call once the receiver listens, with its port (`agent.listenAddress.port`,
   * `Spawned.transferPort()`): names it (or `via`'s port) in the sender's config, keeping any
   * edit a test made to it, and pins it in the receiver's config so a restart listens there again.
   */
  receiverListening: (port: number) => Promise<void>;
  /** `<root>/a/outbox` (created). */
  outbox: string;
  /** `<root>/b/inbox`. */
  inbox: string;
}

/**
 * The one sender/receiver pair of configs ("render" → "playback"/renders) in `root`. Until
 * `receiverListening` (or with `receiverPort`) the sender's peer port is 0, which its config
 * check refuses: a sender started too early fails at once instead of sending nowhere.
 */
export async function writeAgentPair(root: string, o: AgentPairOptions = {}): Promise<AgentPair> {
  const pb = o.receiverPort ?? 0;
  const host = o.receiverHost ?? '127.0.0.1';
  const bCfg = await writeAgentConfig({ name: 'playback', dir: path.join(root, 'b'), port: pb, extra: o.receiverExtra ?? {} });
  const aCfg = await writeAgentConfig({
    name: 'render',
    dir: path.join(root, 'a'),
    port: 0,
    extra: {
      outboxes: o.outboxes ?? [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: o.after ?? 'archive', settleMs: o.settleMs ?? 200 }],
      peers: [{ name: 'playback', host, port: pb === 0 ? 0 : o.via ? await o.via(pb) : pb }],
      ...o.senderExtra,
    },
  });
  const receiverListening = async (port: number): Promise<void> => {
    const b = JSON.parse(await fs.readFile(bCfg, 'utf8')) as { listen: { port: number } };
    b.listen.port = port;
    await fs.writeFile(bCfg, JSON.stringify(b, null, 2));
    const target = o.via ? await o.via(port) : port;
    const a = JSON.parse(await fs.readFile(aCfg, 'utf8')) as { peers: Array<{ name: string; port: number }> };
    for (const peer of a.peers) if (peer.name === 'playback') peer.port = target;
    await fs.writeFile(aCfg, JSON.stringify(a, null, 2));
  };
  const outbox = path.join(root, 'a', 'outbox');
  await fs.mkdir(outbox, { recursive: true });
  return { root, aCfg, bCfg, receiverListening, outbox, inbox: path.join(root, 'b', 'inbox') };
}

export async function startAgent(configFile: string, log: Logger = memoryLogger(), opts: { admitWindow?: number } = {}): Promise<Agent> {
  const cfg = await loadConfig(configFile, { createKey: true, log });
  return Agent.start(cfg, { log, ...opts });
}

export function verboseLogger(): Logger {
  return process.env.TDX_TEST_LOG ? createLogger({ level: 'debug', stderr: true }) : memoryLogger();
}

/** The built CLI (dist) when running compiled tests, else the TypeScript source through tsx. */
export function cliCommand(): { cmd: string; args: string[] } {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const js = path.resolve(here, '../../src/cli/main.js');
  if (existsSync(js)) return { cmd: process.execPath, args: [js] };
  return { cmd: process.execPath, args: ['--import', 'tsx', path.resolve(here, '../../src/cli/main.ts')] };
}

export interface Spawned {
  child: ChildProcess;
  /** stdout and stderr as they came, interleaved. */
  output: () => string;
  /** Each stream on its own (where a test checks which one a message goes to). */
  stdout: () => string;
  stderr: () => string;
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<void>;
  /** The transfer port, read from the agent's `listening for transfers on HOST:PORT` line (waits for it). */
  transferPort: (timeoutMs?: number) => Promise<number>;
  /** The status port, read from the agent's `status API and dashboard on http://HOST:PORT/` line (waits for it). */
  statusPort: (timeoutMs?: number) => Promise<number>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** How long `Spawned.stop` waits for the exit: a hang detector (the agent bounds its own stop at 15 s). */
const STOP_DEADLINE_MS = MIN_DEADLINE_MS;

/** Starts a process: child_process.spawn, or one inside a network namespace (helpers/netns.ts `(cmd, args, o) => netns.exec(i, cmd, args, o)`). */
export type Launch = SpawnFn;

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, as: { uid: number; gid: number } | null = null, launch: Launch = spawnChild): Spawned {
  const { cmd, args: pre } = cliCommand();
  // `as`: run the agent as another (unprivileged) user, e.g. to test what it may not read.
  const child = launch(cmd, [...pre, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(as ?? {}) });
  let out = '';
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    stdout += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // 'close': the process ended and its output streams are drained, so nothing more can come.
  let closed = false;
  child.once('close', () => (closed = true));
  const waitFor = (re: RegExp, timeoutMs = 15_000): Promise<void> =>
    waitUntil(
      () => {
        if (re.test(out)) return true;
        if (closed) throw new Error(`the process ended (exit code ${child.exitCode}, signal ${child.signalCode}) without printing ${re}; it said:\n${out.slice(-3000)}`);
        return false;
      },
      timeoutMs,
      () => `waiting for ${re} in agent output:\n${out.slice(-3000)}`,
    );
  // The last such line: a restarted child is a new Spawned, but one agent may log it only once anyway.
  const portFrom = async (re: RegExp, timeoutMs?: number): Promise<number> => {
    await waitFor(re, timeoutMs);
    const all = [...out.matchAll(new RegExp(re.source, 'g'))];
    return Number(all[all.length - 1]![1]);
  };
  return {
    child,
    output: () => out,
    stdout: () => stdout,
    stderr: () => stderr,
    waitFor,
    transferPort: (timeoutMs) => portFrom(/listening for transfers on \S+:(\d+)/, timeoutMs),
    statusPort: (timeoutMs) => portFrom(/status API and dashboard on http:\/\/\S+:(\d+)\//, timeoutMs),
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      // The agent bounds its own stop (HARD_EXIT_MS, 15 s); past a generous deadline this is a
      // hang: kill it and fail with what it said, rather than hang the whole test file.
      let timer: NodeJS.Timeout | undefined;
      const limit = deadline(STOP_DEADLINE_MS);
      const hung = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), limit)));
      const r = await Promise.race([exited, hung]);
      clearTimeout(timer);
      if (r === 'hung') {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`agent (pid ${child.pid}) did not exit within ${limit} ms of ${signal}; it said:\n${out.slice(-3000)}`);
      }
      return r;
    },
  };
}

export { waitUntil };

/**
 * Writes the ports an agent got (it listened on port 0) into its config, so a restart
 * listens there again and CLI commands (`tdxfer status|stop --config …`) find its status API.
 */
export async function pinPorts(configFile: string, ports: { listen: number; status: number | null }): Promise<void> {
  const cfg = JSON.parse(await fs.readFile(configFile, 'utf8')) as { listen: { port: number }; status?: { port?: number } };
  cfg.listen.port = ports.listen;
  if (ports.status !== null) cfg.status = { ...cfg.status, port: ports.status };
  await fs.writeFile(configFile, JSON.stringify(cfg, null, 2));
}

/**
 * `tdxfer run --config <file>` as a child process: waits until it listens (and serves
 * its status API, unless `status.enabled` is false) and pins the ports it got into the
 * config (pinPorts). The caller stops it.
 */
export async function runAgent(configFile: string, o: { timeoutMs?: number; env?: NodeJS.ProcessEnv; args?: string[] } = {}): Promise<Spawned> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const s = spawnCli(['run', '--config', configFile, ...(o.args ?? [])], o.env ?? {});
  try {
    const listen = await s.transferPort(timeoutMs);
    const cfg = JSON.parse(await fs.readFile(configFile, 'utf8')) as { status?: { enabled?: boolean } };
    const status = cfg.status?.enabled === false ? null : await s.statusPort(timeoutMs);
    await pinPorts(configFile, { listen, status });
  } catch (err) {
    await s.stop('SIGKILL').catch(() => undefined);
    throw err;
  }
  return s;
}

/** Relative paths ('/'-separated) of every file under root, sorted. */
export async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string, rel: string): Promise<void> {
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(dir, e.name), r);
      else out.push(r);
    }
  }
  await walk(root, '');
  return out.sort();
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of (await fs.open(file)).createReadStream()) h.update(c as Buffer);
  return h.digest('hex');
}

/** Map rel → sha256 of every file under root. */
export async function hashTree(root: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const rel of await listFiles(root)) if (!skip(rel)) m.set(rel, await sha256File(path.join(root, rel)));
  return m;
}

export async function writeRandomFile(file: string, size: number): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const fh = await fs.open(file, 'w');
  try {
    let left = size;
    while (left > 0) {
      const n = Math.min(left, 4 * 1024 * 1024);
      await fh.write(randomBytes(n));
      left -= n;
    }
  } finally {
    await fh.close();
  }
}

/** Runs the real CLI to completion: exit code, combined output (`out`) and each stream on its own. */
// A hang detector, not a speed check: a CLI command's start alone took over 30 s at load average 80.
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<{ code: number | null; out: string; stdout: string; stderr: string }> {
  const s = spawnCli(args, env);
  let killed = false;
  const code = await new Promise<number | null>((resolve) => {
    if (s.child.exitCode !== null) return resolve(s.child.exitCode);
    const t = setTimeout(() => {
      killed = true;
      s.child.kill('SIGKILL');
    }, deadline(timeoutMs));
    // 'close', not 'exit': 'exit' can come before the last output chunks (seen under wine).
    s.child.once('close', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  return { code, out: killed ? `${s.output()}\n[tdxfer ${args.join(' ')}: no exit within ${deadline(timeoutMs)} ms, killed]` : s.output(), stdout: s.stdout(), stderr: s.stderr() };
}
