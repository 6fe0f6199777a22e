/**
 * The status view's pieces computed from the agent's state: per-destination queue
 * counts, per-outbox pending/sending/stuck files, folder health and the limit
 * requests' validation. Read-only over what it is given; the agent (agent.ts) puts
 * them together into AgentSnapshot and HealthReport (agent/model.ts).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { OutboxConfig } from '../config/types.js';
import { TdxError } from '../errors.js';
import type { Inbox } from '../inbox/inbox.js';
import type { OutboxWatcher } from '../outbox/index.js';
import type { DestinationQueue, Job } from '../transfer/destination.js';
import type { SendResult } from '../transfer/sender.js';
import type { Destination } from '../routing.js';
import type { Logger } from '../log.js';
import type { LimitsSnapshot, Pacer } from '../limits/pacer.js';
import { formatRate } from '../limits/rate.js';
import { NAME_PATTERN } from '../config/schema.js';
import type { AgentSnapshot, HealthReport, LimitRequest, OutboxInfo } from '../types.js';
import type { FileRecord } from './dispatch.js';
import type { WaitingCount } from './admission.js';

/** `waiting`: outbox files not yet admitted (agent/admission.ts), counted as queued for their destinations. */
export function queueCounts(destinations: Iterable<DestinationQueue>, waiting: ReadonlyMap<string, WaitingCount> = new Map()): AgentSnapshot['queues'] {
  const rows = [...destinations].map((q) => {
    const c = { queued: waiting.get(q.dest.key)?.files ?? 0, sending: 0, waiting: 0, failed: 0 };
    for (const j of q.jobs) if (j.info.state in c) c[j.info.state as keyof typeof c]++;
    return { destination: q.dest.key, peer: q.dest.peer, inbox: q.dest.inbox, ...c };
  });
  for (const [key, w] of waiting) {
    if (!rows.some((r) => r.destination === key)) rows.push({ destination: key, peer: w.peer, inbox: w.inbox, queued: w.files, sending: 0, waiting: 0, failed: 0 });
  }
  return rows;
}

/** `waiting(ob)`: files of `ob` not yet admitted (agent/admission.ts), counted as pending. */
export function outboxList(outboxes: readonly OutboxConfig[], records: Iterable<FileRecord>, watchers: readonly OutboxWatcher[], waiting: (ob: OutboxConfig) => number = () => 0): OutboxInfo[] {
  const by = new Map<OutboxConfig, OutboxInfo>(outboxes.map((ob) => [ob, { path: ob.path, pending: waiting(ob), sending: 0, stuck: [] }]));
  for (const rec of records) {
    const o = by.get(rec.file.outbox);
    if (!o || rec.superseded) continue;
    if (rec.remaining.size > 0) o.pending++;
    for (const j of rec.jobs.values()) {
      const i = j.info;
      if (i.state === 'sending') o.sending++;
      const stuck = i.state === 'failed' || (i.state === 'waiting' && i.error !== null) || (i.state === 'queued' && i.error !== null);
      if (stuck && o.stuck.length < 50) o.stuck.push({ file: i.file, peer: i.peer, inbox: i.inbox, state: i.state, error: i.error, attempts: i.attempts, queuedAt: i.queuedAt });
    }
  }
  for (const w of watchers) {
    const o = by.get(w.outbox);
    if (!o) continue;
    o.unreadable = w.unreadableFiles().slice(0, 50).map((u) => ({ file: u.rel, path: u.abs, code: u.code, fix: u.fix }));
    o.excluded = w.excludedFiles();
  }
  return [...by.values()];
}

