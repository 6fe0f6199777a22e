/**
 * `tdxfer status [--watch] [--json]` and `tdxfer peers [--json]`: read a running agent's
 * status API. Handlers take options and output streams and return the exit code
 * (0 ok, 1 agent error, 2 usage/config, 3 no agent answering) so tests can drive them.
 */
import { heldLine } from '../inbox/held.js';
import type { Writable } from 'node:stream';
import { MultiBar, type SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import type { FailureInfo, HealthReport, PeerInfo, ReceivedInfo } from '../types.js';
import type { IncomingView, JobView, SnapshotView } from '../status/present.js';
import { readSse } from './sse-stream.js';
import { limitsText } from './limit-cmd.js';
import { CliFailure, EXIT, getJson, httpFailure, request, resolveEndpoint, withCliFailures, type Endpoint, type EndpointOptions } from './status-client.js';
import { protocolMark } from '../config/protocols.js';

export interface CliIo {
  out: Writable & { isTTY?: boolean; columns?: number };
  err: Writable;
}

export interface StatusOptions extends EndpointOptions {
  json?: boolean;
  watch?: boolean;
  /** Ends `--watch` (Ctrl-C in the real CLI). */
  signal?: AbortSignal;
}

// ---- formatting ----

export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '?';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '--';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

export function formatAgo(t: number | null, now = Date.now()): string {
  if (t === null) return 'never';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t).toISOString().slice(0, 16).replace('T', ' ');
}

function dest(j: { peer: string; inbox: string | null }): string {
  return j.inbox ? `${j.peer}/${j.inbox}` : j.peer;
}

