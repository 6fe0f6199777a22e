/**
 * Soak (issue #20): `npm run soak -- --files 100000 --minutes 30`. A benchmark, not a test:
 * (other options: `--prefill N` files written straight into the inbox folder, `--probe-files`,
 * `--cli PATH` of another build, `--keep`, `--no-netns`; as root it runs in a network
 * namespace of its own)
 * it prints figures and which of them miss the targets here; it asserts nothing.
 *
 * Two agents of the built CLI on 127.0.0.1 only (status API on free loopback ports, no
 * discovery), as a user runs them:
 * 1. bulk: `--files` 1 KiB files into one outbox folder, in drops of 10,000; rate per drop
 *    while the inbox folder fills up.
 * 2. receiver CPU per landed file and RSS, 5 files/s, into an empty folder and into the
 *    full one (the receiver restarted before each, so RSS compares like with like); start-up
 *    time with the full inbox.
 * 3. steady: `--minutes` of 5 small files/s plus a 20 MB file every 30 s, an SSE client and
 *    a metrics scraper on each agent, a graceful restart of each side (at 1/3 and 2/3);
 *    per-minute RSS/heap/fds/threads/CPU/event-loop lag of both agents with slopes per
 *    hour, drop → land latency percentiles, log and data-folder growth.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { KEY, cliPath, writeConfig } from './agents.js';
import { reservedPort } from '../helpers/ports.js';
import { fmtBytes, pollUntil, procCpuMs, procMemory, sleep, spawnProc, table, type Proc } from './util.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const FILES = opt('files', 100_000);
const MINUTES = opt('minutes', 30);
const PROBE_FILES = opt('probe-files', 150);
/** Files written straight into the receiver's inbox folder before the agents start (for part 2 without the bulk run). */
const PREFILL = opt('prefill', 0);
const DROP = 10_000;
/** Files waiting with none landing for longer than this is reported as a stall (restarts take a few seconds). */
const STALL_MS = 30_000;
/** `--cli PATH`: another build's dist/src/cli/main.js (e.g. to compare with an older version). */
const CLI = args.includes('--cli') ? path.resolve(args[args.indexOf('--cli') + 1]!) : cliPath();
interface Agent {
  role: 'sender' | 'receiver';
  cfg: string;
  dir: string;
  statusPort: number;
  proc: Proc;
  /** Wall time from spawn to ready, process start included (slow on a loaded machine). */
  startedMs: number;
  /** From the agent's own "tdxfer starting" line to its ready line (its console timestamps). */
  selfMs: number;
}

const stamp = (line: string | undefined): number => (line ? Date.parse(line.slice(0, 23).replace(' ', 'T')) : NaN);

