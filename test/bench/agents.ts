/**
 * Two real agents for the bench, each its own process of the built CLI
 * (`node dist/src/cli/main.js run --config …`), in a fresh folder: "render" watches
 * <root>/a/outbox and sends to "playback", whose inbox is <root>/b/inbox.
 * Settings are the defaults (TLS on) except what a bench needs: loopback, port 0 (the
 * receiver starts first; the sender's config names the port it printed), no status API
 * (its fixed port would clash), a short settle window.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { spawnProc, type Proc } from './util.js';

export interface PairOptions {
  /** The outbox's settle window; undefined: the agent's default (1000 ms). */
  settleMs?: number;
  encrypt: boolean;
  /** Extra node flags for both agents, e.g. ['--cpu-prof', '--cpu-prof-dir', dir]. */
  nodeFlags: string[];
  /** CPU profiles of both agents (`--cpu-prof`) into <profileDir>/sender and <profileDir>/receiver. */
  profileDir?: string;
  /** Transfer settings for the sender (window, chunkBytes), merged over the defaults. */
  transfer?: Record<string, unknown>;
  /** Outbox after-action; default: the agent's default (archive). */
  after?: string;
  /** Folder to write each agent's output to (<label>-sender.log, <label>-receiver.log). */
  logs?: { dir: string; label: string; level?: string };
}

export interface Pair {
  outbox: string;
  inbox: string;
  sender: Proc;
  receiver: Proc;
  stop: () => Promise<void>;
}

/** One installation key for every agent a bench program starts. */
export const KEY = randomBytes(32).toString('base64');

export function cliPath(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
}

/** The transfer port a spawned agent printed (`listening for transfers on HOST:PORT`). */
export async function listeningPort(p: Proc, timeoutMs?: number): Promise<number> {
  return Number((await p.waitFor(/listening for transfers on \S+:(\d+)/, timeoutMs))[1]);
}

/** Writes `<dir>/config.json` (making the folder) and returns its path. */
export async function writeConfig(dir: string, cfg: Record<string, unknown>): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, 'config.json');
  await fs.writeFile(file, JSON.stringify(cfg, null, 2));
  return file;
}

/** An agent's node flags: the common ones, plus its own CPU profile folder when profiling. */
function flagsFor(opts: PairOptions, role: 'sender' | 'receiver'): string[] {
  return [...opts.nodeFlags, ...(opts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', path.join(opts.profileDir, role)] : [])];
}

/** The receiving agent alone, plus a sender config for `tdxfer send --config <senderConfig> --to playback/renders`. */
export interface Receiver {
  inbox: string;
  receiver: Proc;
  senderConfig: string;
  stop: () => Promise<void>;
}

export async function startReceiver(root: string, opts: PairOptions): Promise<Receiver> {
  const w = await writeReceiverConfig(root, opts);
  const receiver = spawnProc(process.execPath, [...flagsFor(opts, 'receiver'), cliPath(), 'run', '--config', w.bCfg], {}, w.logFile('receiver'));
  let aCfg: string;
  try {
    aCfg = await writeSenderConfig(root, opts, false, await listeningPort(receiver));
  } catch (err) {
    await receiver.stop();
    throw err;
  }
  return {
    inbox: path.join(root, 'b', 'inbox'),
    receiver,
    senderConfig: aCfg,
    stop: async () => {
      const code = await receiver.stop();
      if (code !== 0) process.stderr.write(`warning: the receiving agent exited with ${code}; last output:\n${receiver.output().slice(-1500)}\n`);
    },
  };
}

function common(opts: PairOptions) {
  return {
    dataDir: 'data',
    security: { key: KEY, encrypt: opts.encrypt },
    status: { enabled: false },
    discovery: { enabled: false },
    ...(opts.logs?.level ? { log: { level: opts.logs.level } } : {}),
  };
}

/** The receiver's config (port 0) and where each agent's output goes. */
async function writeReceiverConfig(root: string, opts: PairOptions) {
  const logFile = (role: string) => (opts.logs ? path.join(opts.logs.dir, `${opts.logs.label}-${role}.log`) : undefined);
  if (opts.logs) await fs.mkdir(opts.logs.dir, { recursive: true });
  const bCfg = await writeConfig(path.join(root, 'b'), {
    name: 'playback',
    listen: { host: '127.0.0.1', port: 0 },
    inboxes: [{ name: 'renders', path: 'inbox' }],
    ...common(opts),
  });
  return { bCfg, logFile };
}

/** The sender's config, naming the port the receiver got. */
async function writeSenderConfig(root: string, opts: PairOptions, outbox: boolean, pb: number): Promise<string> {
  const aCfg = await writeConfig(path.join(root, 'a'), {
    name: 'render',
    listen: { host: '127.0.0.1', port: 0 },
    ...(outbox
      ? { outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], ...(opts.settleMs !== undefined ? { settleMs: opts.settleMs } : {}), ...(opts.after ? { after: opts.after } : {}) }] }
      : {}),
    peers: [{ name: 'playback', host: '127.0.0.1', port: pb }],
    ...(opts.transfer ? { transfer: opts.transfer } : {}),
    ...common(opts),
  });
  if (outbox) await fs.mkdir(path.join(root, 'a', 'outbox'), { recursive: true });
  return aCfg;
}

export async function startPair(root: string, opts: PairOptions): Promise<Pair> {
  const { bCfg, logFile } = await writeReceiverConfig(root, opts);
  const cli = cliPath();
  const receiver = spawnProc(process.execPath, [...flagsFor(opts, 'receiver'), cli, 'run', '--config', bCfg], {}, logFile('receiver'));
  let sender: Proc | null = null;
  try {
    const aCfg = await writeSenderConfig(root, opts, true, await listeningPort(receiver));
    sender = spawnProc(process.execPath, [...flagsFor(opts, 'sender'), cli, 'run', '--config', aCfg], {}, logFile('sender'));
    await sender.waitFor(/watching outbox/);
  } catch (err) {
    await Promise.all([receiver.stop(), sender?.stop()]);
    throw err;
  }
  const s = sender;
  return {
    outbox: path.join(root, 'a', 'outbox'),
    inbox: path.join(root, 'b', 'inbox'),
    sender: s,
    receiver,
    stop: async () => {
      const codes = await Promise.all([s.stop(), receiver.stop()]);
      if (codes.some((c) => c !== 0)) {
        process.stderr.write(`warning: an agent exited with ${codes.join('/')}; last output:\n${s.output().slice(-1500)}\n${receiver.output().slice(-1500)}\n`);
      }
    },
  };
}
