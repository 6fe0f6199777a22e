/**
 * `npm run bench`: tdxfer against rsync and against the ceiling of this machine, on loopback.
 *
 *   (a) small files (run first, see main()): N × 4 KiB as one folder renamed into a running
 *       agent's outbox, TLS and plain, settle subtracted, three times per pair of agents: the
 *       first drop right after they started (V8 still compiling their code) and the third, with
 *       the agents running (the targets' row; loads.ts SmallRuns); alternating with rsync of the same
 *       set to the rsync daemon, with the small-files Node floor (small-floor.ts: the same
 *       per-file work in a minimal pair of processes, TLS and plain, context) and with a
 *       `cp -r` baseline (the disk at that moment);
 *   (b) drop → visible latency of one small file, default settle window (1 s);
 *   (c) 1 GiB: the Node ceiling (socket → file copy, SHA-256 both sides, fsync), rsync to
 *       the daemon, `tdxfer send` to a running receiver, and two running agents (outbox →
 *       inbox, settle subtracted), TLS and plain, taking turns within each repetition;
 *       each big output deleted once measured (see main());
 *   (d) CPU seconds of each side (user + kernel) per GiB and per 1,000 files, and peak RSS
 *       of both agents while moving the big file;
 *   (e) with --profile DIR: one more (unmeasured) run of the agents on the 1 GiB and the
 *       small-file loads under `--cpu-prof`, profiles in DIR, top self time printed.
 *
 * rsync (issue #12): a daemon on 127.0.0.1 (rsync.ts), `rsync -a --whole-file --fsync`;
 * installed with apt-get when missing and root, else its rows are skipped with the reason.
 * Every repetition uses fresh folders and fresh agents; no small files are deleted until
 * the end (see FACTS.md: this disk creates files slowly for ~30 s after a mass delete).
 *
 * Options (flags, or env TDX_BENCH_<NAME>): --size 1G, --reps 3, --files 2000,
 * --file-size 4K, --settle 200, --tls-only (no encrypt:false rows; --plain is accepted and
 * is the default), --only ceiling,send,big,small,latency, --rsync auto|off, --profile DIR,
 * --dir <parent folder>, --keep, --cpu-prof <dir> (every agent of every run), --node-flags
 * '<flags>' (node flags for every agent, e.g. --node-flags=--trace-gc with --logs),
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
import { smallFloor } from './small-floor.js';
import { type PairOptions } from './agents.js';
import { formatBacklog, runBacklog, writeBacklog, type RsyncBacklog } from './backlog.js';
import { copyTree, fmtBytes, freshDir, median, parseSize, table, writeRandomFile } from './util.js';
import { ensureRsync, rsyncPush, startRsyncDaemon, type RsyncDaemon } from './rsync.js';
import { bigAgents, bigRsync, bigSend, latencyAgents, latencyRsync, smallAgents, smallRsync, type Run } from './loads.js';
import { cpuPer, fmtCpu, fmtRatio, GIB, linkVerdicts, medianCpu, pairedRatio, ratio, type Cpu } from './figures.js';
import { findProfiles, formatSummary, summariseFile } from './cpuprofile.js';

const TARGETS = { fraction: 0.8, filesPerSec: 1000, rssBytes: 150 * 1024 * 1024, vsRsyncPlain: 1.0, vsRsyncTls: 0.9 };
const LOADS = ['ceiling', 'send', 'big', 'small', 'latency'] as const;

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
      'tls-only': { type: 'boolean', default: env('tls-only') === '1' },
      only: { type: 'string', default: env('only') ?? LOADS.join(',') },
      rsync: { type: 'string', default: env('rsync') ?? 'auto' },
      profile: { type: 'string', default: env('profile') ?? '' },
      dir: { type: 'string', default: env('dir') ?? os.tmpdir() },
      keep: { type: 'boolean', default: env('keep') === '1' },
      'cpu-prof': { type: 'string', default: env('cpu-prof') ?? '' },
      'node-flags': { type: 'string', default: env('node-flags') ?? '' },
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
    process.stdout.write(`usage: npm run bench -- [--size 1G] [--reps 3] [--files 2000] [--file-size 4K] [--settle 200] [--tls-only]
                       [--only ${LOADS.join(',')}] [--rsync auto|off] [--profile DIR]
                       [--dir /tmp] [--keep] [--cpu-prof DIR] [--node-flags=--trace-gc] [--window N] [--chunk 1M] [--after archive|delete|keep]
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
  for (const o of only) if (!(LOADS as readonly string[]).includes(o)) throw new Error(`--only takes ${LOADS.join(', ')} (comma-separated), got ${JSON.stringify(o)}`);
  if (!['auto', 'off'].includes(values.rsync)) throw new Error(`--rsync takes auto or off, got ${JSON.stringify(values.rsync)}`);
  const transfer: Record<string, unknown> = {};
  if (values.window) transfer.window = int('window', values.window, 1);
  if (values.chunk) transfer.chunkBytes = parseSize(values.chunk);
  return {
    size: parseSize(values.size),
    reps: int('reps', values.reps, 1),
    files: int('files', values.files, 1),
    fileSize: parseSize(values['file-size']),
    settleMs: int('settle', values.settle, 0),
    modes: values['tls-only'] ? [true] : [true, false],
    only,
    rsync: values.rsync as 'auto' | 'off',
    profile: values.profile,
    dir: values.dir,
    keep: values.keep,
    cpuProf: values['cpu-prof'],
    nodeFlags: values['node-flags'].split(/\s+/).filter(Boolean),
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

const modeName = (encrypt: boolean) => (encrypt ? 'tls' : 'plain');

function pairOptions(o: Opts, encrypt: boolean, label: string, extra: Partial<PairOptions> = {}): PairOptions {
  const nodeFlags = [...o.nodeFlags, ...(o.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(o.cpuProf, label)] : [])];
  return {
    settleMs: o.settleMs,
    encrypt,
    nodeFlags,
    ...(o.transfer ? { transfer: o.transfer } : {}),
    ...(o.after ? { after: o.after } : {}),
    ...(o.logs ? { logs: { dir: path.resolve(o.logs), label, ...(o.logLevel ? { level: o.logLevel } : {}) } } : {}),
    ...extra,
  };
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
    const dir = await freshDir(base, `probe-${i}-`);
    const ms = copyTree(set, path.join(dir, 'copy'));
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
const cpuLine = (r: Pick<Run, 'sender' | 'receiver'>) => `CPU sender ${fmtCpu(r.sender)}, receiver ${fmtCpu(r.receiver)}`;

/** Runs the steps of one repetition, in reverse order on odd repetitions (taking turns). */
async function alternate(rep: number, steps: Array<() => Promise<void>>): Promise<void> {
  if (rep % 2 === 1) steps.reverse();
  for (const step of steps) await step();
}

