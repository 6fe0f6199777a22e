/**
 * Backlog bench (issue #12): N small files already waiting in an outbox when the agents
 * start. Two real agent processes (built CLI, defaults, TLS on) on 127.0.0.1; the files
 * are written before the sender starts; the clock runs from the sender's start until the
 * last file is confirmed, i.e. every file has left the outbox (the default after-action
 * archives into `sent/` only once the receiver acknowledged the file as durable and
 * verified), and then every file is checked to be in the inbox.
 *
 * Prints files/s, peak RSS of both agents (sampled + the kernel's VmHWM) and their CPU
 * seconds (user + kernel, whole process life).
 *
 *   node dist/test/bench/backlog.js [--files 20000] [--file-size 1K] [--dir /tmp] [--keep]
 *                                   [--cpu-prof DIR] [--logs DIR] [--log-level debug] [--settle 1000]
 *                                   [--plain] [--node-flags "--trace-gc"]
 *
 * `npm run bench` runs it as its `--backlog N` row (default 20000; 0 leaves it out).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { KEY, cliPath, listeningPort, writeConfig } from './agents.js';
import { cpuPer, fmtCpu, fmtRatio, ratio, type Cpu } from './figures.js';
import { cpuSinceMs, fmtBytes, infoLogged, parseSize, pollUntil, procCpuSplitMs, sampleMemory, sleep, spawnProc, table, type Proc } from './util.js';
import type { Run } from './loads.js';

export const BACKLOG_TARGETS = { filesPerSec: 1000, rssBytes: 150 * 1024 * 1024, rssBytesLarge: 250 * 1024 * 1024 };

export interface BacklogOptions {
  files: number;
  fileSize?: number;
  /** Parent folder for the run's fresh folder. */
  dir?: string;
  /** Keep the run's folder. */
  keep?: boolean;
  /** Folder for `--cpu-prof` profiles of both agents (<dir>/sender, <dir>/receiver). */
  cpuProf?: string;
  /** Folder for each agent's output (backlog-sender.log, backlog-receiver.log). */
  logs?: string;
  logLevel?: string;
  /** The outbox's settle window; default the agent's default (1000 ms). */
  settleMs?: number;
  encrypt?: boolean;
  /** Extra node flags for both agents (e.g. --trace-gc, --max-old-space-size=…), for experiments. */
  nodeFlags?: string[];
  /** Progress lines to stderr. */
  progress?: (line: string) => void;
}

export interface BacklogResult {
  files: number;
  fileSize: number;
  /** Sender start → every file confirmed (gone from the outbox). */
  ms: number;
  /** Time to write the backlog (not measured time). */
  prepareMs: number;
  filesPerSec: number;
  rss: { sender: number; receiver: number };
  cpu: { sender: { user: number; sys: number }; receiver: { user: number; sys: number } };
  /** CPU the bench itself used while waiting (it shares the cores with the agents), ms. */
  benchCpuMs: number;
  /** The outbox's settle window: no file can be sent before it passed. */
  settleMs: number;
  /** TLS (the default) or plain. */
  encrypt: boolean;
}

/** The agent's default settle window (config/defaults.ts), used when none is asked for. */
export const AGENT_DEFAULT_SETTLE_MS = 1000;

/** rsync pushing the same files, to compare the backlog's run with. */
export type RsyncBacklog = Pick<Run, 'ms' | 'sender' | 'receiver'>;

