/**
 * Activity summary for quiet logs (issue #20 item 2). With `log.level: "warn"` the per-file
 * `received …`/`sent …` INFO lines are gone; an operator still needs to see that files move.
 * Once a minute, and only if something moved, one WARN-level line per direction:
 *   `activity: received 312 files (41.2 MB) in the last 60 s from render-1 (300), render-2 (12)`
 *   `activity: sent 5 files (100.0 MB) in the last 60 s to playback-1 (5)`
 * At `info`/`debug` nothing is added (the per-file lines say it all). Memory is bounded by the
 * number of peers seen within one interval, never by the number of files.
 */
import type { EventEmitter } from 'node:events';
import type { JobInfo, ReceivedInfo } from './agent/model.js';
import type { Logger, LogLevel } from './log.js';

interface Direction { files: number; bytes: number; peers: Map<string, number> }

/** Pure tally of one interval. */
export class ActivityTally {
  private received: Direction = fresh();
  private sent: Direction = fresh();
  private sentIds = new Set<string>();

  addReceived(peer: string, bytes: number): void { add(this.received, peer, bytes); }

  /** Counts a job once, the first time it is seen `done` in this interval. */
  addSent(id: string, peer: string, bytes: number): void {
    if (this.sentIds.has(id)) return;
    this.sentIds.add(id);
    add(this.sent, peer, bytes);
  }

  /** The summary lines for the interval just ended (none if nothing moved), and a fresh interval. */
  flush(seconds: number): string[] {
    const lines: string[] = [];
    if (this.received.files > 0) lines.push(line('received', 'from', this.received, seconds));
    if (this.sent.files > 0) lines.push(line('sent', 'to', this.sent, seconds));
    this.received = fresh();
    this.sent = fresh();
    this.sentIds.clear();
    return lines;
  }
}

function fresh(): Direction { return { files: 0, bytes: 0, peers: new Map() }; }

function add(d: Direction, peer: string, bytes: number): void {
  d.files += 1;
  d.bytes += bytes;
  d.peers.set(peer, (d.peers.get(peer) ?? 0) + 1);
}

function line(verb: string, prep: string, d: Direction, seconds: number): string {
  const peers = [...d.peers].sort((a, b) => b[1] - a[1]);
  const shown = peers.slice(0, 5).map(([p, n]) => `${p} (${n})`);
  if (peers.length > 5) shown.push(`${peers.length - 5} more`);
  return `activity: ${verb} ${d.files} file${d.files === 1 ? '' : 's'} (${(d.bytes / 1e6).toFixed(1)} MB) in the last ${Math.round(seconds)} s ${prep} ${shown.join(', ')}`;
}

/**
 * Subscribes to an agent's `received` and `job` events and logs the summary every `intervalMs`
 * when `level` is `warn` or `error`. Returns the stop function (which flushes the last interval).
 */
export function startActivitySummary(agent: EventEmitter, log: Logger, level: LogLevel, intervalMs = 60_000): () => void {
  if (level !== 'warn' && level !== 'error') return () => undefined;
  const tally = new ActivityTally();
  let since = Date.now();
  const flush = () => {
    const now = Date.now();
    for (const l of tally.flush((now - since) / 1000)) log.warn(l);
    since = now;
  };
  const onReceived = (r: ReceivedInfo) => tally.addReceived(r.from, r.size);
  const onJob = (j: JobInfo) => { if (j.state === 'done') tally.addSent(j.id, j.peer, j.bytesTotal); };
  agent.on('received', onReceived);
  agent.on('job', onJob);
  const timer = setInterval(flush, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    agent.off('received', onReceived);
    agent.off('job', onJob);
    flush();
  };
}
