/**
 * Where a process allocates (issue #12): loaded into an agent with
 * `--node-flags "--import /abs/dist/test/bench/allocprof.js"` and TDXFER_ALLOCPROF=<file
 * prefix> in the environment, it samples every allocation (V8's sampling heap profiler,
 * one sample per TDXFER_ALLOCPROF_BYTES, default 4096), including objects the young and
 * old collections already freed, which `--heap-prof` leaves out. Each SIGUSR2 writes
 * `<prefix>.<pid>.<n>.<label>.heapprofile` with everything since the previous one, so a bench
 * can bracket one drop; the exit writes the rest (label `exit`). The label is the text of the
 * file `<prefix>.label` at that moment (the bench's loads.ts writes the name of the drop that
 * just ended, e.g. `batch` for the running agents' drop, or `before-<drop>`), else `mark`.
 * `node dist/test/bench/allocprof.js FILE...` prints the top allocation sites of profiles
 * (PER=2000 divides by the number of files). Not part of the agent.
 */
import fs from 'node:fs';
import inspector from 'node:inspector';
import { fileURLToPath } from 'node:url';

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  selfSize: number;
  children: Node[];
}
interface Profile {
  head: Node;
}

const prefix = process.env.TDXFER_ALLOCPROF;
const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];

if (prefix && !isMain) {
  const session = new inspector.Session();
  session.connect();
  const interval = Number(process.env.TDXFER_ALLOCPROF_BYTES ?? 4096);
  let n = 0;
  // A same-thread session answers synchronously: usable from the exit handler too.
  const post = (method: string, params: object = {}): Profile | undefined => {
    let result: { profile: Profile } | undefined;
    session.post(method, params, (err, r) => {
      if (err) throw err;
      result = r as { profile: Profile };
    });
    return result?.profile;
  };
  const start = (): void => {
    post('HeapProfiler.startSampling', { samplingInterval: interval, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  };
  const label = (): string => {
    try {
      return fs.readFileSync(`${prefix}.label`, 'utf8').trim().replace(/[^\w.-]/g, '_') || 'mark';
    } catch {
      return 'mark';
    }
  };
  const write = (name: string): void => {
    const profile = post('HeapProfiler.getSamplingProfile');
    post('HeapProfiler.stopSampling');
    fs.writeFileSync(`${prefix}.${process.pid}.${n++}.${name}.heapprofile`, JSON.stringify(profile));
  };
  start();
  process.on('SIGUSR2', () => {
    write(label());
    start();
  });
  process.on('exit', () => write('exit'));
}

/** Bytes per allocation site (function, file:line), largest first. */
export function sites(profile: Profile): Array<{ site: string; bytes: number }> {
  const by = new Map<string, number>();
  const walk = (node: Node): void => {
    const f = node.callFrame;
    const file = f.url.replace(/^.*\/(node_modules\/|dist\/|node:)/, '$1');
    const site = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    if (node.selfSize > 0) by.set(site, (by.get(site) ?? 0) + node.selfSize);
    for (const c of node.children) walk(c);
  };
  walk(profile.head);
  return [...by].map(([site, bytes]) => ({ site, bytes })).sort((a, b) => b.bytes - a.bytes);
}

if (isMain) {
  const perUnit = Number(process.env.PER ?? 1);
  for (const file of process.argv.slice(2)) {
    const list = sites(JSON.parse(fs.readFileSync(file, 'utf8')) as Profile);
    const total = list.reduce((s, x) => s + x.bytes, 0);
    process.stdout.write(`${file}: ${(total / 1e6).toFixed(1)} MB sampled, ${(total / perUnit / 1024).toFixed(1)} KiB per unit (PER=${perUnit})\n`);
    for (const x of list.slice(0, Number(process.env.TOP ?? 40))) {
      process.stdout.write(`${(x.bytes / perUnit).toFixed(0).padStart(9)}  ${((100 * x.bytes) / total).toFixed(1).padStart(5)} %  ${x.site}\n`);
    }
  }
}