/** `n` files of `size` bytes named frame.NNNNNN.bin, each with its own first bytes (also rsync's side of the comparison). */
export async function writeBacklog(outbox: string, n: number, size: number): Promise<void> {
  const data = randomBytes(size);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      // Different content per file (the first bytes), like frames of a sequence.
      const buf = Buffer.from(data);
      buf.writeUInt32LE(i, 0);
      await fs.writeFile(path.join(outbox, `frame.${String(i).padStart(6, '0')}.bin`), buf);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

/** Entries of the outbox other than the archive folder (names only; cheap enough to poll). */
async function outboxLeft(outbox: string): Promise<number> {
  const names = await fs.readdir(outbox);
  return names.filter((n) => n !== 'sent').length;
}

/**
 * Waits until the outbox is empty (every file confirmed and moved by its after-action);
 * returns the time (performance.now) it was first seen empty.
 *
 * Listing the outbox costs ~11 ms per 20,000 names (55 ms per 100,000), so it is not
 * polled often: the sender's `sent …` lines (one per confirmed file, logged right before
 * its after-action) are counted as they arrive, and the outbox is listed every 10 ms only
 * once all were seen, or at the slow pace of the progress lines (and when the lines are
 * not logged). Listing it every 100 ms cost the bench up to half a core with 100,000 files,
 * taken from the two cores the agents share.
 */
async function backlogDone(sender: Proc, outbox: string, n: number, t0: number, say: (line: string) => void, linesLogged: boolean): Promise<number> {
  const sent = linesLogged ? sender.tally('INFO  sent ') : null;
  const deadline = Math.max(600_000, n * 30);
  const slowEvery = linesLogged ? 2_000 : 100;
  let last = t0;
  try {
    for (;;) {
      if (sender.child.exitCode !== null) throw new Error(`bench: the sender exited (code ${sender.child.exitCode}):\n${sender.output().slice(-3000)}`);
      const now = performance.now();
      if (now - t0 > deadline) throw new Error(`bench: timed out after ${deadline} ms waiting for ${n} files to leave ${outbox}`);
      if (sent && sent.count >= n) break;
      const left = await outboxLeft(outbox);
      if (left === 0) {
        // Seen by the slow look: the time may be up to `slowEvery` late. Only when the lines were not counted.
        if (sent) say(`  backlog: warning: only ${sent.count} of ${n} "sent" lines were counted (has the log line changed?); the end was seen by listing the outbox every ${slowEvery} ms`);
        return performance.now();
      }
      if (performance.now() - last > 10_000) {
        last = performance.now();
        say(`  backlog: ${n - left} of ${n} confirmed after ${((last - t0) / 1000).toFixed(0)} s`);
      }
      if (sent) await sent.reached(n, slowEvery).catch(() => 0); // all seen, or time for a slow look
      else await sleep(slowEvery);
    }
  } finally {
    sent?.close();
  }
  return pollUntil(async () => (await outboxLeft(outbox)) === 0, deadline, `${n} files to leave ${outbox}`, 10);
}

export async function runBacklog(opts: BacklogOptions): Promise<BacklogResult> {
  const n = opts.files;
  const size = opts.fileSize ?? 1024;
  const say = opts.progress ?? (() => undefined);
  const settleMs = opts.settleMs ?? AGENT_DEFAULT_SETTLE_MS;
  const root = await fs.mkdtemp(path.join(opts.dir ?? os.tmpdir(), `tdxfer-backlog-${n}-`));
  const procs: Proc[] = [];
  try {
    const outbox = path.join(root, 'a', 'outbox');
    const inbox = path.join(root, 'b', 'inbox');
    await fs.mkdir(outbox, { recursive: true });
    const p0 = performance.now();
    await writeBacklog(outbox, n, size);
    const prepareMs = performance.now() - p0;
    say(`  backlog: wrote ${n} × ${fmtBytes(size)} in ${(prepareMs / 1000).toFixed(1)} s`);

    const common = {
      dataDir: 'data',
      security: { key: KEY, encrypt: opts.encrypt ?? true },
      status: { enabled: false },
      discovery: { enabled: false },
      ...(opts.logLevel ? { log: { level: opts.logLevel } } : {}),
    };
    const bCfg = await writeConfig(path.join(root, 'b'), {
      name: 'playback',
      listen: { host: '127.0.0.1', port: 0 },
      inboxes: [{ name: 'renders', path: 'inbox' }],
      ...common,
    });
    // The receiver starts first on port 0; the sender's config names the port it printed.
    const senderConfig = (pb: number) =>
      writeConfig(path.join(root, 'a'), {
        name: 'render',
        listen: { host: '127.0.0.1', port: 0 },
        outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], settleMs }],
        peers: [{ name: 'playback', host: '127.0.0.1', port: pb }],
        ...common,
      });
    if (opts.logs) await fs.mkdir(opts.logs, { recursive: true });
    const flags = (role: string) => [...(opts.nodeFlags ?? []), ...(opts.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(opts.cpuProf, role)] : [])];
    const logFile = (role: string) => (opts.logs ? path.join(path.resolve(opts.logs), `backlog-${role}.log`) : undefined);

    const receiver = spawnProc(process.execPath, [...flags('receiver'), cliPath(), 'run', '--config', bCfg], {}, logFile('receiver'));
    procs.push(receiver);
    const aCfg = await senderConfig(await listeningPort(receiver, 60_000));
    const t0 = performance.now();
    const sender = spawnProc(process.execPath, [...flags('sender'), cliPath(), 'run', '--config', aCfg], {}, logFile('sender'));
    procs.push(sender);
    const mem = sampleMemory([sender.pid, receiver.pid], 100);
    const bench0 = process.cpuUsage();
    const t1 = await backlogDone(sender, outbox, n, t0, say, infoLogged(opts.logLevel));
    const [cs, cr] = await Promise.all([procCpuSplitMs(sender.pid), procCpuSplitMs(receiver.pid)]);
    const [rs, rr] = await mem.stop();
    const landed = (await fs.readdir(inbox)).length;
    if (landed !== n) throw new Error(`bench: ${landed} of ${n} files in ${inbox} although the outbox is empty`);
    const ms = t1 - t0;
    return {
      files: n,
      fileSize: size,
      ms,
      prepareMs,
      benchCpuMs: cpuSinceMs(bench0),
      settleMs,
      encrypt: opts.encrypt ?? true,
      filesPerSec: n / (ms / 1000),
      rss: { sender: rs!, receiver: rr! },
      cpu: { sender: cs ?? { user: NaN, sys: NaN }, receiver: cr ?? { user: NaN, sys: NaN } },
    };
  } finally {
    const codes = await Promise.all(procs.map((p) => p.stop()));
    if (codes.some((c) => c !== 0)) process.stderr.write(`warning: an agent exited with ${codes.join('/')}\n`);
    if (!opts.keep) {
      // Removing 100,000 files is a mass delete that slows file creation here for a while
      // (FACTS.md): give the disk a moment so a following measurement is not skewed.
      await fs.rm(root, { recursive: true, force: true });
      await sleep(n >= 10_000 ? 5000 : 0);
    } else say(`  backlog: kept ${root}`);
  }
}

