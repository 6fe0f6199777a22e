/**
 * Summaries of V8 CPU profiles (`node --cpu-prof`, .cpuprofile JSON) for the bench:
 * self time per function and per area (our code, Node's internals, each npm package,
 * GC, native/program), so the levers of issue #12 are measured, not guessed.
 *
 * `node dist/test/bench/cpuprofile.js FILE|DIR... [--top N]` prints the summary of each
 * profile (a folder: every .cpuprofile inside, recursively).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number } }>;
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  name: string;
  /** file:line (1-based), or '' for V8's own entries such as (garbage collector). */
  where: string;
  area: string;
  ms: number;
  /** Share of the busy (non-idle) samples. */
  pct: number;
}

export interface ProfileSummary {
  /** Time the profile covers, ms. */
  wallMs: number;
  /** Sampled time not idle, ms. */
  busyMs: number;
  top: SelfTime[];
  areas: Array<{ area: string; ms: number; pct: number }>;
}

/** Which part of the program a script URL belongs to. */
export function areaOf(url: string, name: string): string {
  if (!url) {
    if (name === '(garbage collector)') return 'GC';
    if (name === '(program)') return '(program: native, not JS)';
    if (name === '(idle)') return '(idle)';
    return 'native';
  }
  if (url.startsWith('node:')) return 'node internals';
  if (url.startsWith('wasm://')) return 'WebAssembly (e.g. hash-wasm)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `npm ${nm[1]}`;
  const own = /\/dist\/(src|test)\/(.*)$/.exec(url);
  if (own) return own[1] === 'src' ? `tdxfer src/${own[2]!.split('/')[0]!.replace(/\.js$/, '')}` : 'tdxfer test';
  return 'other';
}

function shortWhere(url: string, line: number): string {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const m = /node_modules\/(.*)$/.exec(u) ?? /\/dist\/(.*)$/.exec(u);
  return `${m ? m[1] : path.basename(u)}:${line + 1}`;
}

/**
 * Self time per function (summed over call sites) and per area; with `window` ([from, to]
 * in µs on the profile's clock, i.e. process.hrtime of any process on this machine) only
 * the samples taken in it, e.g. the measured transfer without the agent's start.
 */
export function summarise(p: CpuProfile, topN = 15, window?: [number, number]): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  const fn = new Map<string, SelfTime>();
  const areas = new Map<string, number>();
  let busyUs = 0;
  let at = p.startTime;
  for (let i = 0; i < samples.length; i++) {
    at += deltas[i] ?? 0;
    if (window && (at < window[0] || at > window[1])) continue;
    const cf = byId.get(samples[i]!);
    if (!cf) continue;
    // The delta before a sample is the time it stands for (first one: 0); clamp V8's occasional negative.
    const us = Math.max(0, deltas[i + 1] ?? deltas[i] ?? 0);
    const name = cf.functionName || '(anonymous)';
    const area = areaOf(cf.url, name);
    if (area === '(idle)') continue;
    busyUs += us;
    const where = shortWhere(cf.url, cf.lineNumber);
    const key = `${name}\u0000${where}`;
    const e = fn.get(key) ?? { name, where, area, ms: 0, pct: 0 };
    e.ms += us; // µs until the end, then ms (sums of integers stay exact)
    fn.set(key, e);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  for (const e of fn.values()) e.ms /= 1000;
  for (const [k, v] of areas) areas.set(k, v / 1000);
  const busyMs = busyUs / 1000;
  const pct = (ms: number) => (busyMs > 0 ? (100 * ms) / busyMs : 0);
  const top = [...fn.values()].sort((a, b) => b.ms - a.ms).slice(0, topN).map((e) => ({ ...e, pct: pct(e.ms) }));
  const areaList = [...areas.entries()].map(([area, ms]) => ({ area, ms, pct: pct(ms) })).sort((a, b) => b.ms - a.ms);
  const wallUs = window ? Math.min(p.endTime, window[1]) - Math.max(p.startTime, window[0]) : p.endTime - p.startTime;
  return { wallMs: Math.max(0, wallUs) / 1000, busyMs, top, areas: areaList };
}

export function formatSummary(title: string, s: ProfileSummary, areasN = 8): string {
  const lines = [`${title}: ${(s.busyMs / 1000).toFixed(2)} s busy of ${(s.wallMs / 1000).toFixed(2)} s profiled`];
  lines.push(`  by area: ${s.areas.slice(0, areasN).map((a) => `${a.area} ${a.pct.toFixed(0)}%`).join(', ')}`);
  for (const t of s.top) lines.push(`  ${t.pct.toFixed(1).padStart(5)}%  ${(t.ms / 1000).toFixed(3)} s  ${t.name}${t.where ? `  ${t.where}` : ''}`);
  return lines.join('\n');
}

/** Every .cpuprofile under `root` (a file or folder). */
export async function findProfiles(root: string): Promise<string[]> {
  const st = await fs.stat(root);
  if (st.isFile()) return [root];
  const out: string[] = [];
  for (const e of await fs.readdir(root, { withFileTypes: true })) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) out.push(...(await findProfiles(p)));
    else if (e.name.endsWith('.cpuprofile')) out.push(p);
  }
  return out.sort();
}

export async function summariseFile(file: string, topN = 15, window?: [number, number]): Promise<ProfileSummary> {
  return summarise(JSON.parse(await fs.readFile(file, 'utf8')) as CpuProfile, topN, window);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const ti = args.indexOf('--top');
  const topN = ti >= 0 ? Number(args.splice(ti, 2)[1]) : 15;
  if (args.length === 0 || !Number.isInteger(topN) || topN < 1) {
    process.stderr.write('usage: node dist/test/bench/cpuprofile.js FILE.cpuprofile|DIR... [--top 15]\n');
    process.exit(2);
  }
  (async () => {
    for (const a of args) for (const f of await findProfiles(a)) process.stdout.write(`${formatSummary(f, await summariseFile(f, topN))}\n\n`);
  })().catch((err: unknown) => {
    process.stderr.write(`cpuprofile: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