/** Columns padded to the widest cell; the last column is not padded. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, [...c].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i]! - [...c].length))).join('  ')).join('\n') + '\n';
}

function peerAddress(p: PeerInfo): string {
  const a = p.addresses.length > 0 ? p.addresses.join(',') : '?';
  return `${a}:${p.port}${protocolMark(p.protocol)}`;
}

export function peersTable(peers: PeerInfo[], now = Date.now()): string {
  if (peers.length === 0) return 'no peers known (add "peers" to the config or turn on discovery)\n';
  const rows = [['NAME', 'ADDRESS', 'INBOXES', 'VERSION', 'STATE', 'LAST SEEN']];
  for (const p of peers) {
    rows.push([p.name + (p.source === 'self' ? ' (self)' : ''), peerAddress(p), p.inboxes.join(',') || '-', p.version ?? '-', p.state + (p.reason ? ` (${p.reason})` : ''), p.source === 'self' ? '-' : formatAgo(p.lastSeen, now)]);
  }
  return table(rows);
}

export function statusText(s: SnapshotView, h: HealthReport | null, now = Date.now()): string {
  const lines: string[] = [];
  const health = h ? (h.ok ? 'healthy' : 'PROBLEMS') : 'health unknown';
  lines.push(`${s.agent.name} (tdxfer ${s.agent.version}) listening ${s.agent.listen}, discovery ${s.agent.discovery}, up ${formatDuration((now - s.agent.startedAt) / 1000)}, ${health}`);
  for (const p of h?.problems ?? []) lines.push(`  ! ${p}`);
  lines.push('', 'peers:');
  lines.push(...peersTable(s.peers, now).trimEnd().split('\n').map((l) => `  ${l}`));
  if (s.queues.length > 0) {
    lines.push('', 'queues:');
    const rows = [['DESTINATION', 'QUEUED', 'SENDING', 'WAITING', 'FAILED']];
    for (const q of s.queues) rows.push([q.destination, String(q.queued), String(q.sending), String(q.waiting), String(q.failed)]);
    lines.push(...table(rows).trimEnd().split('\n').map((l) => `  ${l}`));
  }
  for (const o of s.outboxes ?? []) {
    const ex = o.excluded;
    if (ex && ex.count > 0) lines.push('', `outbox ${o.path}: ${ex.count} file(s) left out by include/exclude (${ex.names.join(', ')}${ex.count > ex.names.length ? ', …' : ''})`);
  }
  if (s.limits) {
    lines.push('', 'bandwidth:');
    lines.push(...limitsText(s.limits).trimEnd().split('\n').map((l) => `  ${l}`));
  }
  lines.push('', s.active.length > 0 ? 'active:' : 'active: nothing in flight');
  for (const j of s.active) {
    lines.push(`  ${j.target} → ${dest(j)}  ${j.state}  ${j.percent.toFixed(1)} %  ${formatBytes(j.bytesDone)}/${formatBytes(j.bytesTotal)}  ${j.rate > 0 ? `${formatBytes(j.rate)}/s` : ''}  ETA ${formatDuration(j.etaSeconds)}${j.error ? `  (${j.error})` : ''}`);
  }
  const incoming = s.incoming ?? [];
  lines.push('', incoming.length > 0 ? 'incoming:' : 'incoming: nothing arriving');
  for (const i of incoming) lines.push(`  ${incomingLine(i)}`);
  if ((s.held ?? []).length > 0) {
    lines.push('', 'held (waiting for another program to let go):');
    for (const h of s.held ?? []) lines.push(`  ${heldLine(h, now)}`);
  }
  if (s.recent.length > 0) {
    lines.push('', 'recent:');
    for (const j of s.recent.slice(0, 10)) lines.push(`  ${jobLine(j)}`);
  }
  if (s.received.length > 0) {
    lines.push('', 'received:');
    for (const r of s.received.slice(0, 10)) lines.push(`  ${receivedLine(r)}`);
  }
  if (s.failures.length > 0) {
    lines.push('', 'failures:');
    for (const f of s.failures.slice(0, 10)) lines.push(`  ${failureLine(f)}`);
  }
  return lines.join('\n') + '\n';
}

/** `↓ renders/take.mov ← render  receiving  67.5 %  270 MB/400 MB  52 MB/s  ETA 0:03  (resumed from 100 MB)` */
export function incomingLine(i: IncomingView): string {
  const total = i.bytesTotal === null ? '?' : formatBytes(i.bytesTotal);
  return (
    `↓ ${i.inbox}/${i.file} ← ${i.from}${protocolMark(i.via)}  ${i.state}  ${i.percent.toFixed(1)} %  ${formatBytes(i.bytesDone)}/${total}` +
    `${i.rate > 0 ? `  ${formatBytes(i.rate)}/s` : ''}  ETA ${formatDuration(i.etaSeconds)}${i.resumedFrom > 0 ? `  (resumed from ${formatBytes(i.resumedFrom)})` : ''}${i.error ? `  (${i.error})` : ''}`
  );
}

function jobLine(j: JobView): string {
  if (j.state === 'done') return `✓ ${j.landedAs ?? j.target} → ${dest(j)}  ${formatBytes(j.bytesTotal)}`;
  return `✗ ${j.target} → ${dest(j)}  ${j.error ?? 'failed'}`;
}

function receivedLine(r: ReceivedInfo): string {
  return `↓ ${r.inbox}/${r.file}  ${formatBytes(r.size)} from ${r.from}${protocolMark(r.via)}`;
}

function failureLine(f: FailureInfo): string {
  return `! ${f.reason}: ${f.message}${f.peer ? ` (${f.peer})` : ''}`;
}

// ---- commands ----

const guarded = withCliFailures;

export function statusCommand(o: StatusOptions, io: CliIo): Promise<number> {
  return guarded(io, async () => {
    const ep = await resolveEndpoint(o);
    if (o.watch) return watch(ep, o, io);
    const snapshot = await getJson<SnapshotView>(ep, '/status');
    if (o.json) {
      io.out.write(JSON.stringify(snapshot, null, 2) + '\n');
      return EXIT.ok;
    }
    const health = await getJson<HealthReport>(ep, '/health', { okStatuses: [503] }).catch(() => null);
    io.out.write(statusText(snapshot, health));
    return EXIT.ok;
  });
}

