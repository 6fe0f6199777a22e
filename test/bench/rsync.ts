/**
 * The rsync baseline for `npm run bench`: an rsync daemon on 127.0.0.1 (a port picked
 * here, its config, log, pid and data in a folder of the bench), pushed to with
 * `rsync -a --whole-file --fsync` (durable per file, like tdxfer; issue #12).
 *
 * CPU time of both sides, user and kernel, from /proc (Linux): the client runs inside
 * `sh -c 'rsync …; cat /proc/$$/stat'`, so the shell's cutime/cstime, printed after
 * rsync exited, are the client's (and its children's) CPU; the daemon forks a child per
 * connection (which forks again) and reaps it, so the daemon's own cutime/cstime grow
 * by the receiving side's CPU once that child is gone (waited for here).
 *
 * Pure parts (config text, /proc parsing) are exported for unit tests.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { releasePort, reservedPort } from '../helpers/ports.js';
import { pollUntil, spawnProc, type Proc } from './util.js';
import type { Cpu } from './figures.js';

export const addCpu = (a: Cpu, b: Cpu): Cpu => ({ user: a.user + b.user, sys: a.sys + b.sys });
export const subCpu = (a: Cpu, b: Cpu): Cpu => ({ user: a.user - b.user, sys: a.sys - b.sys });

/** The CPU fields of a /proc/<pid>/stat line, ms (USER_HZ = 100 on Linux). */
export function parseProcStat(text: string): { self: Cpu; children: Cpu } {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error(`not a /proc/<pid>/stat line: ${JSON.stringify(text.slice(0, 80))}`);
  // Fields after the command name (which may contain spaces and ')') start after the last ')'.
  const f = text.slice(close + 2).trim().split(/\s+/);
  const tick = (i: number) => {
    const n = Number(f[i]);
    if (!Number.isFinite(n)) throw new Error(`/proc/<pid>/stat field ${i + 3} is not a number: ${JSON.stringify(text.slice(0, 160))}`);
    return n * 10;
  };
  return { self: { user: tick(11), sys: tick(12) }, children: { user: tick(13), sys: tick(14) } };
}

const STAT_MARK = '@@tdxfer-bench-stat ';

/** The wrapper's own stat line in a command's output (see runWithCpu), or null. */
export function parseWrappedStat(output: string): Cpu | null {
  const at = output.lastIndexOf(STAT_MARK);
  if (at < 0) return null;
  const line = output.slice(at + STAT_MARK.length).split('\n')[0]!;
  return parseProcStat(line).children;
}

export interface DaemonConfig {
  /** Folder for pid, lock and log files. */
  dir: string;
  module: string;
  /** The module's folder (pushed into). */
  path: string;
  /** Run transfers as this user/group (only when the daemon runs as root; else rsync keeps the caller). */
  uid?: number;
  gid?: number;
}

/** rsyncd.conf text: no chroot, writable module, everything inside `dir`. */
export function rsyncdConf(c: DaemonConfig): string {
  for (const [k, v] of Object.entries({ dir: c.dir, path: c.path, module: c.module })) {
    if (/[\n\r]/.test(v) || v.trim() !== v || v === '') throw new Error(`rsyncd.conf: ${k} ${JSON.stringify(v)} cannot be written (empty, a newline, or spaces at an end)`);
  }
  if (!/^[A-Za-z0-9_-]+$/.test(c.module)) throw new Error(`rsyncd.conf: module name ${JSON.stringify(c.module)} must be letters, digits, _ or -`);
  const lines = [
    `pid file = ${path.join(c.dir, 'rsyncd.pid')}`,
    `lock file = ${path.join(c.dir, 'rsyncd.lock')}`,
    `log file = ${path.join(c.dir, 'rsyncd.log')}`,
    'use chroot = no',
    'numeric ids = yes',
    ...(c.uid !== undefined ? [`uid = ${c.uid}`] : []),
    ...(c.gid !== undefined ? [`gid = ${c.gid}`] : []),
    `[${c.module}]`,
    `  path = ${c.path}`,
    '  read only = no',
    '  hosts allow = 127.0.0.1',
    '',
  ];
  return lines.join('\n');
}

/** rsync's path, installing it with apt-get when missing and root; else a reason it is not there. */
export function ensureRsync(log: (line: string) => void): { bin: string } | { skip: string } {
  const which = () => spawnSync('sh', ['-c', 'command -v rsync'], { encoding: 'utf8' }).stdout.trim();
  let bin = which();
  if (bin) return { bin };
  if (process.platform !== 'linux') return { skip: `rsync rows skipped: no rsync on PATH (and ${process.platform} is not Linux)` };
  if (process.getuid?.() !== 0) return { skip: 'rsync rows skipped: no rsync on PATH and not root, so not installing it (e.g. `sudo apt-get install rsync`)' };
  const apt = spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).stdout.trim();
  if (!apt) return { skip: 'rsync rows skipped: no rsync on PATH and no apt-get to install it' };
  log('rsync is missing: apt-get install -y rsync …');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = spawnSync(apt, ['install', '-y', '--no-install-recommends', 'rsync'], { encoding: 'utf8', env });
  if (r.status !== 0) {
    spawnSync(apt, ['update'], { encoding: 'utf8', env });
    r = spawnSync(apt, ['install', '-y', '--no-install-recommends', 'rsync'], { encoding: 'utf8', env });
  }
  bin = which();
  if (r.status !== 0 || !bin) return { skip: `rsync rows skipped: apt-get install rsync failed: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' / ')}` };
  return { bin };
}

