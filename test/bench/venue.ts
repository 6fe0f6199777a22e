/**
 * `npm run venue -- --agents 20` (as root): a venue on one machine (issue #19 item 5).
 * N agents in network namespaces on a bridge (venue-lib.ts), discovery on, one fan-out
 * sender. Prints: time to full mesh, mDNS traffic and agent RSS/CPU at rest, fan-out time
 * and sender peak RSS for 1 × 200 MiB, 200 × 4 KiB and 50 × 1 MiB to every receiver, and
 * the churn result (kill -9 of a quarter of the receivers mid-stream, restarted). Then
 * which figures miss the goals of issue #19. A benchmark: it asserts nothing, exit code 0
 * unless the run itself broke (exit 2 on a usage error, 1 on a failure).
 *
 * Options: --agents N (default 20), --rest-seconds S (default 30), --scale F (load sizes ×F,
 * default 1), --keep (leave the work folder), --json FILE (write the figures as JSON).
 * Everything it creates (namespaces, processes, the work folder) is removed at the end.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { canUseNetns } from '../helpers/netns.js';
import { Venue, loads, type ChurnResult, type FanoutResult, type RestStats } from './venue-lib.js';
import { fmtBytes } from './util.js';

interface Args {
  agents: number;
  restSeconds: number;
  scale: number;
  keep: boolean;
  json: string | null;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { agents: 20, restSeconds: 30, scale: 1, keep: false, json: null };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${k} needs a positive number, got ${JSON.stringify(argv[i])}`);
      return v;
    };
    if (k === '--agents') a.agents = Math.round(num());
    else if (k === '--rest-seconds') a.restSeconds = num();
    else if (k === '--scale') a.scale = num();
    else if (k === '--keep') a.keep = true;
    else if (k === '--json') a.json = argv[++i] ?? null;
    else throw new Error(`unknown option ${k} (options: --agents N, --rest-seconds S, --scale F, --keep, --json FILE)`);
  }
  if (a.agents < 2 || a.agents > 100) throw new Error(`--agents must be 2..100, got ${a.agents}`);
  return a;
}

const MB = 1e6;
const say = (s: string): void => void process.stdout.write(s + '\n');

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`venue: ${(err as Error).message}\n`);
    return 2;
  }
  const can = canUseNetns();
  if (!can.ok) {
    process.stderr.write(`venue: ${can.reason}\n`);
    return 2;
  }
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-venue-'));
  const n = args.agents;
  say(`venue: ${n} agents (1 sender, ${n - 1} receivers), one network namespace each on a bridge; work folder ${root}`);
  say(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${fmtBytes(os.totalmem())} RAM, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const venue = await Venue.create({ agents: n, root, log: (l) => say(`  ${l}`) });
  const misses: string[] = [];
  const figures: Record<string, unknown> = { agents: n, at: new Date().toISOString() };
  try {
    const mesh = await venue.startAll(300_000);
    figures.meshMs = mesh.ms;
    if (mesh.ms !== null) say(`full mesh (every agent sees the ${n - 1} others up): ${(mesh.ms / 1000).toFixed(1)} s after spawning them`);
    else {
      say(`NO full mesh within 300 s of spawning the agents; others seen up per agent: ${mesh.peersUp.map((x) => x ?? '-').join(' ')} ("-": status API did not answer)`);
      misses.push('no full mesh within 300 s');
      await venue.waitSenderSeesAll(300_000);
      say('the sender sees every receiver up: going on');
    }

    say(`at rest: measuring ${args.restSeconds} s…`);
    const rest: RestStats = await venue.rest(args.restSeconds);
    figures.rest = rest;
    const pps = rest.mdnsPackets / rest.seconds;
    const cpus = rest.agents.map((a) => a.cpu);
    const rss = rest.agents.map((a) => a.rss);
    const cpuTotal = cpus.reduce((x, y) => x + y, 0);
    say(`mDNS on the segment at rest: ${pps.toFixed(1)} packets/s (${(pps / n).toFixed(2)} per agent), ${(rest.mdnsBytes / rest.seconds / 1000).toFixed(1)} KB/s`);
    say(`agent at rest: RSS ${fmtBytes(Math.min(...rss))}–${fmtBytes(Math.max(...rss))}; CPU ${(100 * Math.min(...cpus)).toFixed(2)}–${(100 * Math.max(...cpus)).toFixed(2)} % of a core each, ${(100 * cpuTotal).toFixed(1)} % for all ${n}`);
    if (pps > 0.5 * n) misses.push(`mDNS at rest ${pps.toFixed(1)} packets/s > goal ${(0.5 * n).toFixed(1)} (0.5 per agent)`);

    const l = loads(args.scale);
    const fan: Record<string, FanoutResult> = {};
    for (const [label, files] of [
      ['1 x 200 MiB', l.big],
      ['200 x 4 KiB', l.small],
      ['50 x 1 MiB', l.medium],
    ] as const) {
      const r = await venue.fanout(label.replace(/ /g, ''), files, 30 * 60_000);
      fan[label] = r;
      const total = r.bytes * (n - 1);
      say(`fan-out ${label} to ${n - 1} receivers: ${(r.ms / 1000).toFixed(1)} s (${(total / MB / (r.ms / 1000)).toFixed(1)} MB/s delivered in total), sender peak RSS ${r.senderPeakRss === null ? '?' : `${(r.senderPeakRss / MB).toFixed(0)} MB`}${r.problems.length ? `; PROBLEMS: ${r.problems.slice(0, 5).join('; ')}` : '; every file at every receiver, right bytes'}`);
      if (r.senderPeakRss !== null && r.senderPeakRss > 150 * MB) misses.push(`sender peak RSS ${(r.senderPeakRss / MB).toFixed(0)} MB for ${label} > goal 150 MB`);
      if (r.problems.length) misses.push(`fan-out ${label}: ${r.problems.length} delivery problems`);
    }
    figures.fanout = fan;

    const c: ChurnResult = await venue.churn(l.churn, 30 * 60_000);
    figures.churn = c;
    say(`churn: ${c.files} × 16 KiB, kill -9 of ${c.killed.length} receivers (${c.killed.join(', ')}) mid-stream, restarted: all delivered in ${(c.ms / 1000).toFixed(1)} s`);
    say(`  files: ${c.problems.length === 0 ? `every file once at every receiver, right bytes` : `PROBLEMS: ${c.problems.slice(0, 5).join('; ')}`}`);
    say(`  events: hook runs not exactly once: ${c.hookNotOnce.length} (${c.recoveredHookRuns} runs flagged recovered: announced after the restart); OSC /tdxfer/received not exactly once: ${c.oscNotOnce.length}; announced twice: ${c.repeated.length}; never announced: ${c.unannounced.length}; cut short by the kill (README Guarantees): ${c.cut.length}${c.hookNotOnce.length + c.oscNotOnce.length ? ` — ${[...c.hookNotOnce, ...c.oscNotOnce].slice(0, 6).join(', ')}` : ''}`);
    if (c.problems.length) misses.push(`churn: ${c.problems.length} delivery problems`);
    if (c.hookNotOnce.length || c.oscNotOnce.length) misses.push(`churn: ${c.hookNotOnce.length} hook and ${c.oscNotOnce.length} OSC counts not exactly once`);

    say('');
    say(misses.length === 0 ? 'goals of issue #19: all met' : `goals of issue #19 missed:\n${misses.map((m) => `  - ${m}`).join('\n')}`);
    figures.misses = misses;
    if (args.json) await fs.writeFile(args.json, JSON.stringify(figures, null, 2));
    return 0;
  } catch (err) {
    process.stderr.write(`venue run failed: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  } finally {
    await venue.destroy();
    if (!args.keep) await fs.rm(root, { recursive: true, force: true });
    else say(`work folder kept: ${root}`);
  }
}

process.exitCode = await main();