export function peersCommand(o: EndpointOptions & { json?: boolean }, io: CliIo): Promise<number> {
  return guarded(io, async () => {
    const ep = await resolveEndpoint(o);
    const snapshot = await getJson<SnapshotView>(ep, '/status');
    io.out.write(o.json ? JSON.stringify(snapshot.peers, null, 2) + '\n' : peersTable(snapshot.peers));
    return EXIT.ok;
  });
}

/**
 * Live view: one progress bar per active job (cli-progress multibar) on a terminal; plain
 * event lines when the output is not a terminal (pipes, logs, tests). Ends on `signal`
 * (exit 0) or when the agent goes away (exit 3).
 */
async function watch(ep: Endpoint, o: StatusOptions, io: CliIo): Promise<number> {
  const tty = io.out.isTTY === true;
  const controller = new AbortController();
  const onAbort = (): void => controller.abort();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  if (o.signal?.aborted) controller.abort();
  // The event stream is opened before the snapshot is taken, so nothing that happens in
  // between is lost; once the header line is printed, every later event will be shown.
  let res: Response;
  let snapshot: SnapshotView;
  try {
    res = await request(ep, '/events', controller.signal);
    if (!res.ok || !res.body) throw httpFailure(ep, res.status, await res.text());
    snapshot = await getJson<SnapshotView>(ep, '/status');
  } catch (err) {
    o.signal?.removeEventListener('abort', onAbort);
    controller.abort();
    if (o.signal?.aborted) return EXIT.ok;
    throw err;
  }
  const bars = new Map<string, SingleBar>();
  const multibar = tty
    ? new MultiBar({
        stream: io.out as NodeJS.WritableStream,
        format: ' {bar} {percentage}% | {file} → {dest} | {rateText} | ETA {etaText}',
        hideCursor: true,
        clearOnComplete: false,
        gracefulExit: false,
        autopadding: true,
        barsize: 24,
        barCompleteChar: '\u2588',
        barIncompleteChar: '\u2591',
      })
    : null;
  const say = (line: string): void => {
    if (multibar && multibar.isActive) multibar.log(`${line}\n`);
    else io.out.write(`${line}\n`);
  };
  const payload = (j: JobView): Record<string, string> => ({
    file: j.target,
    dest: dest(j),
    rateText: j.rate > 0 ? `${formatBytes(j.rate)}/s` : '-',
    etaText: formatDuration(j.etaSeconds),
  });
  const lastPrinted = new Map<string, number>();
  const showJob = (j: JobView): void => {
    if (j.state === 'done' || j.state === 'failed') {
      const bar = bars.get(j.id);
      if (bar && multibar) {
        if (j.state === 'done') bar.update(bar.getTotal(), payload(j));
        multibar.remove(bar);
      }
      bars.delete(j.id);
      lastPrinted.delete(j.id);
      say(jobLine(j));
      return;
    }
    if (multibar) {
      const total = Math.max(1, j.bytesTotal);
      const bar = bars.get(j.id);
      if (bar) {
        bar.setTotal(total);
        bar.update(j.bytesDone, payload(j));
      } else bars.set(j.id, multibar.create(total, j.bytesDone, payload(j)));
      return;
    }
    // Plain output: a line per state change and at most one progress line per 10 %.
    const step = Math.floor(j.percent / 10);
    if (lastPrinted.get(j.id) !== step || !lastPrinted.has(j.id)) {
      lastPrinted.set(j.id, step);
      say(`… ${j.target} → ${dest(j)}  ${j.state}  ${j.percent.toFixed(1)} %${j.rate > 0 ? `  ${formatBytes(j.rate)}/s` : ''}  ETA ${formatDuration(j.etaSeconds)}`);
    }
  };

  const inPrinted = new Map<string, number>();
  const showIncoming = (i: IncomingView): void => {
    const key = `in:${i.id}`;
    if (i.state !== 'receiving') {
      const bar = bars.get(key);
      if (bar && multibar) multibar.remove(bar);
      bars.delete(key);
      inPrinted.delete(key);
      if (i.state !== 'verifying') say(i.state === 'done' ? `↓ ${i.inbox}/${i.landedAs ?? i.file} ← ${i.from} received` : incomingLine(i));
      return;
    }
    if (multibar) {
      const total = Math.max(1, i.bytesTotal ?? i.bytesDone);
      const p = { file: i.file, dest: `${i.inbox} (from ${i.from})`, rateText: i.rate > 0 ? `${formatBytes(i.rate)}/s` : '-', etaText: formatDuration(i.etaSeconds) };
      const bar = bars.get(key);
      if (bar) {
        bar.setTotal(total);
        bar.update(i.bytesDone, p);
      } else bars.set(key, multibar.create(total, i.bytesDone, p));
      return;
    }
    const step = Math.floor(i.percent / 10);
    if (inPrinted.get(key) !== step) {
      inPrinted.set(key, step);
      say(incomingLine(i));
    }
  };

  io.out.write(`${snapshot.agent.name} at ${ep.url} — peers: ${snapshot.peers.map((p) => `${p.name} ${p.state}`).join(', ') || 'none'}\n`);
  for (const j of snapshot.active) showJob(j);
  for (const i of snapshot.incoming ?? []) showIncoming(i);

  let code: number = EXIT.ok;
  try {
    for await (const ev of readSse(res.body as AsyncIterable<Uint8Array>)) {
      const data = JSON.parse(ev.data) as unknown;
      if (ev.event === 'job' || ev.event === 'progress') showJob(data as JobView);
      else if (ev.event === 'peer') {
        const p = data as PeerInfo;
        say(`peer ${p.name} ${p.state} (${peerAddress(p)})`);
      } else if (ev.event === 'received') say(receivedLine(data as ReceivedInfo));
      else if (ev.event === 'failure') say(failureLine(data as FailureInfo));
      else if (ev.event === 'incoming') showIncoming(data as IncomingView);
    }
    if (!controller.signal.aborted) {
      io.err.write(`the agent at ${ep.url} closed the event stream (stopped?)\n`);
      code = EXIT.notRunning;
    }
  } catch (err) {
    if (!controller.signal.aborted) {
      if (err instanceof CliFailure) {
        io.err.write(`${err.message}\n`);
        code = err.exitCode;
      } else {
        io.err.write(`lost the agent at ${ep.url}: ${(err as Error).message}\n`);
        code = EXIT.notRunning;
      }
    }
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    multibar?.stop();
  }
  return code;
}