/** Inbox and outbox folders (exists, writable) and the problems found in them. */
export async function folderHealth(
  inboxes: Iterable<Inbox>,
  outboxes: readonly OutboxConfig[],
  watchers: readonly OutboxWatcher[],
): Promise<{ folders: HealthReport['folders']; problems: string[] }> {
  const folders: HealthReport['folders'] = [];
  const problems: string[] = [];
  for (const inbox of inboxes) {
    const h = await inbox.health();
    folders.push({ kind: 'inbox', name: inbox.name, path: inbox.path, ...h });
    if (!h.exists || !h.writable) problems.push(`inbox "${inbox.name}" (${inbox.path}) is ${h.exists ? 'not writable' : 'missing'}`);
  }
  for (const ob of outboxes) {
    let exists = false;
    let writable = false;
    try {
      exists = (await fs.stat(ob.path)).isDirectory();
      await fs.access(ob.path, fs.constants.W_OK);
      writable = true;
    } catch {
      /* reported below */
    }
    folders.push({ kind: 'outbox', name: path.basename(ob.path), path: ob.path, exists, writable, freeBytes: null });
    if (!exists || !writable) problems.push(`outbox ${ob.path} is ${exists ? 'not writable' : 'missing'}`);
  }
  for (const w of watchers) {
    for (const l of w.skippedLinks()) {
      problems.push(`outbox ${w.root}: symlink ${l.rel} -> ${l.target} is not sent (links are not followed; put the file itself there, or set outboxes[].followSymlinks)`);
    }
    for (const u of w.unreadableFiles()) problems.push(`outbox ${w.root}: ${u.abs} is not readable (${u.code}) and is not sent: ${u.fix}`);
  }
  return { folders, problems };
}

/** POST /limits, `tdxfer limit`: checks the request, applies it to the pacer (from the next slice of every running transfer), logs it. */
export function applyLimit(pacer: Pacer, req: LimitRequest, log: Logger): LimitsSnapshot {
  checkLimitRequest(req);
  const rate = req.maxBytesPerSecond;
  if (req.peer !== undefined) {
    pacer.setPeer(req.peer, rate);
    log.info(`bandwidth limit to peer ${req.peer}: ${formatRate(rate)}`);
  } else if (req.direction === 'incoming') {
    pacer.setIncoming(rate);
    log.info(`incoming bandwidth limit: ${formatRate(rate)}`);
  } else {
    pacer.setOutgoing(rate);
    log.info(`outgoing bandwidth limit: ${formatRate(rate)}`);
  }
  return pacer.snapshot();
}

/** The log line of a file one destination confirmed (`now`: the agent's clock, ms since the epoch). */
export function logSent(log: Logger, rec: FileRecord, d: Destination, job: Job, r: SendResult, now: number): void {
  const secs = Math.max(0.001, (now - (job.info.startedAt ?? now)) / 1000);
  // The receiver may have landed it under another name (a collision rename, or a name Windows cannot hold: CON.png → _CON.png).
  const renamed = r.path && r.path !== job.target ? ` as ${r.path}` : '';
  log.info(`sent ${rec.file.rel} to ${d.peer}/${d.inbox ?? ''}${renamed}${r.status !== 'stored' ? ` (${r.status} by receiver)` : ''}`, {
    size: rec.file.size, ms: Math.round(secs * 1000), MBps: (r.bytesSent / 1e6 / secs).toFixed(1), ...(r.resumedFrom ? { resumedFrom: r.resumedFrom } : {}),
  });
}

/** Checks a POST /limits request; throws a TdxError saying what is wrong. */
export function checkLimitRequest(req: LimitRequest): void {
  const rate = req.maxBytesPerSecond;
  if (!Number.isSafeInteger(rate) || rate < 0) throw new TdxError('BAD_RATE', `maxBytesPerSecond must be a whole number of bytes per second, 0 for unlimited; got ${JSON.stringify(rate)}`);
  if (req.peer !== undefined) {
    if (!new RegExp(NAME_PATTERN).test(req.peer)) throw new TdxError('BAD_REQUEST', `peer ${JSON.stringify(req.peer)} is not a valid peer name`);
    if (req.direction === 'incoming') throw new TdxError('BAD_REQUEST', 'a peer limit is for outgoing transfers; the incoming limit is agent-wide (leave out peer)');
  }
}
