/**
 * One measured run of each load of `npm run bench`, each in fresh folders with fresh
 * agents (run.ts orders them, alternating, and takes medians):
 *
 * - bigAgents: a 1 GiB file renamed into a running sender's outbox until it is in the
 *   receiver's inbox, minus the settle window;
 * - bigSend: `tdxfer send FILE` to a running receiver, from the command's start until it
 *   exits (every file confirmed, i.e. durable at the receiver);
 * - small: N small files as one folder renamed into the outbox (settle subtracted),
 *   after a `cp -r` of the same set (the disk's baseline at that moment);
 * - latency: one small file dropped into an outbox with the default settle window,
 *   until it is visible in the inbox;
 * - rsync of the same data to the rsync daemon (rsync.ts).
 *
 * CPU time of each side, user and kernel, from /proc/<pid>/stat around the run.
 */
import fs from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { cliPath, startPair, startReceiver, type PairOptions } from './agents.js';
import { copyTree, countFiles, cpuSinceMs, freshDir, infoLogged, pollUntil, procCpuSplitMs, sampleMemory, sleep } from './util.js';
import { rsyncPush, runWithCpu, subCpu, type RsyncDaemon } from './rsync.js';
import type { Cpu } from './figures.js';

export interface Run {
  ms: number;
  sender: Cpu;
  receiver: Cpu;
  /** Peak RSS (bytes) of sender and receiver, where measured. */
  rss?: [number, number];
  /**
   * The measured interval on the clock of V8's CPU profiles (process.hrtime, µs), to cut
   * profiles to it: from the drop until the sender's after-action is done.
   */
  window: [number, number];
}

/** process.hrtime in µs: the clock of `--cpu-prof` timestamps (CLOCK_MONOTONIC). */
export const hrUs = () => Number(process.hrtime.bigint() / 1000n);

const NO_CPU: Cpu = { user: NaN, sys: NaN };

async function cpuOf(pid: number): Promise<Cpu> {
  return (await procCpuSplitMs(pid)) ?? NO_CPU;
}

/**
 * The sender's CPU is read once its work for the load is done, not when the last byte is
 * visible: after that it still takes the acknowledgements and runs the after-action
 * (archive into outbox/sent/, grouped per burst, at most 5 s later). Waits until no file is
 * left in the outbox outside sent/ (`after: keep` leaves them: then waits `keepMs`).
 */
async function senderDone(outbox: string, after: string | undefined, keepMs = 1000): Promise<void> {
  if (after === 'keep') {
    await sleep(keepMs);
    return;
  }
  const left = async () => {
    let n = 0;
    for (const e of await fs.readdir(outbox, { withFileTypes: true })) {
      if (e.name === 'sent') continue;
      n += e.isDirectory() ? await countFiles(path.join(outbox, e.name)) : 1;
    }
    return n;
  };
  await pollUntil(async () => (await left()) === 0, 60_000, `the outbox ${outbox} to be emptied by its after-action`, 20);
}

/** 1 file through two running agents: hard-link the master in, rename into the outbox, wait for the inbox. */
export async function bigAgents(base: string, master: string, size: number, settleMs: number, pairOpts: PairOptions, label: string): Promise<Run> {
  const root = await freshDir(base, `${label}-`);
  const pair = await startPair(root, pairOpts);
  try {
    // A hard link: the same (cached) bytes every run, as for the ceiling, no copy needed.
    const staged = path.join(root, 'take.mov');
    await fs.link(master, staged);
    const target = path.join(pair.inbox, 'take.mov');
    const pids = [pair.sender.pid, pair.receiver.pid];
    const mem = sampleMemory(pids);
    const [s0, r0] = await Promise.all(pids.map(cpuOf));
    const w0 = hrUs();
    const t0 = performance.now();
    await fs.rename(staged, path.join(pair.outbox, 'take.mov'));
    const t1 = await pollUntil(async () => (await fs.stat(target).catch(() => null))?.size === size, 300_000, `${target} in the inbox`, 2);
    const r1 = await cpuOf(pair.receiver.pid);
    await senderDone(pair.outbox, pairOpts.after);
    const s1 = await cpuOf(pair.sender.pid);
    const w2 = hrUs();
    const [rs, rr] = await mem.stop();
    return { ms: t1 - t0 - settleMs, sender: subCpu(s1, s0!), receiver: subCpu(r1, r0!), rss: [rs!, rr!], window: [w0, w2] };
  } finally {
    await pair.stop();
    // Free the output's page cache for the next run (run.ts); the archived source is the master's hard link.
    await fs.rm(path.join(pair.inbox, 'take.mov'), { force: true });
  }
}

