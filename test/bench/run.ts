/**
 * `npm run bench`: tdxfer against the ceiling of this machine, on loopback.
 *
 *   (a) ceiling: Node socket → file copy, SHA-256 both sides, fsync (1 MiB buffers,
 *       and Node's default buffers for context), two processes; taking turns with (b)
 *       within each repetition, each big output deleted once measured (see main());
 *   (b) tdxfer: the same file outbox → inbox between two agent processes (built CLI,
 *       defaults, TLS on), from its rename into the outbox until it is in the inbox,
 *       minus the settle window;
 *   (c) many small files dropped at once (a folder renamed into the outbox), files/s,
 *       run first (before the big part frees GiBs, which slows file creation here),
 *       alternating with a `cp -r` of the same files as the disk's baseline;
 *   (d) peak RSS of both agents while moving the big file.
 *
 * Every repetition uses fresh folders and fresh agents; no small files are deleted until
 * the end (see FACTS.md: this disk creates files slowly for ~30 s after a mass delete).
 *
 * Options (flags, or env TDX_BENCH_<NAME>): --size 1G, --reps 3, --files 2000,
 * --file-size 4K, --settle 200, --plain (extra rows with encrypt:false),
 * --only ceiling,big,small, --dir <parent folder>, --keep, --cpu-prof <dir>,
 * --window N / --chunk 1M / --after keep (sender settings, for experiments),
 * --logs <dir> [--log-level debug] (keep each agent's output), --backlog N (files already
 * in the outbox at agent start, test/bench/backlog.ts; default 20000, 0 leaves it out).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { ceilingRun } from './ceiling.js';
import { startPair, type PairOptions } from './agents.js';
import { formatBacklog, runBacklog } from './backlog.js';
import { countFiles, fmtBytes, median, parseSize, pollUntil, procCpuMs, procCpuSplitMs, sampleMemory, table, writeRandomFile } from './util.js';

const TARGETS = { fraction: 0.8, filesPerSec: 1000, rssBytes: 150 * 1024 * 1024 };

function options() {
  const env = (name: string) => process.env[`TDX_BENCH_${name.toUpperCase().replace(/-/g, '_')}`];
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: env('size') ?? '1G' },
      reps: { type: 'string', default: env('reps') ?? '3' },
      files: { type: 'string', default: env('files') ?? '2000' },
      'file-size': { type: 'string', default: env('file-size') ?? '4K' },
      settle: { type: 'string', default: env('settle') ?? '200' },
      plain: { type: 'boolean', default: env('plain') === '1' },
      only: { type: 'string', default: env('only') ?? 'ceiling,big,small' },
      dir: { type: 'string', default: env('dir') ?? os.tmpdir() },
      keep: { type: 'boolean', default: env('keep') === '1' },
      'cpu-prof': { type: 'string', default: env('cpu-prof') ?? '' },
      window: { type: 'string', default: env('window') ?? '' },
      chunk: { type: 'string', default: env('chunk') ?? '' },
      after: { type: 'string', default: env('after') ?? '' },
      logs: { type: 'string', default: env('logs') ?? '' },
      'log-level': { type: 'string', default: env('log-level') ?? '' },
      backlog: { type: 'string', default: env('backlog') ?? '20000' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`usage: npm run bench -- [--size 1G] [--reps 3] [--files 2000] [--file-size 4K] [--settle 200] [--plain]
                       [--only ceiling,big,small] [--dir /tmp] [--keep] [--cpu-prof DIR] [--window N] [--chunk 1M] [--after archive|delete|keep]
                       [--logs DIR] [--log-level debug] [--backlog 20000 (0: none)]
(each also as env TDX_BENCH_<NAME>, e.g. TDX_BENCH_SIZE=256M)\n`);
    process.exit(0);
  }
  const int = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  const only = new Set(values.only.split(',').map((s) => s.trim()));
  for (const o of only) if (!['ceiling', 'big', 'small'].includes(o)) throw new Error(`--only takes ceiling, big and/or small (comma-separated), got ${JSON.stringify(o)}`);
  const transfer: Record<string, unknown> = {};
  if (values.window) transfer.window = int('window', values.window, 1);
  if (values.chunk) transfer.chunkBytes = parseSize(values.chunk);
  return {
    size: parseSize(values.size),
    reps: int('reps', values.reps, 1),
    files: int('files', values.files, 1),
    fileSize: parseSize(values['file-size']),
    settleMs: int('settle', values.settle, 0),
    plain: values.plain,
    only,
    dir: values.dir,
    keep: values.keep,
    cpuProf: values['cpu-prof'],
    transfer: Object.keys(transfer).length > 0 ? transfer : undefined,
    after: values.after,
    logs: values.logs,
    logLevel: values['log-level'],
    backlog: int('backlog', values.backlog, 0),
  };
}

type Opts = ReturnType<typeof options>;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A fresh, never-used folder under the bench root. */
async function fresh(base: string, prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(base, prefix));
}