const CONFIG_HELP = 'config file (default: $TDXFER_CONFIG, else built-in defaults); gives the status address';

export function registerStatusCommands(program: Command): void {
  const io: CliIo = { out: process.stdout, err: process.stderr };
  program
    .command('status')
    .description('show a running agent: peers, queues, transfers in flight, recent files (exit 3 if no agent answers)')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--url <url>', 'status API address instead of the config (e.g. http://10.0.0.12:7771)')
    .option('--token <token>', 'status API token (default: $TDXFER_STATUS_TOKEN, else status.token of the config)')
    .option('-w, --watch', 'follow live: a progress bar per transfer, peer and file events, until Ctrl-C')
    .option('--json', 'print the raw /status JSON')
    .action(async (o: StatusOptions) => {
      const controller = new AbortController();
      const stop = (): void => controller.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        process.exitCode = await statusCommand({ ...o, signal: controller.signal }, io);
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
  program
    .command('peers')
    .description('list the peers a running agent knows: name, address, inboxes, version, state, last seen')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--url <url>', 'status API address instead of the config')
    .option('--token <token>', 'status API token (default: $TDXFER_STATUS_TOKEN, else status.token of the config)')
    .option('--json', 'print the peers as JSON')
    .action(async (o: EndpointOptions & { json?: boolean }) => {
      process.exitCode = await peersCommand(o, io);
    });
}
