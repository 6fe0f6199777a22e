/**
 * Fan-out bench (issue #19): one sender agent, N receiver agents, all real processes
 * of the built CLI on 127.0.0.1 (static peers, distinct ports, no discovery), the
 * sender's outbox routed to every receiver. For each load (count × size) a fresh
 * sender is started, the files are moved into its outbox at once, and the bench waits
 * until every receiver holds every file, then checks each copy's SHA-256.
 *
 * Printed per load: time from the files appearing to the last landing, the sender's
 * peak RSS (/proc/<pid>/status VmHWM), the bytes it read (/proc/<pid>/io rchar, mostly
 * file reads: a sender reads little from its sockets) as "reads per file byte", and,
 * when the sender logs it, the bytes it hashed ("sending reads: … hashed" at stop).
 * Reads per byte ≈ 1 means each file was read once for all destinations; ≈ N means
 * once per destination.
 *
 * With --one-sender, one sender process runs every load in turn (as a venue's agent
 * does): its peak RSS (VmHWM) is reset before each load (/proc/<pid>/clear_refs), so a
 * load's figure includes whatever the earlier ones left behind.
 *
 *   node dist/test/bench/fanout.js [--receivers 19] [--loads 1x200M,200x4K,50x1M]
 *        [--one-sender] [--plain] [--keep] [--sender-config '{"transfer":{…}}'] [--receiver-config '{…}']
 *        [--sender-env '{"NAME":"value"}']
 *
 * `runFanout()` is the same as a function (for the venue run).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { KEY, cliPath, listeningPort, writeConfig } from './agents.js';
import { countFiles, fmtBytes, parseSize, pollUntil, procCpuMs, procMemory, sampleMemory, sleep, spawnProc, table, writeRandomFile, type Proc } from './util.js';

export interface FanoutLoad {
  count: number;
  size: number;
}

export interface FanoutOptions {
  receivers: number;
  loads: FanoutLoad[];
  /** Work folder (default: a fresh one in the OS temp folder, removed unless keep). */
  root?: string;
  keep?: boolean;
  encrypt?: boolean;
  settleMs?: number;
  /** Per load, to wait for all files everywhere. */
  timeoutMs?: number;
  /** Config fields merged (top level, shallow) over the sender's / receivers' configs. */
  senderExtra?: Record<string, unknown>;
  receiverExtra?: Record<string, unknown>;
  /** One sender process for every load, in turn (default: a fresh one per load). */
  oneSender?: boolean;
  /** Environment variables added for the sender process (e.g. MALLOC_ARENA_MAX, NODE_OPTIONS). */
  senderEnv?: Record<string, string>;
  /** Progress lines (default: stderr). */
  say?: (line: string) => void;
}

export interface FanoutResult {
  load: string;
  files: number;
  receivers: number;
  /** Bytes of one copy of the load. */
  bytes: number;
  seconds: number;
  /** Sender's peak RSS, bytes. */
  senderPeakRss: number;
  /** Sender's CPU time (user + system) during the load, seconds. */
  senderCpuSeconds: number;
  /** Bytes the sender read (rchar) during the load, over the load's bytes. */
  readsPerByte: number;
  /** Bytes the sender hashed over the load's bytes, when its stop line says (else null). */
  hashesPerByte: number | null;
  /** Every file at every receiver, with the right content. */
  exact: boolean;
  problems: string[];
}

async function rchar(pid: number): Promise<number | null> {
  try {
    const text = await fs.readFile(`/proc/${pid}/io`, 'utf8');
    return Number(/^rchar:\s+(\d+)/m.exec(text)?.[1] ?? NaN);
  } catch {
    return null;
  }
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(await fs.readFile(file)).digest('hex');
}

export function loadName(l: FanoutLoad): string {
  return `${l.count}x${fmtBytes(l.size).replace(/\s+/g, '')}`;
}