async function start(a: Omit<Agent, 'proc' | 'startedMs' | 'selfMs' | 'statusPort'>): Promise<Agent> {
  const t0 = performance.now();
  const proc = spawnProc(process.execPath, [CLI, 'run', '--config', a.cfg], {}, path.join(a.dir, 'console.log'));
  const ready = a.role === 'receiver' ? /listening for transfers/ : /watching outbox/;
  await proc.waitFor(ready, 120_000);
  const lines = proc.output().split('\n');
  const selfMs = stamp(lines.find((l) => l.includes('tdxfer starting'))) - stamp(lines.find((l) => ready.test(l)));
  // status.port 0: each start gets its own, read back here (the SSE clients follow it).
  const statusPort = Number((await proc.waitFor(/status API and dashboard on http:\/\/\S+:(\d+)\//, 120_000))[1]);
  return { ...a, proc, statusPort, startedMs: performance.now() - t0, selfMs: -selfMs };
}

async function restart(a: Agent): Promise<Agent> {
  await a.proc.stop('SIGTERM');
  return start(a);
}

function get(port: number, p: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, timeout: 10_000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** An SSE client that stays connected (reconnecting across restarts), counting events. */
function sseClient(port: () => number): { events: () => number; stop: () => void } {
  let events = 0;
  let on = true;
  let req: http.ClientRequest | null = null;
  const connect = () => {
    if (!on) return;
    req = http.get({ host: '127.0.0.1', port: port(), path: '/events' }, (res) => {
      res.on('data', (d: Buffer) => (events += (d.toString().match(/^data:/gm) ?? []).length));
      res.on('end', () => setTimeout(connect, 1000));
      res.on('error', () => undefined);
    });
    req.on('error', () => setTimeout(connect, 1000));
  };
  connect();
  return { events: () => events, stop: () => ((on = false), req?.destroy()) };
}

function metric(text: string, name: string): number | null {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

async function procInfo(pid: number): Promise<{ fds: number; threads: number }> {
  const fds = (await fs.readdir(`/proc/${pid}/fd`).catch(() => [])).length;
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return { fds, threads: Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? NaN) };
}

async function duBytes(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else total += (await fs.stat(p).catch(() => null))?.size ?? 0;
    }
  };
  await walk(dir);
  return total;
}

async function logBytes(a: Agent): Promise<number> {
  const logs = path.join(a.dir, 'logs');
  return (await duBytes(logs)) + ((await fs.stat(path.join(a.dir, 'console.log')).catch(() => null))?.size ?? 0);
}

async function countIn(dir: string): Promise<number> {
  return (await fs.readdir(dir).catch(() => [])).length;
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Least-squares slope of ys over xs (per unit of x). */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

const mb = (n: number): string => (n / 1e6).toFixed(1);

/** Renames `from` to `to`, making its folder again if the sender's after-action removed it (emptied). */
async function moveIn(from: string, to: string): Promise<void> {
  try {
    await fs.rename(from, to);
  } catch {
    await fs.mkdir(path.dirname(to), { recursive: true });
    await fs.rename(from, to);
  }
}

/** Drops `n` small files at `perSecond` into outbox/<folder>; returns receiver CPU ms per landed file and RSS after. */
async function probe(rx: Agent, outbox: string, inbox: string, folder: string, n: number, perSecond: number, src: string): Promise<{ cpuPerFile: number; rss: number }> {
  const before = await countIn(path.join(inbox, folder));
  await fs.mkdir(path.join(outbox, folder), { recursive: true });
  await fs.mkdir(src, { recursive: true });
  await sleep(2000); // let the receiver settle after a restart
  const cpu0 = (await procCpuMs(rx.proc.pid)) ?? NaN;
  for (let i = 0; i < n; i++) {
    const name = `probe.${Date.now()}.${i}.bin`;
    await fs.writeFile(path.join(src, name), randomBytes(1024));
    await moveIn(path.join(src, name), path.join(outbox, folder, name));
    await sleep(1000 / perSecond);
  }
  await pollUntil(async () => (await countIn(path.join(inbox, folder))) >= before + n, 300_000, `${n} probe files in ${folder}`, 50);
  const cpu1 = (await procCpuMs(rx.proc.pid)) ?? NaN;
  const rss = (await procMemory(rx.proc.pid))?.rss ?? NaN;
  return { cpuPerFile: (cpu1 - cpu0) / n, rss };
}

async function main(): Promise<void> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-soak-'));
  const out: string[] = [];
  const say = (s: string) => {
    out.push(s);
    process.stdout.write(s + '\n');
  };
  say(`soak: ${FILES} files, ${MINUTES} min steady, in ${root} (Node ${process.version}, ${os.cpus().length} cores)`);
  // The receiver restarts while the sender's config keeps naming its port: a reserved one
  // (test/helpers/ports.ts), which no other process can take while it is down. The rest: port 0.
  const pb = await reservedPort();
  const common = () => ({
    dataDir: 'data',
    security: { key: KEY, encrypt: true },
    status: { enabled: true, host: '127.0.0.1', port: 0 },
    discovery: { enabled: false },
    log: { level: 'info', file: 'logs/tdxfer.log' },
  });
  const bDir = path.join(root, 'b');
  const aDir = path.join(root, 'a');
  const bCfg = await writeConfig(bDir, { name: 'playback', listen: { host: '127.0.0.1', port: pb }, inboxes: [{ name: 'renders', path: 'inbox' }], ...common() });
  const aCfg = await writeConfig(aDir, {
    name: 'render',
    listen: { host: '127.0.0.1', port: 0 },
    outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], settleMs: 300 }],
    peers: [{ name: 'playback', host: '127.0.0.1', port: pb }],
    ...common(),
  });
  const outbox = path.join(aDir, 'outbox');
  const inbox = path.join(bDir, 'inbox');
  await fs.mkdir(outbox, { recursive: true });
  if (PREFILL > 0) {
    await fs.mkdir(path.join(inbox, 'bulk'), { recursive: true });
    for (let i = 0; i < PREFILL; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, PREFILL - i) }, (_, k) => fs.writeFile(path.join(inbox, 'bulk', `pre.${String(i + k).padStart(7, '0')}.bin`), 'x')));
    }
    say(`prefilled the receiver's inbox folder with ${PREFILL} files`);
  }
  let rx = await start({ role: 'receiver', cfg: bCfg, dir: bDir });
  let tx = await start({ role: 'sender', cfg: aCfg, dir: aDir });
  const src = path.join(root, 'src');

  try {
    // 1. bulk
    say(`\n1. bulk: ${FILES} x 1 KiB into one folder, drops of ${DROP}`);
    const rows: string[][] = [];
    const body = randomBytes(1024);
    for (let done = 0; done < FILES; ) {
      const n = Math.min(DROP, FILES - done);
      const dropDir = path.join(src, `drop${done}`);
      await fs.mkdir(dropDir, { recursive: true });
      for (let i = 0; i < n; i += 500) {
        await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => fs.writeFile(path.join(dropDir, `f.${String(done + i + k).padStart(7, '0')}.bin`), body)));
      }
      await fs.mkdir(path.join(outbox, 'bulk'), { recursive: true });
      const cpu0 = [(await procCpuMs(tx.proc.pid)) ?? NaN, (await procCpuMs(rx.proc.pid)) ?? NaN];
      const t0 = performance.now();
      for (const f of await fs.readdir(dropDir)) await moveIn(path.join(dropDir, f), path.join(outbox, 'bulk', f));
      await pollUntil(async () => (await countIn(path.join(inbox, 'bulk'))) >= PREFILL + done + n, 3_600_000, `drop of ${n} landed`, 200);
      const secs = (performance.now() - t0) / 1000;
      const cpu1 = [(await procCpuMs(tx.proc.pid)) ?? NaN, (await procCpuMs(rx.proc.pid)) ?? NaN];
      done += n;
      rows.push([`${PREFILL + done - n}–${PREFILL + done}`, (n / secs).toFixed(0), `${(((cpu1[1]! - cpu0[1]!) / 1000 / secs) * 100).toFixed(0)} %`, `${(((cpu1[0]! - cpu0[0]!) / 1000 / secs) * 100).toFixed(0)} %`, mb((await procMemory(rx.proc.pid))?.rss ?? NaN)]);
      say(`   ${rows.at(-1)!.join('  ')}`);
    }
    say(table(['files in inbox folder', 'files/s', 'receiver CPU', 'sender CPU', 'receiver RSS MB'], rows));

    // 2. receiver CPU per file and RSS: empty folder vs the full one, each after a restart
    say(`\n2. receiver CPU per landed file, ${PROBE_FILES} files at 5 files/s`);
    rx = await restart(rx);
    const empty = await probe(rx, outbox, inbox, 'fresh', PROBE_FILES, 5, src);
    rx = await restart(rx);
    const startFull = rx.startedMs;
    const full = await probe(rx, outbox, inbox, 'bulk', PROBE_FILES, 5, src);
    const held = await countIn(path.join(inbox, 'bulk'));
    const ratio = full.cpuPerFile / empty.cpuPerFile;
    const rssDiff = full.rss - empty.rss;
    say(
      table(
        ['inbox folder', 'CPU ms/file', 'receiver RSS MB'],
        [
          ['empty', empty.cpuPerFile.toFixed(1), mb(empty.rss)],
          [`${held} files`, full.cpuPerFile.toFixed(1), mb(full.rss)],
        ],
      ),
    );
    say(`   ratio ${ratio.toFixed(2)} (target <= 1.5: ${ratio <= 1.5 ? 'met' : 'MISSED'}), RSS +${mb(rssDiff)} MB (target <= 20 MB: ${rssDiff <= 20e6 ? 'met' : 'MISSED'})`);
    say(`   receiver start-up with ${held} files in its inbox: ${rx.selfMs.toFixed(0)} ms from "tdxfer starting" to "listening" (${startFull.toFixed(0)} ms from spawn, process start included; load average ${os.loadavg()[0]!.toFixed(1)})`);

    // 3. steady
    if (MINUTES <= 0) return;
    say(`\n3. steady: ${MINUTES} min, 5 small files/s + 20 MB every 30 s, SSE + /metrics on both agents, restart of each side`);
    const sse = [sseClient(() => tx.statusPort), sseClient(() => rx.statusPort)];
    const dropped = new Map<string, number>();
    const latencies: number[] = [];
    const steadyOut = path.join(outbox, 'steady');
    const steadyIn = path.join(inbox, 'steady');
    await fs.mkdir(steadyOut, { recursive: true });
    await fs.mkdir(src, { recursive: true });
    const big = randomBytes(20 * 1024 * 1024);
    const log0 = [await logBytes(tx), await logBytes(rx)];
    const data0 = [await duBytes(path.join(aDir, 'data')), await duBytes(path.join(bDir, 'data'))];
    const samples: Array<{ min: number; role: string; rss: number; heap: number | null; fds: number; threads: number; cpuPct: number; lagP99: number | null }> = [];
    const endAt = performance.now() + MINUTES * 60_000;
    let seq = 0;
    let on = true;
    const dropper = (async () => {
      let lastBig = 0;
      while (on && performance.now() < endAt) {
        const bigNow = performance.now() - lastBig >= 30_000;
        if (bigNow) lastBig = performance.now();
        const name = `s.${String(seq++).padStart(6, '0')}${bigNow ? '.mov' : '.png'}`;
        await fs.writeFile(path.join(src, name), bigNow ? big : randomBytes(2048 + (seq % 2048)));
        await moveIn(path.join(src, name), path.join(steadyOut, name));
        dropped.set(name, performance.now());
        await sleep(200);
      }
    })();
    // Stall detection: the longest stretch with files waiting (dropped, not landed) and none landing.
    let progressAt = performance.now();
    const stall = { ms: 0, from: 0, waiting: 0 };
    let slowest = { name: '', ms: 0 };
    const watcher = (async () => {
      while (on || dropped.size > 0) {
        for (const [name, t] of [...dropped]) {
          if (await fs.stat(path.join(steadyIn, name)).catch(() => null)) {
            const ms = performance.now() - t;
            latencies.push(ms);
            if (ms > slowest.ms) slowest = { name, ms };
            dropped.delete(name);
            progressAt = performance.now();
          }
        }
        const now = performance.now();
        if (dropped.size === 0) progressAt = now;
        else if (now - progressAt > stall.ms) Object.assign(stall, { ms: now - progressAt, from: progressAt, waiting: dropped.size });
        if (!on && performance.now() > endAt + 120_000) break;
        await sleep(50);
      }
    })();
    let lastCpu = [(await procCpuMs(tx.proc.pid)) ?? 0, (await procCpuMs(rx.proc.pid)) ?? 0];
    let lastT = performance.now();
    const t0 = performance.now();
    let restartedRx = false;
    let restartedTx = false;
    for (let min = 1; performance.now() < endAt; min++) {
      while (performance.now() < t0 + min * 60_000 && performance.now() < endAt) {
        await get(tx.statusPort, '/metrics').catch(() => '');
        await get(rx.statusPort, '/metrics').catch(() => '');
        await sleep(5000);
      }
      const now = performance.now();
      for (const [i, a] of [tx, rx].entries()) {
        const m = await get(a.statusPort, '/metrics').catch(() => '');
        const cpu = (await procCpuMs(a.proc.pid)) ?? 0;
        const pi = await procInfo(a.proc.pid);
        samples.push({
          min, role: a.role, rss: (await procMemory(a.proc.pid))?.rss ?? NaN, heap: metric(m, 'nodejs_heap_size_used_bytes'),
          fds: pi.fds, threads: pi.threads, cpuPct: cpu < lastCpu[i]! ? NaN : ((cpu - lastCpu[i]!) / (now - lastT)) * 100, lagP99: metric(m, 'nodejs_eventloop_lag_p99_seconds'),
        });
        lastCpu[i] = cpu;
      }
      lastT = now;
      const elapsed = (now - t0) / (MINUTES * 60_000);
      if (!restartedRx && elapsed >= 1 / 3) {
        restartedRx = true;
        rx = await restart(rx);
        say(`   minute ${min}: receiver restarted gracefully (start-up ${rx.selfMs.toFixed(0)} ms, ${rx.startedMs.toFixed(0)} ms from spawn)`);
        lastCpu = [lastCpu[0]!, 0];
      } else if (!restartedTx && elapsed >= 2 / 3) {
        restartedTx = true;
        tx = await restart(tx);
        say(`   minute ${min}: sender restarted gracefully (start-up ${tx.selfMs.toFixed(0)} ms, ${tx.startedMs.toFixed(0)} ms from spawn)`);
        lastCpu = [0, lastCpu[1]!];
      }
    }
    on = false;
    await dropper;
    await pollUntil(() => dropped.size === 0, 180_000, 'every steady file landed', 200).catch(() => undefined);
    await watcher;
    for (const s of sse) s.stop();
    const log1 = [await logBytes(tx), await logBytes(rx)];
    const data1 = [await duBytes(path.join(aDir, 'data')), await duBytes(path.join(bDir, 'data'))];
    const f = (x: number | null, d = 1) => (x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
    say(
      table(
        ['min', 'agent', 'RSS MB', 'heap MB', 'fds', 'threads', 'CPU %', 'lag p99 ms'],
        samples.map((s) => [String(s.min), s.role, mb(s.rss), s.heap === null ? '-' : mb(s.heap), String(s.fds), String(s.threads), f(s.cpuPct), s.lagP99 === null ? '-' : (s.lagP99 * 1000).toFixed(1)]),
      ),
    );
    for (const role of ['sender', 'receiver']) {
      const ss = samples.filter((s) => s.role === role);
      const xs = ss.map((s) => s.min / 60);
      const sl = (ys: number[]) => slope(xs, ys);
      say(
        `   ${role} slope per hour: RSS ${f(sl(ss.map((s) => s.rss / 1e6)))} MB, heap ${f(sl(ss.map((s) => (s.heap ?? NaN) / 1e6)))} MB, fds ${f(sl(ss.map((s) => s.fds)))}, threads ${f(sl(ss.map((s) => s.threads)))}; peak RSS ${mb(Math.max(...ss.map((s) => s.rss)))} MB (README promise < 150 MB: ${Math.max(...ss.map((s) => s.rss)) < 150e6 ? 'met' : 'MISSED'})`,
      );
    }
    say(`   drop → land latency over ${latencies.length} files (${seq} dropped, ${dropped.size} not landed): p50 ${f(pct(latencies, 50), 0)} ms, p90 ${f(pct(latencies, 90), 0)} ms, p99 ${f(pct(latencies, 99), 0)} ms, max ${f(Math.max(...latencies), 0)} ms (${slowest.name})`);
    // In words: a transfer that sits still is what an operator notices (the soak of issue #20 had 13 minutes of it).
    const atMin = (t: number) => ((t - t0) / 60_000).toFixed(1);
    const stallWords = `longest time with files waiting and none landing: ${(stall.ms / 1000).toFixed(1)} s` + (stall.ms > 0 ? ` (from minute ${atMin(stall.from)} to ${atMin(stall.from + stall.ms)} of the steady part, ${stall.waiting} files waiting at its end)` : '');
    say(stall.ms > STALL_MS ? `   STALL: ${stallWords}; transfers stood still (target: never more than ${STALL_MS / 1000} s, restarts included). The agents' logs around it tell why (--keep keeps them).` : `   no stall: ${stallWords} (target <= ${STALL_MS / 1000} s: met)`);
    if (dropped.size > 0) say(`   NOT LANDED: ${dropped.size} files, e.g. ${[...dropped.keys()].slice(0, 5).join(', ')}`);
    const filesSteady = latencies.length || 1;
    say(`   log growth (file + console): sender ${fmtBytes(log1[0]! - log0[0]!)} (${((log1[0]! - log0[0]!) / filesSteady).toFixed(0)} B/file), receiver ${fmtBytes(log1[1]! - log0[1]!)} (${((log1[1]! - log0[1]!) / filesSteady).toFixed(0)} B/file)`);
    say(`   data-folder growth: sender ${fmtBytes(data1[0]! - data0[0]!)}, receiver ${fmtBytes(data1[1]! - data0[1]!)}; SSE events seen: ${sse.map((s) => s.events()).join(' / ')}`);
  } finally {
    await Promise.all([tx.proc.stop('SIGTERM'), rx.proc.stop('SIGTERM')]);
    await fs.writeFile(path.join(os.tmpdir(), 'tdx-soak-last.txt'), out.join('\n') + '\n').catch(() => undefined);
    if (!args.includes('--keep')) await fs.rm(root, { recursive: true, force: true });
  }
}

/**
 * As root on Linux the soak runs in a network namespace of its own (a private loopback,
 * nothing reachable beyond it): it re-runs itself under `unshare -n` with `lo` up.
 * `--no-netns` (or not root) runs it on the host's loopback instead.
 */
function inOwnNamespace(): boolean {
  if (process.env.TDX_SOAK_NETNS === '1' || args.includes('--no-netns')) return false;
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ...process.execArgv, process.argv[1]!, ...args], {
    stdio: 'inherit',
    env: { ...process.env, TDX_SOAK_NETNS: '1' },
  });
  if (r.error) {
    process.stderr.write(`soak: cannot make a network namespace (${r.error.message}); running on the host's loopback\n`);
    return false;
  }
  process.exitCode = r.status ?? 1;
  return true;
}

if (!inOwnNamespace()) {
  if (process.env.TDX_SOAK_NETNS === '1') process.stdout.write('soak: in a network namespace of its own (loopback only)\n');
  main().catch((err: unknown) => {
    process.stderr.write(`soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  });
}
