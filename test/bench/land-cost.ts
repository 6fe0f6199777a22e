/**
 * Landing cost with an empty and a full inbox folder, in-process (issue #20): CPU per landed
 * file and the process's RSS/heap after landing, each case in a fresh child process so RSS
 * compares like with like. A benchmark, not a test: it prints figures, it asserts nothing.
 *
 *   node --expose-gc dist/test/bench/land-cost.js [--prefill 100000] [--files 300] [--dir /tmp/x]
 *
 * The pre-filled folder is made once under --dir (default: the OS temp folder) and reused.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Inbox } from '../../src/inbox/inbox.js';
import { memoryLogger } from '../../src/log.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const PREFILL = Number(opt('prefill', '100000'));
const FILES = Number(opt('files', '300'));
const BASE = path.resolve(opt('dir', os.tmpdir()));
const ROOT = path.join(BASE, `tdx-landcost-${PREFILL}`);
const mb = (n: number): string => (n / 1e6).toFixed(1);

async function prefill(): Promise<void> {
  const bulk = path.join(ROOT, 'inbox', 'bulk');
  await fs.mkdir(bulk, { recursive: true });
  const have = (await fs.readdir(bulk)).filter((n) => n.startsWith('pre.')).length;
  for (let i = have; i < PREFILL; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, PREFILL - i) }, (_, k) => fs.writeFile(path.join(bulk, `pre.${String(i + k).padStart(7, '0')}.bin`), 'x')));
  }
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function child(folder: string): Promise<void> {
  const inboxDir = path.join(ROOT, 'inbox');
  const state = await fs.mkdtemp(path.join(ROOT, 'state-'));
  const ib = await Inbox.open(
    { name: 'main', path: inboxDir, onCollision: 'overwrite', staging: path.join(state, 'staging') },
    { log: memoryLogger(), stateDir: state, maxFileBytes: 1 << 30, reserveBytes: 0, resumeMinBytes: 0 },
  );
  const body = Buffer.alloc(1024, 7);
  const digest = createHash('sha256').update(body).digest('hex');
  const one = async (rel: string, i: number): Promise<void> => {
    const r = await ib.begin({ source: 'bench', path: rel, size: body.length, mtimeMs: 1000 + i, resume: true });
    if (r.kind === 'skip') throw new Error(`unexpected skip of ${rel}`);
    await r.file.write(body);
    await r.file.commit(digest);
  };
  for (let i = 0; i < 20; i++) await one(`warm/w.${process.pid}.${i}.bin`, i);
  gc();
  const rss0 = process.memoryUsage().rss;
  const cpu0 = process.cpuUsage();
  const names: string[] = [];
  for (let i = 0; i < FILES; i++) {
    const name = `probe.${process.pid}.${String(i).padStart(5, '0')}.bin`;
    names.push(name);
    await one(`${folder}/${name}`, i);
  }
  const cpu = process.cpuUsage(cpu0);
  gc();
  const m = process.memoryUsage();
  await ib.close();
  for (const n of names) await fs.rm(path.join(inboxDir, folder, n), { force: true });
  await fs.rm(state, { recursive: true, force: true });
  await fs.rm(path.join(inboxDir, 'warm'), { recursive: true, force: true });
  process.stdout.write(JSON.stringify({ cpuMsPerFile: (cpu.user + cpu.system) / 1000 / FILES, rss0, rss: m.rss, heapUsed: m.heapUsed, external: m.external }) + '\n');
}

async function main(): Promise<void> {
  if (args[0] === '--child') return child(args[1]!);
  await prefill();
  const runs: Record<string, { cpuMsPerFile: number; rss0: number; rss: number; heapUsed: number }> = {};
  for (const folder of ['fresh', 'bulk', 'fresh', 'bulk']) {
    const r = spawnSync(process.execPath, ['--expose-gc', process.argv[1]!, '--child', folder, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`child ${folder} failed: ${r.stderr}`);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as (typeof runs)[string];
    process.stdout.write(`${folder === 'fresh' ? 'empty folder   ' : `${PREFILL} files`}: CPU ${res.cpuMsPerFile.toFixed(2)} ms/file, RSS ${mb(res.rss0)} -> ${mb(res.rss)} MB, heap used ${mb(res.heapUsed)} MB\n`);
    // the second run of each counts (the first warms the disk cache)
    runs[folder] = res;
  }
  const e = runs.fresh!;
  const f = runs.bulk!;
  process.stdout.write(
    `ratio CPU ${(f.cpuMsPerFile / e.cpuMsPerFile).toFixed(2)} (target <= 1.5), RSS ${f.rss - e.rss >= 0 ? '+' : ''}${mb(f.rss - e.rss)} MB (target <= 20 MB); load average ${os.loadavg()[0]!.toFixed(1)}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`land-cost failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