function pairOptions(o: Opts, encrypt: boolean, label: string): PairOptions {
  const nodeFlags = o.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(o.cpuProf, label)] : [];
  return {
    settleMs: o.settleMs,
    encrypt,
    nodeFlags,
    ...(o.transfer ? { transfer: o.transfer } : {}),
    ...(o.after ? { after: o.after } : {}),
    ...(o.logs ? { logs: { dir: path.resolve(o.logs), label, ...(o.logLevel ? { level: o.logLevel } : {}) } } : {}),
  };
}

interface BigRun {
  ms: number;
  rss: [number, number];
  /** CPU time used by sender and receiver during the measurement. */
  cpu: [number, number];
  /** Of the receiver's CPU time, the part spent in the kernel. */
  recvSys: number;
}

async function cpuOf(pids: number[]): Promise<number[]> {
  return Promise.all(pids.map(async (p) => (await procCpuMs(p)) ?? NaN));
}

/** One 1-file run: fresh agents, link the master in, rename into the outbox, wait for the inbox. */
async function bigRun(o: Opts, base: string, master: string, encrypt: boolean, rep: number): Promise<BigRun> {
  const root = await fresh(base, `big-${encrypt ? 'tls' : 'plain'}-${rep}-`);
  const pair = await startPair(root, pairOptions(o, encrypt, `big-${encrypt ? 'tls' : 'plain'}-${rep}`));
  try {
    // A hard link: the same (cached) bytes every run, as for the ceiling, no copy needed.
    const staged = path.join(root, 'take.mov');
    await fs.link(master, staged);
    const target = path.join(pair.inbox, 'take.mov');
    const pids = [pair.sender.pid, pair.receiver.pid];
    const mem = sampleMemory(pids);
    const c0 = await cpuOf(pids);
    const s0 = await procCpuSplitMs(pair.receiver.pid);
    const t0 = performance.now();
    await fs.rename(staged, path.join(pair.outbox, 'take.mov'));
    const t1 = await pollUntil(async () => (await fs.stat(target).catch(() => null))?.size === o.size, 300_000, `${target} in the inbox`, 2);
    const c1 = await cpuOf(pids);
    const s1 = await procCpuSplitMs(pair.receiver.pid);
    const [rs, rr] = await mem.stop();
    const recvSys = s0 && s1 ? s1.sys - s0.sys : NaN;
    return { ms: t1 - t0 - o.settleMs, rss: [rs!, rr!], cpu: [c1[0]! - c0[0]!, c1[1]! - c0[1]!], recvSys };
  } finally {
    await pair.stop();
    // Free the output's page cache for the next run (see main()); the archived source is the master's hard link.
    await fs.rm(path.join(pair.inbox, 'take.mov'), { force: true });
  }
}

interface SmallRun {
  cpMs: number;
  tdxMs: number;
  cpu: [number, number];
}