async function main(): Promise<void> {
  const o = options();
  const base = await fs.mkdtemp(path.join(o.dir, 'tdxfer-bench-'));
  log(`tdxfer bench in ${base}: ${fmtBytes(o.size)} file, ${o.files} × ${fmtBytes(o.fileSize)}, ${o.reps} reps, settle ${o.settleMs} ms (subtracted), ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, Node ${process.version}`);
  const started = performance.now();
  const out: string[] = [];
  const verdicts: string[] = [];
  let daemon: RsyncDaemon | null = null;
  let rsyncBin = '';
  try {
    if (o.rsync === 'auto') {
      const r = ensureRsync(log);
      if ('skip' in r) {
        log(r.skip);
        verdicts.push(`info  ${r.skip}`);
      } else {
        rsyncBin = r.bin;
        daemon = await startRsyncDaemon(rsyncBin, await freshDir(base, 'rsyncd-'));
        const v = spawnSync(rsyncBin, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
        log(`rsync daemon (${v}) on 127.0.0.1:${daemon.port}, pid ${daemon.pid}: rsync -a --whole-file --fsync`);
      }
    }

    // Small files first: the big part deletes 1 GiB outputs, and this disk creates files
    // slowly for a while after freeing that much (FACTS.md), which would measure the
    // disk's recovery rather than tdxfer (the cp -r baseline shows it: 1 s instead of 0.06 s).
    if (o.only.has('small')) {
      const set = path.join(base, 'small-set');
      await fs.mkdir(set);
      for (let i = 0; i < o.files; i++) await fs.writeFile(path.join(set, `f${String(i).padStart(5, '0')}.bin`), randomBytes(o.fileSize));
      await waitForFastDisk(base, set);
      const series = new Map<string, Run[]>();
      const cps: number[] = [];
      const add = (k: string, r: Run) => series.set(k, [...(series.get(k) ?? []), r]);
      for (let r = 0; r < o.reps; r++) {
        const steps: Array<() => Promise<void>> = [];
        for (const encrypt of o.modes) {
          steps.push(async () => {
            const runs = await smallAgents(base, set, o.files, o.settleMs, pairOptions(o, encrypt, `small-${modeName(encrypt)}-${r}`), `small-${modeName(encrypt)}-${r}`);
            for (const [which, run] of [['first drop', runs.first], ['running', runs.running]] as const) {
              cps.push(run.cpMs);
              log(`  small files, tdxfer ${modeName(encrypt)} ${which} rep ${r + 1}: ${secs(run.ms)} (${(o.files / (run.ms / 1000)).toFixed(0)} files/s; cp -r before: ${secs(run.cpMs)}), ${cpuLine(run)}, bench itself ${(run.benchCpuMs / 1000).toFixed(2)} s`);
            }
            add(modeName(encrypt), runs.running);
            add(`${modeName(encrypt)}-first`, runs.first);
          });
        }
        for (const encrypt of o.modes) {
          steps.push(async () => {
            const run = await smallFloor(base, set, o.files, { tls: encrypt }, `floor-${modeName(encrypt)}-${r}`);
            log(`  small files, Node floor ${modeName(encrypt)} rep ${r + 1}: ${secs(run.ms)} (${(o.files / (run.ms / 1000)).toFixed(0)} files/s, ${run.batches} landing batches), ${cpuLine(run)}`);
            add(`floor-${modeName(encrypt)}`, { ...run, window: [0, 0] });
          });
        }
        if (daemon) {
          const d = daemon;
          steps.push(async () => {
            const run = await smallRsync(rsyncBin, d, set, `small-${r}`);
            log(`  small files, rsync rep ${r + 1}: ${secs(run.ms)} (${(o.files / (run.ms / 1000)).toFixed(0)} files/s), ${cpuLine(run)}`);
            add('rsync', run);
          });
        }
        await alternate(r, steps);
      }
      const rows: string[][] = [];
      const cpM = median(cps);
      rows.push(['cp -r (no fsync, same disk moment)', secs(cpM), `${(o.files / (cpM / 1000)).toFixed(0)} files/s`, '', '', '']);
      const rs = series.get('rsync') ?? [];
      const rsM = median(rs.map((x) => x.ms));
      const k = 1000;
      const row = (name: string, runs: Run[], isRsync: boolean) => {
        const m = median(runs.map((x) => x.ms));
        const sc = medianCpu(runs.map((x) => cpuPer(x.sender, o.files, k)));
        const rc = medianCpu(runs.map((x) => cpuPer(x.receiver, o.files, k)));
        rows.push([name, secs(m), `${(o.files / (m / 1000)).toFixed(0)} files/s`, isRsync ? '1.00' : fmtRatio(ratio(rsM, m)), fmtCpu(sc), fmtCpu(rc)]);
        return m;
      };
      if (rs.length > 0) row('rsync -a --whole-file --fsync → daemon', rs, true);
      for (const encrypt of o.modes) {
        // Context: the same agents' first drop, while V8 still compiles their code (SmallRuns).
        row(`tdxfer outbox → inbox, ${encrypt ? 'TLS' : 'plain'}, first drop after start`, series.get(`${modeName(encrypt)}-first`)!, false);
        const runs = series.get(modeName(encrypt))!;
        const m = row(`tdxfer outbox → inbox, ${encrypt ? 'TLS' : 'plain'}, running agents (third drop; fsync per file, settle subtracted)`, runs, false);
        const fps = o.files / (m / 1000);
        if (encrypt) verdicts.push(`${verdict(fps >= TARGETS.filesPerSec)}  small files ≥ ${TARGETS.filesPerSec} files/s end to end (TLS): ${fps.toFixed(0)} files/s`);
        if (rs.length > 0) {
          const t = encrypt ? TARGETS.vsRsyncTls : TARGETS.vsRsyncPlain;
          const r = ratio(rsM, m);
          verdicts.push(`${verdict(r >= t)}  rsync / tdxfer ≥ ${t}, ${o.files} small files, ${encrypt ? 'TLS' : 'plain'}: ${fmtRatio(r)} (median of per-rep ratios ${fmtRatio(pairedRatio(rs.map((x) => x.ms), runs.map((x) => x.ms)))})`);
        }
      }
      for (const encrypt of o.modes) {
        // Context, not a target (test/bench/small-floor.ts): the same per-file work in a minimal pair.
        const floor = series.get(`floor-${modeName(encrypt)}`) ?? [];
        if (floor.length === 0) continue;
        const fm = row(`Node floor: minimal pair, per-file read/hash/frame → write/fsync/rename/ack, archive after ack, ${encrypt ? 'TLS' : 'plain'}`, floor, false);
        const runs = series.get(modeName(encrypt))!;
        verdicts.push(`info  tdxfer small files (${encrypt ? 'TLS' : 'plain'}) / Node floor (floor time / tdxfer time): ${(fm / median(runs.map((x) => x.ms))).toFixed(2)} (median of per-rep ratios ${fmtRatio(pairedRatio(floor.map((x) => x.ms), runs.map((x) => x.ms)))})`);
      }
      out.push(`${o.files} files × ${fmtBytes(o.fileSize)} dropped at once, median of ${o.reps} (alternating); CPU s per 1,000 files = total (user+kernel)`);
      out.push(table(['how', 'time', 'rate', 'rsync/this', 'CPU sender', 'CPU receiver'], rows), '');
    }

    if (o.only.has('latency')) {
      const lat: number[] = [];
      const rl: number[] = [];
      for (let r = 0; r < o.reps; r++) {
        const steps: Array<() => Promise<void>> = [
          async () => {
            const xs = await latencyAgents(base, 5, o.fileSize, pairOptions(o, true, `latency-${r}`, { settleMs: undefined }), `latency-${r}`);
            log(`  drop → visible, tdxfer TLS, default settle, rep ${r + 1}: ${xs.map(secs).join(', ')}`);
            lat.push(...xs);
          },
        ];
        if (daemon) {
          const d = daemon;
          steps.push(async () => {
            const ms = await latencyRsync(rsyncBin, d, base, o.fileSize, `one-${r}`);
            log(`  one small file, rsync command, rep ${r + 1}: ${secs(ms)}`);
            rl.push(ms);
          });
        }
        await alternate(r, steps);
      }
      const rows = [[`tdxfer, drop into outbox → visible in inbox (TLS, default settle window 1 s)`, secs(median(lat)), `${lat.length} drops`]];
      if (rl.length > 0) rows.push(['rsync command for one file (no watcher: its start-to-exit time, context)', secs(median(rl)), `${rl.length} runs`]);
      out.push(`one ${fmtBytes(o.fileSize)} file, median`);
      out.push(table(['how', 'latency', 'n'], rows), '');
    }

    if (o.only.has('ceiling') || o.only.has('big') || o.only.has('send')) await bigPart(o, base, daemon, rsyncBin, out, verdicts);

    if (o.profile) await profilePart(o, base, out);

    process.stdout.write(`\n${out.join('\n')}\n`);
    for (const v of verdicts) process.stdout.write(`${v}\n`);
    if (o.backlog > 0) {
      const rsync = daemon ? await backlogRsync(rsyncBin, daemon, base, o.backlog) : undefined;
      const r = await runBacklog({ files: o.backlog, dir: base, ...(o.cpuProf ? { cpuProf: path.resolve(o.cpuProf, 'backlog') } : {}), progress: log });
      process.stdout.write(`\n${formatBacklog(r, rsync)}`);
    }
    process.stdout.write(`\nbench took ${secs(performance.now() - started)} (load average now ${os.loadavg().map((l) => l.toFixed(1)).join(' ')})\n`);
  } finally {
    await daemon?.stop();
    if (o.keep) log(`kept ${base}`);
    else await fs.rm(base, { recursive: true, force: true });
  }
}

/**
 * rsync's side of the backlog row: the same files (names, sizes, one bytes pattern) pushed to
 * the daemon by one command, timed from its start to its exit. Once, before tdxfer's run:
 * after that run the bench deletes 40,000 files, and file creation here is slow for a while
 * after a mass delete (FACTS.md), which would be measured as rsync's. Its copy stays until
 * the end for the same reason.
 */
async function backlogRsync(bin: string, daemon: RsyncDaemon, base: string, n: number): Promise<RsyncBacklog> {
  const src = await freshDir(base, 'backlog-rsync-');
  await writeBacklog(src, n, 1024);
  const r = await rsyncPush(bin, daemon, `${src}/`, `backlog-${n}`);
  log(`  backlog, rsync: ${n} files in ${secs(r.ms)} (${(n / (r.ms / 1000)).toFixed(0)} files/s), CPU sender ${fmtCpu(r.client)}, receiver ${fmtCpu(r.server)}`);
  return { ms: r.ms, sender: r.client, receiver: r.server };
}

/**
 * 1 GiB: the ceiling, rsync, `tdxfer send` and the agents take turns within each repetition
 * (the order alternating), and each run's output is deleted right after it is measured.
 * On this VM, writing into never-used guest memory costs ~2 s of kernel time per GiB (page
 * cache for the output): without deleting, whichever runs later pays for it, and without
 * taking turns the disk's write-back phases favour one side. A warm-up write first, so the
 * first measured run does not pay it either. Deleting one big file is not the mass delete
 * that slows file creation here (FACTS.md).
 */
async function bigPart(o: Opts, base: string, daemon: RsyncDaemon | null, rsyncBin: string, out: string[], verdicts: string[]): Promise<void> {
  const master = path.join(base, 'master.bin');
  log(`generating ${fmtBytes(o.size)} of random data…`);
  await writeRandomFile(master, o.size);
  const warm = path.join(base, 'warm-up.bin');
  await writeRandomFile(warm, o.size);
  await fs.rm(warm);
  // The master's pages are written back now, not during the first measured run.
  spawnSync('sync');
  const series = new Map<string, Run[]>();
  const add = (k: string, r: Run) => series.set(k, [...(series.get(k) ?? []), r]);
  const ceil: number[] = [];
  for (let r = 0; r < o.reps; r++) {
    const steps: Array<() => Promise<void>> = [];
    if (o.only.has('ceiling')) {
      steps.push(async () => {
        const dir = await freshDir(base, `ceiling-${r}-`);
        const { ms } = await ceilingRun(master, path.join(dir, 'copy.bin'), 1 << 20);
        await fs.rm(dir, { recursive: true });
        log(`  ceiling, 1 MiB buffers, rep ${r + 1}: ${secs(ms)}`);
        ceil.push(ms);
      });
    }
    if (daemon) {
      const d = daemon;
      steps.push(async () => {
        const run = await bigRsync(rsyncBin, d, master, `big-${r}`);
        log(`  rsync rep ${r + 1}: ${secs(run.ms)} (${mbps(o.size, run.ms)}), ${cpuLine(run)}`);
        add('rsync', run);
      });
    }
    for (const encrypt of o.modes) {
      const m = modeName(encrypt);
      if (o.only.has('send')) {
        steps.push(async () => {
          const run = await bigSend(base, master, o.size, pairOptions(o, encrypt, `send-${m}-${r}`), `send-${m}-${r}`);
          log(`  tdxfer send ${m} rep ${r + 1}: ${secs(run.ms)} (${mbps(o.size, run.ms)}), ${cpuLine(run)}`);
          add(`send-${m}`, run);
        });
      }
      if (o.only.has('big')) {
        steps.push(async () => {
          const run = await bigAgents(base, master, o.size, o.settleMs, pairOptions(o, encrypt, `big-${m}-${r}`), `big-${m}-${r}`);
          log(`  tdxfer agents ${m} rep ${r + 1}: ${secs(run.ms)} (${mbps(o.size, run.ms)}), peak RSS sender ${mib(run.rss![0])}, receiver ${mib(run.rss![1])}, ${cpuLine(run)}`);
          add(`big-${m}`, run);
        });
      }
    }
    await alternate(r, steps);
  }
  const ceilDefault: number[] = [];
  const ceilTls: number[] = [];
  if (o.only.has('ceiling')) {
    // For context only: Node's default stream buffers, and the same minimal copy inside
    // TLS-PSK (what encryption alone costs on this machine).
    const dir = await freshDir(base, 'ceiling-default-');
    ceilDefault.push((await ceilingRun(master, path.join(dir, 'copy.bin'), 0)).ms);
    await fs.rm(dir, { recursive: true });
    log(`  ceiling, default buffers: ${secs(ceilDefault[0]!)}`);
    for (let r = 0; r < o.reps; r++) {
      const tdir = await freshDir(base, `ceiling-tls-${r}-`);
      const t = await ceilingRun(master, path.join(tdir, 'copy.bin'), 1 << 20, { tls: true });
      await fs.rm(tdir, { recursive: true });
      log(`  ceiling inside TLS-PSK, rep ${r + 1}: ${secs(t.ms)}`);
      ceilTls.push(t.ms);
    }
  }

  const ceiling = median(ceil);
  const rs = series.get('rsync') ?? [];
  const rsM = median(rs.map((x) => x.ms));
  const rows: string[][] = [];
  const cpuRows: Array<{ name: string; sender?: Cpu; receiver?: Cpu }> = [];
  const blank = ['', '', '', ''];
  if (o.only.has('ceiling')) {
    rows.push(['ceiling: Node socket → file, 1 MiB buffers, SHA-256 ×2, fsync', secs(ceiling), mbps(o.size, ceiling), fmtRatio(ratio(rsM, ceiling)), '1.00', ...blank]);
    const d = median(ceilDefault);
    rows.push(['  same, default buffers (context, 1 run)', secs(d), mbps(o.size, d), fmtRatio(ratio(rsM, d)), (ceiling / d).toFixed(2), ...blank]);
    const t = median(ceilTls);
    rows.push(['  same, inside TLS-PSK (context)', secs(t), mbps(o.size, t), fmtRatio(ratio(rsM, t)), (ceiling / t).toFixed(2), ...blank]);
  }
  const row = (name: string, runs: Run[]) => {
    const m = median(runs.map((x) => x.ms));
    const sc = medianCpu(runs.map((x) => cpuPer(x.sender, o.size, GIB)));
    const rc = medianCpu(runs.map((x) => cpuPer(x.receiver, o.size, GIB)));
    const rss = runs[0]?.rss ? [mib(Math.max(...runs.map((x) => x.rss![0]))), mib(Math.max(...runs.map((x) => x.rss![1])))] : ['', ''];
    const frac = ceiling / m;
    rows.push([name, secs(m), mbps(o.size, m), fmtRatio(ratio(rsM, m)), Number.isFinite(frac) ? frac.toFixed(2) : '', fmtCpu(sc), fmtCpu(rc), ...rss]);
    cpuRows.push({ name, ...(sc ? { sender: sc } : {}), ...(rc ? { receiver: rc } : {}) });
    return m;
  };
  if (rs.length > 0) row('rsync -a --whole-file --fsync → daemon', rs);
  for (const encrypt of o.modes) {
    const m = modeName(encrypt);
    const label = encrypt ? 'TLS (default)' : 'plain (encrypt: false)';
    for (const [key, name] of [[`send-${m}`, `tdxfer send → running receiver, ${label}`], [`big-${m}`, `tdxfer agents outbox → inbox, ${label}`]] as const) {
      const runs = series.get(key);
      if (!runs) continue;
      const t = row(name, runs);
      if (rs.length > 0) {
        const target = encrypt ? TARGETS.vsRsyncTls : TARGETS.vsRsyncPlain;
        const r = ratio(rsM, t);
        verdicts.push(`${verdict(r >= target)}  rsync / tdxfer ≥ ${target}, ${fmtBytes(o.size)}, ${name}: ${fmtRatio(r)} (median of per-rep ratios ${fmtRatio(pairedRatio(rs.map((x) => x.ms), runs.map((x) => x.ms)))})`);
      }
      if (key.startsWith('big-')) {
        if (Number.isFinite(ceiling)) verdicts.push(`${verdict(ceiling / t >= TARGETS.fraction)}  tdxfer agents ${m} / ceiling ≥ ${TARGETS.fraction}: ${(ceiling / t).toFixed(2)}`);
        if (encrypt && ceilTls.length > 0) verdicts.push(`info  tdxfer agents (TLS) / the same minimal copy inside TLS-PSK: ${(median(ceilTls) / t).toFixed(2)}`);
        const rssS = Math.max(...runs.map((x) => x.rss![0]));
        const rssR = Math.max(...runs.map((x) => x.rss![1]));
        verdicts.push(`${verdict(Math.max(rssS, rssR) < TARGETS.rssBytes)}  peak RSS < ${mib(TARGETS.rssBytes)} (${m}): sender ${mib(rssS)}, receiver ${mib(rssR)}`);
      }
    }
  }
  out.push(`${fmtBytes(o.size)} over loopback, median of ${o.reps} (taking turns); rsync/this > 1: tdxfer faster; CPU s per GiB = total (user+kernel)`);
  out.push(table(['how', 'time', 'rate', 'rsync/this', 'vs ceiling', 'CPU sender', 'CPU receiver', 'RSS send', 'RSS recv'], rows), '');
  if (cpuRows.length > 0) {
    // Which link each side's CPU per GiB keeps up with if that work ran on one core.
    const lrows = cpuRows.flatMap((c) =>
      (['sender', 'receiver'] as const).map((side) => {
        const cpu = c[side];
        const ms = cpu ? cpu.user + cpu.sys : NaN;
        return [`${c.name}: ${side}`, fmtCpu(cpu), ...linkVerdicts(ms).map((v) => (Number.isFinite(ms) ? (v.keepsUp ? 'yes' : 'no') : 'n/a'))];
      }),
    );
    out.push('CPU per GiB vs link speed (1 GbE ≈ 117 MB/s = 9.2 s per GiB, 10 GbE ≈ 1170 MB/s = 0.92 s per GiB; one core per side)');
    out.push(table(['side', 'CPU s/GiB', '1 GbE', '10 GbE'], lrows), '');
  }
}

/**
 * One more run per load under --cpu-prof (not measured: profiling costs time): both agents
 * on 1 GiB (TLS, plain) and on the small files (TLS), and `tdxfer send` with its receiver.
 * The summaries cover only the measured interval (not the agents' start), except for the
 * send process, whose start is part of what a `tdxfer send` costs.
 */
async function profilePart(o: Opts, base: string, out: string[]): Promise<void> {
  const dir = path.resolve(o.profile);
  await fs.mkdir(dir, { recursive: true });
  const loads: Array<[string, (profileDir: string) => Promise<Run>]> = [];
  const master = path.join(base, 'master.bin');
  if (o.only.has('big')) {
    for (const encrypt of o.modes) {
      const m = modeName(encrypt);
      loads.push([`big-${m}`, (p) => bigAgents(base, master, o.size, o.settleMs, pairOptions(o, encrypt, `prof-big-${m}`, { profileDir: p }), `prof-big-${m}`)]);
    }
  }
  if (o.only.has('send')) loads.push(['send-tls', (p) => bigSend(base, master, o.size, pairOptions(o, true, 'prof-send-tls', { profileDir: p }), 'prof-send-tls')]);
  if (o.only.has('small')) {
    const set = path.join(base, 'small-set');
    loads.push(['small-tls', (p) => smallAgents(base, set, o.files, o.settleMs, pairOptions(o, true, 'prof-small-tls', { profileDir: p }), 'prof-small-tls').then((x) => x.running)]);
  }
  for (const [name, run] of loads) {
    const p = path.join(dir, name);
    await fs.rm(p, { recursive: true, force: true });
    log(`  profiling ${name} → ${p}`);
    const r = await run(p);
    for (const side of ['sender', 'receiver']) {
      for (const f of await findProfiles(path.join(p, side)).catch(() => [])) {
        out.push(formatSummary(`profile ${name}, ${side}, measured interval (${f})`, await summariseFile(f, 12, r.window)), '');
      }
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