export async function runFanout(opts: FanoutOptions): Promise<FanoutResult[]> {
  const say = opts.say ?? ((l: string) => process.stderr.write(`${l}\n`));
  const root = opts.root ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'tdxfer-fanout-')));
  const encrypt = opts.encrypt ?? true;
  const settleMs = opts.settleMs ?? 200;
  const cli = cliPath();
  const common = { dataDir: 'data', security: { key: KEY, encrypt }, status: { enabled: false }, discovery: { enabled: false } };
  const receivers: Array<{ name: string; port: number; dir: string; proc: Proc }> = [];
  const results: FanoutResult[] = [];
  try {
    say(`fan-out bench in ${root}: starting ${opts.receivers} receivers`);
    for (let i = 0; i < opts.receivers; i++) {
      const name = `play${String(i + 1).padStart(2, '0')}`;
      const dir = path.join(root, name);
      const port = 0; // read back below
      const cfgFile = await writeConfig(dir, { name, listen: { host: '127.0.0.1', port }, inboxes: [{ name: 'renders', path: 'inbox' }], ...common, ...opts.receiverExtra });
      const proc = spawnProc(process.execPath, [cli, 'run', '--config', cfgFile]);
      receivers.push({ name, port, dir, proc });
    }
    // Port 0: the senders' configs name the port each receiver printed.
    for (const r of receivers) r.port = await listeningPort(r.proc, 120_000);

    const startSender = async (sdir: string): Promise<Proc> => {
      await fs.mkdir(path.join(sdir, 'outbox'), { recursive: true });
      const cfgFile = await writeConfig(sdir, {
        name: 'render',
        listen: { host: '127.0.0.1', port: 0 },
        inboxes: [],
        outboxes: [{ path: 'outbox', to: receivers.map((r) => ({ peer: r.name, inbox: 'renders' })), settleMs, after: 'keep' }],
        peers: receivers.map((r) => ({ name: r.name, host: '127.0.0.1', port: r.port })),
        ...common,
        ...opts.senderExtra,
      });
      const p = spawnProc(process.execPath, [cli, 'run', '--config', cfgFile], opts.senderEnv ?? {});
      await p.waitFor(/watching outbox/, 60_000);
      await sleep(500); // let the connections settle before the load
      return p;
    };
    const shared = opts.oneSender ? await startSender(path.join(root, 'sender')) : null;
    try {
      for (const [li, load] of opts.loads.entries()) {
        const label = loadName(load);
        const sdir = shared ? path.join(root, 'sender') : path.join(root, `sender-${li}`);
        const src = path.join(sdir, 'src', `L${li}`);
        await fs.mkdir(src, { recursive: true });
        say(`${label}: writing ${load.count} files of ${fmtBytes(load.size)}`);
        const want = new Map<string, string>();
        for (let i = 0; i < load.count; i++) {
          const f = path.join(src, `f${String(i).padStart(4, '0')}.bin`);
          await writeRandomFile(f, load.size);
          want.set(`L${li}/${path.basename(f)}`, await sha256(f));
        }
        const sender = shared ?? (await startSender(sdir));
        const problems: string[] = [];
        let seconds = NaN;
        let peak = NaN;
        let readBytes = NaN;
        let cpu = NaN;
        let hashed: number | null = null;
        const hashedBefore = shared ? null : 0;
        try {
          // Peak RSS of this load only (a shared sender ran earlier loads): VmHWM from now.
          if (shared) await fs.writeFile(`/proc/${sender.pid}/clear_refs`, '5').catch(() => undefined);
          const rc0 = (await rchar(sender.pid)) ?? NaN;
          const cpu0 = (await procCpuMs(sender.pid)) ?? NaN;
          const mem = sampleMemory([sender.pid], 50);
          const t0 = performance.now();
          await fs.rename(src, path.join(sdir, 'outbox', `L${li}`));
          const timeoutMs = opts.timeoutMs ?? 600_000;
          const t1 = await pollUntil(
            async () => {
              for (const r of receivers) if ((await countFiles(path.join(r.dir, 'inbox', `L${li}`))) < load.count) return false;
              return true;
            },
            timeoutMs,
            `${label} at all ${receivers.length} receivers`,
            50,
          ).catch((err: unknown) => {
            problems.push(String(err));
            return NaN;
          });
          seconds = (t1 - t0) / 1000;
          readBytes = ((await rchar(sender.pid)) ?? NaN) - rc0;
          cpu = (((await procCpuMs(sender.pid)) ?? NaN) - cpu0) / 1000;
          peak = (await mem.stop())[0] ?? NaN;
          const m = await procMemory(sender.pid);
          if (m) peak = Math.max(peak ?? 0, m.hwm);
          say(`${label}: sender RSS after the load ${fmtBytes(m?.rss ?? NaN)}`);
        } finally {
          if (!shared) await sender.stop();
        }
        const hm = /sending reads: .*?(\d+) bytes hashed/.exec(sender.output());
        if (hm && hashedBefore !== null) hashed = Number(hm[1]) - hashedBefore;
        for (const r of receivers) {
          for (const [rel, hash] of want) {
            const got = await sha256(path.join(r.dir, 'inbox', rel)).catch(() => 'missing');
            if (got !== hash) problems.push(`${r.name}: ${rel} ${got === 'missing' ? 'missing' : 'differs'}`);
          }
        }
        const bytes = load.count * load.size;
        const res: FanoutResult = {
          load: label,
          files: load.count,
          receivers: receivers.length,
          bytes,
          seconds,
          senderPeakRss: peak,
          senderCpuSeconds: cpu,
          readsPerByte: readBytes / bytes,
          hashesPerByte: hashed === null ? null : hashed / bytes,
          exact: problems.length === 0,
          problems: problems.slice(0, 10),
        };
        results.push(res);
        say(`${label}: ${seconds.toFixed(2)} s, sender peak RSS ${fmtBytes(peak)}, reads/byte ${res.readsPerByte.toFixed(2)}, hashes/byte ${res.hashesPerByte?.toFixed(2) ?? 'n/a'}, ${res.exact ? 'all exact' : `${problems.length} problem(s)`}`);
        if (!shared) await fs.rm(path.join(sdir, 'outbox'), { recursive: true, force: true });
      }
    } finally {
      await shared?.stop();
    }
  } finally {
    await Promise.all(receivers.map((r) => r.proc.stop()));
    if (!opts.keep && !opts.root) await fs.rm(root, { recursive: true, force: true });
  }
  return results;
}