/** cp -r of the prepared set into a fresh folder (the baseline), then that copy dropped into a fresh pair's outbox. */
async function smallRun(o: Opts, base: string, set: string, rep: number): Promise<SmallRun> {
  const root = await fresh(base, `small-${rep}-`);
  const copy = path.join(root, 'batch');
  const c0 = performance.now();
  const cp = spawnSync('cp', ['-r', set, copy]);
  const cpMs = performance.now() - c0;
  if (cp.status !== 0) throw new Error(`bench: cp -r ${set} ${copy} failed: ${cp.stderr.toString()}`);
  const pair = await startPair(root, pairOptions(o, true, `small-${rep}`));
  try {
    const landed = path.join(pair.inbox, 'batch');
    const pids = [pair.sender.pid, pair.receiver.pid];
    const c0 = await cpuOf(pids);
    const t0 = performance.now();
    await fs.rename(copy, path.join(pair.outbox, 'batch'));
    const t1 = await pollUntil(async () => (await countFiles(landed)) >= o.files, 300_000, `${o.files} files in ${landed}`, 10);
    const c1 = await cpuOf(pids);
    return { cpMs, tdxMs: t1 - t0 - o.settleMs, cpu: [c1[0]! - c0[0]!, c1[1]! - c0[1]!] };
  } finally {
    await pair.stop();
  }
}

/**
 * This disk creates files 20–30 times slower for a while after a mass delete (FACTS.md),
 * e.g. right after `npm test` or a previous bench cleaned up. Before the small-file runs,
 * `cp -r` the set into fresh folders until that takes under 0.25 s (at most 2 minutes), so
 * the figure is tdxfer's and not the disk's recovery. The copies stay until the end.
 */
async function waitForFastDisk(base: string, set: string): Promise<void> {
  const until = performance.now() + 120_000;
  for (let i = 0; ; i++) {
    const dir = await fresh(base, `probe-${i}-`);
    const t0 = performance.now();
    const cp = spawnSync('cp', ['-r', set, path.join(dir, 'copy')]);
    const ms = performance.now() - t0;
    if (cp.status !== 0) throw new Error(`bench: cp -r ${set} failed: ${cp.stderr.toString()}`);
    if (ms < 250) return;
    if (performance.now() > until) {
      log(`  the disk is still slow (cp -r of the set: ${secs(ms)}); measuring anyway, see the cp -r column`);
      return;
    }
    log(`  waiting for the disk (cp -r of the set: ${secs(ms)}, file creation is slow after mass deletes)…`);
    await new Promise((r) => setTimeout(r, 5000));
  }
}