/** `tdxfer send` of the master to a running receiving agent; the sender's CPU is the send process's. */
export async function bigSend(base: string, master: string, size: number, pairOpts: PairOptions, label: string): Promise<Run> {
  const root = await freshDir(base, `${label}-`);
  const recv = await startReceiver(root, pairOpts);
  const target = path.join(recv.inbox, 'take.mov');
  try {
    const r0 = await cpuOf(recv.receiver.pid);
    const w0 = hrUs();
    const prof = pairOpts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', path.join(pairOpts.profileDir, 'sender')] : [];
    const r = await runWithCpu(process.execPath, [...pairOpts.nodeFlags, ...prof, cliPath(), 'send', master, '--to', 'playback/renders', '--as', 'take.mov', '--config', recv.senderConfig, '--quiet']);
    if (r.code !== 0) throw new Error(`bench: tdxfer send failed (exit ${r.code}): ${r.output.slice(-1500)}`);
    const w1 = hrUs();
    const r1 = await cpuOf(recv.receiver.pid);
    const st = await fs.stat(target).catch(() => null);
    if (st?.size !== size) throw new Error(`bench: tdxfer send exited 0 but ${target} is ${st ? `${st.size} bytes` : 'missing'}`);
    return { ms: r.ms, sender: r.cpu, receiver: subCpu(r1, r0), window: [w0, w1] };
  } finally {
    await recv.stop();
    await fs.rm(target, { force: true });
  }
}

/** The master pushed to the rsync daemon into a fresh folder, deleted once measured. */
export async function bigRsync(bin: string, daemon: RsyncDaemon, master: string, label: string): Promise<Run> {
  const dest = `${label}-${process.hrtime.bigint()}`;
  try {
    const w0 = hrUs();
    const r = await rsyncPush(bin, daemon, master, dest);
    return { ms: r.ms, sender: r.client, receiver: r.server, window: [w0, hrUs()] };
  } finally {
    await fs.rm(path.join(daemon.root, dest), { recursive: true, force: true });
  }
}

export interface SmallRun extends Run {
  /** The `cp -r` baseline right before. */
  cpMs: number;
  /** CPU the bench itself used from the drop until the last file was in (its reading of the agents' output included), ms. */
  benchCpuMs: number;
}

/**
 * Drops into one pair: the first right after the agents started, then a second one
 * (not reported), then the measured one. A freshly started agent spends much of its first
 * thousands of files' CPU in V8 compiling its own code (optimising the hot functions on a
 * background thread; with --trace-opt 158-232 functions per agent in the first 2,000 files,
 * 44-70 more in the next 2,000, 25-30 in the 2,000 after): `running` measures the agent as
 * it runs for weeks on a show machine, after 4,000 files.
 */
export interface SmallRuns {
  first: SmallRun;
  running: SmallRun;
}

type Pair = Awaited<ReturnType<typeof startPair>>;

/**
 * cp -r of the prepared set into `root/name` (the baseline), then that copy renamed into
 * the pair's outbox, timed until every file is in the inbox (minus the settle window);
 * CPU until the sender also finished its after-actions.
 */