async function readCpu(pid: number): Promise<{ self: Cpu; children: Cpu } | null> {
  try {
    return parseProcStat(await fs.readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

async function childrenOf(pid: number): Promise<string> {
  return fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
}

export interface RsyncDaemon {
  pid: number;
  port: number;
  /** `rsync://127.0.0.1:<port>/<module>/`. */
  url: string;
  /** The module's folder. */
  root: string;
  /** Daemon CPU so far including its reaped children (a transfer's receiving side once its child is gone). */
  cpu: () => Promise<Cpu>;
  /** Resolves once the daemon has no child left (the last transfer's receiving side exited and was reaped). */
  idle: (timeoutMs?: number) => Promise<void>;
  stop: () => Promise<void>;
}

export async function startRsyncDaemon(bin: string, dir: string): Promise<RsyncDaemon> {
  await fs.mkdir(path.join(dir, 'data'), { recursive: true });
  const root = path.join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  const conf = path.join(dir, 'rsyncd.conf');
  await fs.writeFile(conf, rsyncdConf({ dir, module: 'bench', path: root, ...(asRoot ? { uid: 0, gid: 0 } : {}) }));
  let lastErr = '';
  // rsync cannot listen on port 0 and say which port it got: a reserved one (outside the
  // ephemeral range, locked across processes: test/helpers/ports.ts); retry if it fails anyway.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await reservedPort();
    const proc: Proc = spawnProc(bin, ['--daemon', '--no-detach', `--config=${conf}`, '--address=127.0.0.1', `--port=${port}`]);
    try {
      await pollUntil(async () => proc.child.exitCode !== null || (await canConnect(port)), 10_000, `rsync daemon on 127.0.0.1:${port}`, 20);
    } catch (err) {
      await proc.stop();
      throw err;
    }
    if (proc.child.exitCode !== null) {
      lastErr = `${proc.output()}${await fs.readFile(path.join(dir, 'rsyncd.log'), 'utf8').catch(() => '')}`.trim().split('\n').slice(-3).join(' / ');
      releasePort(port);
      continue;
    }
    const pid = proc.pid;
    const idle = async (timeoutMs = 30_000) => {
      await pollUntil(async () => (await childrenOf(pid)).trim() === '', timeoutMs, `the rsync daemon's children to exit`, 5);
    };
    return {
      pid,
      port,
      url: `rsync://127.0.0.1:${port}/bench/`,
      root,
      cpu: async () => {
        const c = await readCpu(pid);
        if (!c) throw new Error(`bench: the rsync daemon (pid ${pid}) is gone: ${proc.output().slice(-500)}`);
        return addCpu(c.self, c.children);
      },
      idle,
      stop: async () => {
        await proc.stop('SIGTERM');
        releasePort(port);
      },
    };
  }
  throw new Error(`bench: the rsync daemon did not start: ${lastErr}`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Runs `cmd args` inside `sh`, which prints its own /proc stat once the command exited:
 * wall time from spawn to exit, and the command's CPU (with its children), user and kernel.
 */
export async function runWithCpu(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ ms: number; cpu: Cpu; code: number | null; output: string }> {
  const script = `"$@"; rc=$?; echo; echo "${STAT_MARK}$(cat /proc/$$/stat)"; exit $rc`;
  const t0 = performance.now();
  const child = spawn('sh', ['-c', script, 'sh', cmd, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const add = (d: Buffer) => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout.on('data', add);
  child.stderr.on('data', add);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  const ms = performance.now() - t0;
  const cpu = parseWrappedStat(out);
  if (!cpu) throw new Error(`bench: no CPU figures from ${cmd} (exit ${code}): ${out.slice(-500)}`);
  return { ms, cpu, code, output: out };
}

export interface RsyncRun {
  ms: number;
  client: Cpu;
  server: Cpu;
}

/** `rsync -a --whole-file --fsync SRC <daemon>/<dest>/`, timed from start until the client exited (all durable). */
export async function rsyncPush(bin: string, daemon: RsyncDaemon, src: string, dest: string): Promise<RsyncRun> {
  await daemon.idle();
  const s0 = await daemon.cpu();
  const r = await runWithCpu(bin, ['-a', '--whole-file', '--fsync', src, `${daemon.url}${dest}/`]);
  if (r.code !== 0) throw new Error(`bench: rsync ${src} → ${daemon.url}${dest}/ failed (exit ${r.code}): ${r.output.slice(-800)}`);
  await daemon.idle();
  const s1 = await daemon.cpu();
  return { ms: r.ms, client: r.cpu, server: subCpu(s1, s0) };
}