const mbps = (bytes: number, ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MB`;
const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');

async function main(): Promise<void> {
  const o = options();
  const base = await fs.mkdtemp(path.join(o.dir, 'tdxfer-bench-'));
  log(`tdxfer bench in ${base}: ${fmtBytes(o.size)} file, ${o.files} × ${fmtBytes(o.fileSize)}, ${o.reps} reps, settle ${o.settleMs} ms (subtracted), ${os.cpus().length} CPUs, Node ${process.version}`);
  const started = performance.now();
  const rows: string[][] = [];
  const verdicts: string[] = [];
  try {
    // Small files first: the big part deletes 1 GiB outputs, and this disk creates files
    // slowly for a while after freeing that much (FACTS.md), which would measure the
    // disk's recovery rather than tdxfer (the cp -r baseline shows it: 1 s instead of 0.06 s).
    let smallRows: string[][] = [];
    if (o.only.has('small')) {
      const set = path.join(base, 'small-set');
      await fs.mkdir(set);
      for (let i = 0; i < o.files; i++) await writeRandomFileQuick(path.join(set, `f${String(i).padStart(5, '0')}.bin`), o.fileSize);
      await waitForFastDisk(base, set);
      const runs: SmallRun[] = [];
      for (let r = 0; r < o.reps; r++) {
        const run = await smallRun(o, base, set, r);
        log(`  small files rep ${r + 1}: cp -r ${secs(run.cpMs)} (${(o.files / (run.cpMs / 1000)).toFixed(0)} files/s), tdxfer ${secs(run.tdxMs)} (${(o.files / (run.tdxMs / 1000)).toFixed(0)} files/s), CPU sender ${secs(run.cpu[0])}, receiver ${secs(run.cpu[1])}`);
        runs.push(run);
      }
      const cpM = median(runs.map((x) => x.cpMs));
      const tdxM = median(runs.map((x) => x.tdxMs));
      const fps = o.files / (tdxM / 1000);
      smallRows = [
        [`cp -r (no fsync, same disk moment)`, secs(cpM), `${(o.files / (cpM / 1000)).toFixed(0)} files/s`],
        [`tdxfer outbox → inbox, TLS (fsync per file)`, secs(tdxM), `${fps.toFixed(0)} files/s`],
      ];
      verdicts.push(`${verdict(fps >= TARGETS.filesPerSec)}  small files ≥ ${TARGETS.filesPerSec} files/s end to end: ${fps.toFixed(0)} files/s`);
    }

    let master = '';
    if (o.only.has('ceiling') || o.only.has('big')) {
      master = path.join(base, 'master.bin');
      log(`generating ${fmtBytes(o.size)} of random data…`);
      await writeRandomFile(master, o.size);
    }

    // Big file: the ceiling and tdxfer take turns within each repetition (the order
    // alternating), and each run's 1 GiB output is deleted right after it is measured.
    // On this VM, writing into never-used guest memory costs ~2 s of kernel time per GiB
    // (page cache for the output): without deleting, whichever runs later pays for it,
    // and without taking turns the disk's write-back phases favour one side. A warm-up
    // write first, so the first measured run does not pay it either. Deleting one big
    // file is not the mass delete that slows file creation here (FACTS.md).
    const ceilTimes: number[] = [];
    const ceilDefaultTimes: number[] = [];
    const ceilTlsTimes: number[] = [];
    const bigRuns = new Map<boolean, BigRun[]>([[true, []], [false, []]]);
    const bigModes = o.only.has('big') ? (o.plain ? [true, false] : [true]) : [];
    if (o.only.has('ceiling') || o.only.has('big')) {
      const warm = path.join(base, 'warm-up.bin');
      await writeRandomFile(warm, o.size);
      await fs.rm(warm);
      // The master's pages are written back now, not during the first measured run.
      spawnSync('sync');
      for (let r = 0; r < o.reps; r++) {
        const steps: Array<() => Promise<void>> = [];
        if (o.only.has('ceiling')) {
          steps.push(async () => {
            const dir = await fresh(base, `ceiling-${r}-`);
            const { ms } = await ceilingRun(master, path.join(dir, 'copy.bin'), 1 << 20);
            await fs.rm(dir, { recursive: true });
            log(`  ceiling, 1 MiB buffers, rep ${r + 1}: ${secs(ms)}`);
            ceilTimes.push(ms);
          });
        }
        for (const encrypt of bigModes) {
          steps.push(async () => {
            const run = await bigRun(o, base, master, encrypt, r);
            log(`  tdxfer ${encrypt ? 'TLS' : 'plain'} rep ${r + 1}: ${secs(run.ms)} (${mbps(o.size, run.ms)}), peak RSS sender ${mib(run.rss[0])}, receiver ${mib(run.rss[1])}, CPU sender ${secs(run.cpu[0])}, receiver ${secs(run.cpu[1])} (kernel ${secs(run.recvSys)})`);
            bigRuns.get(encrypt)!.push(run);
          });
        }
        if (r % 2 === 1) steps.reverse();
        for (const step of steps) await step();
      }
      if (o.only.has('ceiling')) {
        // For context only (not part of the ratio): Node's default stream buffers, and the
        // same minimal copy inside TLS-PSK (what encryption alone costs on this machine).
        const dir = await fresh(base, 'ceiling-default-');
        const { ms } = await ceilingRun(master, path.join(dir, 'copy.bin'), 0);
        await fs.rm(dir, { recursive: true });
        log(`  ceiling, default buffers: ${secs(ms)}`);
        ceilDefaultTimes.push(ms);
        for (let r = 0; r < o.reps; r++) {
          const tdir = await fresh(base, `ceiling-tls-${r}-`);
          const t = await ceilingRun(master, path.join(tdir, 'copy.bin'), 1 << 20, { tls: true });
          await fs.rm(tdir, { recursive: true });
          log(`  ceiling inside TLS-PSK, rep ${r + 1}: ${secs(t.ms)}`);
          ceilTlsTimes.push(t.ms);
        }
      }
    }

    let ceiling = NaN;
    if (o.only.has('ceiling')) {
      ceiling = median(ceilTimes);
      rows.push(['ceiling: Node socket → file, 1 MiB buffers, SHA-256 ×2, fsync', secs(ceiling), mbps(o.size, ceiling), '1.00', '', '']);
      const d = median(ceilDefaultTimes);
      rows.push(['  same, default buffers (context, 1 run)', secs(d), mbps(o.size, d), (ceiling / d).toFixed(2), '', '']);
      const t = median(ceilTlsTimes);
      rows.push(['  same, inside TLS-PSK (context)', secs(t), mbps(o.size, t), (ceiling / t).toFixed(2), '', '']);
    }

    for (const encrypt of bigModes) {
      const runs = bigRuns.get(encrypt)!;
      const m = median(runs.map((x) => x.ms));
      const frac = ceiling / m;
      const rssS = Math.max(...runs.map((x) => x.rss[0]));
      const rssR = Math.max(...runs.map((x) => x.rss[1]));
      rows.push([
        `tdxfer outbox → inbox, ${encrypt ? 'TLS (default)' : 'plain TCP (encrypt: false)'}`,
        secs(m), mbps(o.size, m), Number.isNaN(frac) ? 'n/a' : frac.toFixed(2), mib(rssS), mib(rssR),
      ]);
      if (encrypt) {
        verdicts.push(`${Number.isNaN(frac) ? 'n/a ' : verdict(frac >= TARGETS.fraction)}  tdxfer / ceiling ≥ ${TARGETS.fraction}: ${Number.isNaN(frac) ? 'no ceiling measured' : frac.toFixed(2)}`);
        if (ceilTlsTimes.length > 0) verdicts.push(`info  tdxfer (TLS) / the same minimal copy inside TLS-PSK: ${(median(ceilTlsTimes) / m).toFixed(2)}`);
      } else if (!Number.isNaN(frac)) {
        verdicts.push(`${verdict(frac >= TARGETS.fraction)}  tdxfer plain TCP / ceiling ≥ ${TARGETS.fraction}: ${frac.toFixed(2)}`);
      }
      verdicts.push(`${verdict(Math.max(rssS, rssR) < TARGETS.rssBytes)}  peak RSS < ${mib(TARGETS.rssBytes)} (${encrypt ? 'TLS' : 'plain'}): sender ${mib(rssS)}, receiver ${mib(rssR)}`);
    }

    process.stdout.write('\n');
    if (rows.length > 0) {
      process.stdout.write(`${fmtBytes(o.size)} over loopback, median of ${o.reps}\n`);
      process.stdout.write(`${table(['how', 'time', 'rate', 'fraction', 'RSS send', 'RSS recv'], rows)}\n\n`);
    }
    if (smallRows.length > 0) {
      process.stdout.write(`${o.files} files × ${fmtBytes(o.fileSize)} dropped at once, median of ${o.reps} (alternating)\n`);
      process.stdout.write(`${table(['how', 'time', 'rate'], smallRows)}\n\n`);
    }
    for (const v of verdicts) process.stdout.write(`${v}\n`);
    if (o.backlog > 0) process.stdout.write(`\n${formatBacklog(await runBacklog({ files: o.backlog, dir: base, ...(o.cpuProf ? { cpuProf: path.resolve(o.cpuProf, 'backlog') } : {}), progress: log }))}`);
    process.stdout.write(`\nbench took ${secs(performance.now() - started)}\n`);
  } finally {
    if (o.keep) log(`kept ${base}`);
    else await fs.rm(base, { recursive: true, force: true });
  }
}

async function writeRandomFileQuick(file: string, size: number): Promise<void> {
  await fs.writeFile(file, randomBytes(size));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