async function dropSmall(pair: Pair, root: string, name: string, set: string, files: number, settleMs: number, pairOpts: PairOptions): Promise<SmallRun> {
  const copy = path.join(root, name);
  const cpMs = copyTree(set, copy);
  const landed = path.join(pair.inbox, name);
  const pids = [pair.sender.pid, pair.receiver.pid];
  const [s0, r0] = await Promise.all(pids.map(cpuOf));
  // With allocprof.ts loaded (TDXFER_ALLOCPROF), each drop's allocations in their own file,
  // named after the drop (the label file is read by the agents when signalled).
  const prof = process.env.TDXFER_ALLOCPROF;
  const mark = (label: string): void => {
    if (!prof) return;
    writeFileSync(`${prof}.label`, label);
    for (const pid of pids) process.kill(pid, 'SIGUSR2');
  };
  mark(`before-${name}`);
  // The end is the receiver's `received <name>/…` line of the last file (written once the
  // file is in the inbox and fsynced), then confirmed by listing the folder once. Listing
  // the 2,000 names every 10 ms instead cost the bench 0.15 s of CPU per drop, taken from
  // the two cores the agents share; rsync's runs have no such poller.
  const received = infoLogged(pairOpts.logs?.level) ? pair.receiver.tally(` received ${name}/`) : null;
  const bench0 = process.cpuUsage();
  const w0 = hrUs();
  const t0 = performance.now();
  let t1: number;
  try {
    await fs.rename(copy, path.join(pair.outbox, name));
    t1 = received ? await received.reached(files, 300_000) : NaN;
  } finally {
    received?.close();
  }
  if (Number.isNaN(t1) || (await countFiles(landed)) < files) t1 = await pollUntil(async () => (await countFiles(landed)) >= files, 300_000, `${files} files in ${landed}`, 10);
  const benchCpuMs = cpuSinceMs(bench0);
  const r1 = await cpuOf(pair.receiver.pid);
  await senderDone(pair.outbox, pairOpts.after);
  const s1 = await cpuOf(pair.sender.pid);
  const w2 = hrUs();
  mark(name);
  return { cpMs, benchCpuMs, ms: t1 - t0 - settleMs, sender: subCpu(s1, s0!), receiver: subCpu(r1, r0!), window: [w0, w2] };
}

/** A fresh pair, and the set dropped into its outbox three times (SmallRuns). */
export async function smallAgents(base: string, set: string, files: number, settleMs: number, pairOpts: PairOptions, label: string): Promise<SmallRuns> {
  const root = await freshDir(base, `${label}-`);
  const pair = await startPair(root, pairOpts);
  try {
    const first = await dropSmall(pair, root, 'first', set, files, settleMs, pairOpts);
    await dropSmall(pair, root, 'second', set, files, settleMs, pairOpts);
    const running = await dropSmall(pair, root, 'batch', set, files, settleMs, pairOpts);
    return { first, running };
  } finally {
    await pair.stop();
  }
}

/** The small set pushed to the rsync daemon into a fresh folder (kept: no mass delete before the end). */
export async function smallRsync(bin: string, daemon: RsyncDaemon, set: string, label: string): Promise<Run> {
  const w0 = hrUs();
  const r = await rsyncPush(bin, daemon, `${set}/`, `${label}-${process.hrtime.bigint()}`);
  return { ms: r.ms, sender: r.client, receiver: r.server, window: [w0, hrUs()] };
}

/**
 * Drop → visible: `drops` files of `size` bytes, one at a time, each renamed into the outbox
 * of a pair with the default settle window and timed until it is in the inbox.
 */
export async function latencyAgents(base: string, drops: number, size: number, pairOpts: PairOptions, label: string): Promise<number[]> {
  const root = await freshDir(base, `${label}-`);
  const pair = await startPair(root, pairOpts);
  const out: number[] = [];
  try {
    for (let i = 0; i < drops; i++) {
      const name = `drop-${i}.bin`;
      const staged = path.join(root, name);
      await fs.writeFile(staged, Buffer.alloc(size, i));
      const target = path.join(pair.inbox, name);
      const t0 = performance.now();
      await fs.rename(staged, path.join(pair.outbox, name));
      const t1 = await pollUntil(async () => (await fs.stat(target).catch(() => null)) !== null, 60_000, `${target} in the inbox`, 1);
      out.push(t1 - t0);
      // Let the after-action (archive) of this file run before the next drop.
      await sleep(300);
    }
    return out;
  } finally {
    await pair.stop();
  }
}

/** One small file pushed with rsync (context for the latency row: rsync has no watcher, this is its command time). */
export async function latencyRsync(bin: string, daemon: RsyncDaemon, base: string, size: number, label: string): Promise<number> {
  const dir = await freshDir(base, `${label}-`);
  const file = path.join(dir, 'one.bin');
  await fs.writeFile(file, Buffer.alloc(size, 7));
  const r = await rsyncPush(bin, daemon, file, `${label}-${process.hrtime.bigint()}`);
  return r.ms;
}