export function fanoutTable(results: FanoutResult[]): string {
  return table(
    ['load', 'receivers', 'time s', 'sender peak RSS', 'sender CPU s', 'reads/byte', 'hashes/byte', 'exact'],
    results.map((r) => [r.load, String(r.receivers), r.seconds.toFixed(2), fmtBytes(r.senderPeakRss), r.senderCpuSeconds.toFixed(2), r.readsPerByte.toFixed(2), r.hashesPerByte?.toFixed(2) ?? 'n/a', r.exact ? 'yes' : 'NO']),
  );
}

function parseLoads(text: string): FanoutLoad[] {
  return text.split(',').map((s) => {
    const m = /^(\d+)x(.+)$/i.exec(s.trim());
    if (!m) throw new Error(`--loads: "${s}" is not COUNTxSIZE (e.g. 50x1M)`);
    return { count: Number(m[1]), size: parseSize(m[2]!) };
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const val = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const json = (name: string): Record<string, unknown> | undefined => {
    const v = val(name);
    return v === undefined ? undefined : (JSON.parse(v) as Record<string, unknown>);
  };
  const senderExtra = json('--sender-config');
  const receiverExtra = json('--receiver-config');
  const senderEnv = json('--sender-env') as Record<string, string> | undefined;
  const results = await runFanout({
    receivers: Number(val('--receivers') ?? 19),
    loads: parseLoads(val('--loads') ?? '1x200M,200x4K,50x1M'),
    encrypt: !args.includes('--plain'),
    keep: args.includes('--keep'),
    oneSender: args.includes('--one-sender'),
    say: (l: string) => void process.stderr.write(`${new Date().toISOString()} ${l}\n`),
    ...(senderEnv ? { senderEnv } : {}),
    ...(senderExtra ? { senderExtra } : {}),
    ...(receiverExtra ? { receiverExtra } : {}),
  });
  process.stdout.write(`${fanoutTable(results)}\n`);
  for (const r of results) for (const p of r.problems) process.stdout.write(`${r.load}: ${p}\n`);
  if (results.some((r) => !r.exact)) process.exitCode = 1;
}

if (process.argv[1] && path.resolve(process.argv[1]).endsWith(path.join('bench', 'fanout.js'))) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
