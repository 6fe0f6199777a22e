/**
 * XXH3-128 speed on this machine: hash-wasm's scalar module against ours with WebAssembly
 * SIMD (src/xxh3/), both fed 1 MiB chunks of random bytes, as the agents do: one chunk over
 * and over (in the CPU's cache), and 96 different ones in turn (96 MiB: from memory, as a
 * file's bytes come). Taking turns, median of the reps; CPU is this process's user time.
 *
 *   npm run build && node dist/test/bench/xxh3.js [GiB per rep, default 2] [reps, default 5]
 */
import { randomBytes } from 'node:crypto';
import { createXXHash128 } from 'hash-wasm';
import { Xxh3Simd, readyXxh3Simd, xxh3SimdAvailable } from '../../src/xxh3/xxh3.js';

const gib = Number(process.argv[2] ?? 2);
const reps = Number(process.argv[3] ?? 5);
const cached = [randomBytes(1 << 20)];
const fromMemory = Array.from({ length: 96 }, () => randomBytes(1 << 20));
const chunks = Math.round(gib * 1024);

interface Hasher {
  update(d: Uint8Array): unknown;
  digest(): string;
}

function one(make: () => Hasher, bufs: Buffer[]): { gbs: number; cpu: number } {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const h = make();
  for (let i = 0; i < chunks; i++) h.update(bufs[i % bufs.length]!);
  h.digest();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { gbs: (chunks * (1 << 20)) / s / 1e9, cpu: process.cpuUsage(c0).user / 1e6 / (chunks / 1024) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const hw = await createXXHash128();
await readyXxh3Simd();
const kinds: [string, () => Hasher][] = [['hash-wasm (scalar WebAssembly)', () => ({ update: (d) => hw.update(d), digest: () => hw.digest('hex') })]];
if (xxh3SimdAvailable) kinds.push(['src/xxh3 (WebAssembly SIMD)', () => new Xxh3Simd()]);
else process.stdout.write('this runtime has no WebAssembly SIMD: only hash-wasm is measured\n');
const results = new Map<string, { gbs: number; cpu: number }[]>();
for (let r = 0; r < reps; r++) {
  for (const [where, bufs] of [['cached', cached], ['from memory', fromMemory]] as const) {
    for (const [k, make] of kinds) {
      if (k.startsWith('hash-wasm')) hw.init();
      const key = `${k}, ${where}`;
      results.set(key, [...(results.get(key) ?? []), one(make, bufs)]);
    }
  }
}
process.stdout.write(`XXH3-128, ${gib} GiB in 1 MiB chunks, median of ${reps} (taking turns), Node ${process.version}\n`);
for (const [k, rs] of results) {
  const cpu = median(rs.map((x) => x.cpu));
  const perCpu = 1.073741824 / cpu;
  process.stdout.write(`${k.padEnd(45)} ${perCpu.toFixed(1).padStart(5)} GB per CPU-second  ${cpu.toFixed(3)} s CPU per GiB  (wall ${median(rs.map((x) => x.gbs)).toFixed(1)} GB/s)\n`);
}