const mb = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MB`;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** rsync time / tdxfer time for a backlog: tdxfer's from agent start, its settle window subtracted (as for a drop). */
export function backlogRatio(r: Pick<BacklogResult, 'ms' | 'settleMs'>, rsync: Pick<RsyncBacklog, 'ms'>): number {
  return ratio(rsync.ms, r.ms - r.settleMs);
}

/** The result as a table plus target verdicts (for `npm run bench` and the CLI); `rsync`: the same files pushed by rsync. */
export function formatBacklog(r: BacklogResult, rsync?: RsyncBacklog): string {
  const per1k = (c: Cpu) => fmtCpu(cpuPer(c, r.files, 1000));
  const rows = [
    ...(rsync ? [['rsync -a --whole-file --fsync → daemon (command start → exit)', s(rsync.ms), `${(r.files / (rsync.ms / 1000)).toFixed(0)} files/s`, '', '', '1.00', per1k(rsync.sender), per1k(rsync.receiver)]] : []),
    [
      `tdxfer, agent start → last file confirmed, ${r.encrypt ? 'TLS' : 'plain'}`, s(r.ms), `${r.filesPerSec.toFixed(0)} files/s`, mb(r.rss.sender), mb(r.rss.receiver),
      ...(rsync ? [`${fmtRatio(backlogRatio(r, rsync))} (settle ${s(r.settleMs)} subtracted)`] : []), per1k(r.cpu.sender), per1k(r.cpu.receiver),
    ],
  ];
  const large = r.files > 20_000;
  const rssLimit = large ? BACKLOG_TARGETS.rssBytesLarge : BACKLOG_TARGETS.rssBytes;
  const rssOk = Math.max(r.rss.sender, r.rss.receiver) <= rssLimit;
  const lines = [
    `backlog of ${r.files} × ${fmtBytes(r.fileSize)} in the outbox at agent start (CPU per 1,000 files: user + kernel)`,
    table(['how', 'time', 'rate', 'RSS send', 'RSS recv', ...(rsync ? ['rsync/this'] : []), 'CPU/1k send', 'CPU/1k recv'], rows),
    `(the bench itself used ${s(r.benchCpuMs)} of CPU meanwhile)`,
    '',
    large
      ? `info  backlog ${r.files}: ${((r.ms / r.files) * 1000).toFixed(2)} ms per 1,000 files (target: ≤ 1.5× the 20,000 run's)`
      : `${r.filesPerSec >= BACKLOG_TARGETS.filesPerSec ? 'PASS' : 'MISS'}  backlog ${r.files} ≥ ${BACKLOG_TARGETS.filesPerSec} files/s from agent start: ${r.filesPerSec.toFixed(0)} files/s`,
    `${rssOk ? 'PASS' : 'MISS'}  backlog ${r.files} peak RSS ≤ ${mb(rssLimit)}: sender ${mb(r.rss.sender)}, receiver ${mb(r.rss.receiver)}`,
  ];
  if (rsync) {
    const target = r.encrypt ? 0.9 : 1.0;
    const q = backlogRatio(r, rsync);
    lines.push(`${q >= target ? 'PASS' : 'MISS'}  rsync / tdxfer ≥ ${target}, backlog ${r.files}, ${r.encrypt ? 'TLS' : 'plain'} (settle subtracted): ${fmtRatio(q)}`);
  }
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      files: { type: 'string', default: '20000' },
      'file-size': { type: 'string', default: '1K' },
      dir: { type: 'string', default: os.tmpdir() },
      keep: { type: 'boolean', default: false },
      'cpu-prof': { type: 'string', default: '' },
      logs: { type: 'string', default: '' },
      'log-level': { type: 'string', default: '' },
      settle: { type: 'string', default: '' },
      plain: { type: 'boolean', default: false },
      'node-flags': { type: 'string', default: '' },
    },
  });
  const files = Number(values.files);
  if (!Number.isInteger(files) || files < 1) throw new Error(`--files must be an integer >= 1, got ${JSON.stringify(values.files)}`);
  const r = await runBacklog({
    files,
    fileSize: parseSize(values['file-size']),
    dir: values.dir,
    keep: values.keep,
    ...(values['cpu-prof'] ? { cpuProf: values['cpu-prof'] } : {}),
    ...(values.logs ? { logs: values.logs } : {}),
    ...(values['log-level'] ? { logLevel: values['log-level'] } : {}),
    ...(values.settle ? { settleMs: Number(values.settle) } : {}),
    encrypt: !values.plain,
    ...(values['node-flags'] ? { nodeFlags: values['node-flags'].split(/\s+/).filter(Boolean) } : {}),
    progress: (l) => process.stderr.write(`${l}\n`),
  });
  process.stdout.write(formatBacklog(r));
  process.stdout.write(`cpu: sender ${s(r.cpu.sender.user)} user + ${s(r.cpu.sender.sys)} kernel, receiver ${s(r.cpu.receiver.user)} user + ${s(r.cpu.receiver.sys)} kernel\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`backlog bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
