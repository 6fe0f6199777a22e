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
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitUntil, MIN_DEADLINE_MS } from './wait.js';
import { deadline } from './platform.js';
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

export async function startAgent(configFile: string, log: Logger = memoryLogger()): Promise<Agent> {
  const cfg = await loadConfig(configFile, { createKey: true, log });
  return Agent.start(cfg, { log });
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
  output: () => string;
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<void>;
  /** The transfer port, read from the agent's `listening for transfers on HOST:PORT` line (waits for it). */
  transferPort: (timeoutMs?: number) => Promise<number>;
  /** The status port, read from the agent's `status API and dashboard on http://HOST:PORT/` line (waits for it). */
  statusPort: (timeoutMs?: number) => Promise<number>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** How long `Spawned.stop` waits for the exit: a hang detector (the agent bounds its own stop at 15 s). */
const STOP_DEADLINE_MS = MIN_DEADLINE_MS;

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, as: { uid: number; gid: number } | null = null): Spawned {
  const { cmd, args: pre } = cliCommand();
  // `as`: run the agent as another (unprivileged) user, e.g. to test what it may not read.
  const child = spawn(cmd, [...pre, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(as ?? {}) });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitFor = (re: RegExp, timeoutMs = 15_000): Promise<void> =>
    waitUntil(() => re.test(out), timeoutMs, () => `waiting for ${re} in agent output:\n${out.slice(-3000)}`);
  // The last such line: a restarted child is a new Spawned, but one agent may log it only once anyway.
  const portFrom = async (re: RegExp, timeoutMs?: number): Promise<number> => {
    await waitFor(re, timeoutMs);
    const all = [...out.matchAll(new RegExp(re.source, 'g'))];
    return Number(all[all.length - 1]![1]);
  };
  return {
    child,
    output: () => out,
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
    // 'close', not 'exit': 'exit' can come before the last output chunks (seen under wine).
    s.child.once('close', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  return { code, out: killed ? `${s.output()}\n[tdxfer ${args.join(' ')}: no exit within ${deadline(timeoutMs)} ms, killed]` : s.output() };
}
