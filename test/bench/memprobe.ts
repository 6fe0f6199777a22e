/**
 * Where a process's memory goes, over time (issue #19 memory work): loaded into an agent
 * with `--sender-env '{"NODE_OPTIONS":"--import /abs/dist/test/bench/memprobe.js","TDXFER_MEMPROBE":"/tmp/x.jsonl"}'`
 * (fanout.ts) or NODE_OPTIONS in any shell, it appends one JSON line every
 * TDXFER_MEMPROBE_MS (default 100) to the file TDXFER_MEMPROBE names: RSS, V8 heap
 * (total, used), external and ArrayBuffer bytes (process.memoryUsage()), and from
 * /proc/self/smaps_rollup the anonymous and file-backed resident bytes. Native (malloc)
 * memory is roughly rss − heapTotal − arrayBuffers − code. TDXFER_MEMPROBE_V8: V8 flags to
 * set at start (space-separated), to try one. Not part of the agent.
 */
import fs from 'node:fs';
import v8 from 'node:v8';

const out = process.env.TDXFER_MEMPROBE;
// V8 flags to try (space-separated), set at start like AGENT_V8_FLAGS in src/cli/run.ts.
for (const f of (process.env.TDXFER_MEMPROBE_V8 ?? '').split(' ').filter(Boolean)) v8.setFlagsFromString(f);
if (out) {
  const every = Number(process.env.TDXFER_MEMPROBE_MS ?? 100);
  const t0 = Date.now();
  const kb = (text: string, name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    let anon = NaN;
    let file = NaN;
    try {
      const r = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
      anon = kb(r, 'Anonymous');
      file = kb(r, 'Rss') - anon;
    } catch {
      /* not Linux */
    }
    const line = { t: Date.now(), up: Date.now() - t0, rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, anon, file };
    fs.appendFileSync(out, `${JSON.stringify(line)}\n`);
  }, every);
  timer.unref();
}
