/**
 * Explicit jobs: files queued with POST /send (the TOX's QueueJob), journalled in the
 * JobStore until done, refused for good or cancelled. The checks a request passes
 * before it is journalled, and the records and job views built from a stored job;
 * the agent (agent.ts) journals and queues them.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { OutboxConfig } from '../config/types.js';
import { TdxError } from '../errors.js';
import { needsInbox } from '../config/protocols.js';
import { resolveRoutes, selectPeers, type Destination } from '../routing.js';
import { sanitizeRelPath, toWirePath } from '../names.js';
import type { ReadyFile } from '../outbox/index.js';
import type { Job } from '../transfer/destination.js';
import type { JobInfo, PeerInfo, SendRequest } from '../types.js';
import type { StoredJob } from './jobstore.js';
import type { DispatchContext, FileRecord } from './dispatch.js';

/** Size and mtime of a file to queue, or a TdxError saying why it cannot be sent. */
export async function statSource(abs: string): Promise<{ size: number; mtimeMs: number }> {
  let st;
  try {
    st = await fs.stat(abs);
  } catch {
    throw new TdxError('NO_SUCH_FILE', `file not found: ${abs} (give an absolute path on the agent's machine)`);
  }
  if (!st.isFile()) throw new TdxError('NOT_A_FILE', `${abs} is not a regular file`);
  return { size: st.size, mtimeMs: st.mtimeMs };
}

/** The destination of a POST /send request, or a TdxError (UNKNOWN_PEER, NO_SUCH_INBOX). */
export function sendDestination(req: SendRequest, peers: readonly PeerInfo[], ctx: DispatchContext): Destination {
  const inbox = req.inbox ?? null;
  const { destinations, waiting } = resolveRoutes([{ peer: req.peer, inbox: req.inbox }], peers, ctx);
  const d = destinations[0];
  if (!d) throw new TdxError('UNKNOWN_PEER', waiting[0]?.reason ?? `peer ${req.peer} unknown`);
  // A misspelled inbox is refused now when the peer is known to lack it, instead of a
  // job that is retried forever. Peers whose inboxes are not known yet (a static peer
  // never reached) get the job; the receiver refuses it then (NO_SUCH_INBOX, final).
  if (inbox !== null && needsInbox(d.protocol)) {
    const known = selectPeers(d.peerKey, peers)[0];
    if (known && known.inboxes.length > 0 && !known.inboxes.includes(inbox)) {
      throw new TdxError('NO_SUCH_INBOX', `${known.name} has no inbox "${inbox}" (its inboxes: ${known.inboxes.join(', ')}); check the spelling`);
    }
  }
  return d;
}

/**
 * The target name of a POST /send request ('/'-separated). A bad name is refused here,
 * so a TouchDesigner script gets the reason at once instead of a job that fails at the receiver.
 */
export function sendTarget(req: SendRequest, abs: string): string {
  const wanted = req.as ?? path.basename(abs);
  const named = sanitizeRelPath(toWirePath(wanted));
  if (!named.ok) throw new TdxError('BAD_NAME', `target name ${JSON.stringify(wanted)} is not a safe relative file name: ${named.reason}`);
  return named.rel;
}

/** The record of a stored job: a one-file pseudo outbox with after=keep. */
export function explicitRecord(sj: StoredJob, st: { size: number; mtimeMs: number }): FileRecord {
  const pseudo: OutboxConfig = { path: path.dirname(sj.file), to: [{ peer: sj.peer, inbox: sj.inbox ?? undefined }], include: [], exclude: [], after: 'keep', settleMs: 0 };
  const file: ReadyFile = { outbox: pseudo, rel: path.basename(sj.file), abs: sj.file, size: st.size, mtimeMs: st.mtimeMs };
  return { key: `send\0${sj.id}`, file, remaining: new Set(), jobs: new Map(), superseded: false, failed: false, multi: false, fanout: [], explicit: true };
}

/** A job view of a stored job that never got queued (its source is gone). */
export function blankInfo(sj: StoredJob, size: number): JobInfo {
  return {
    id: sj.id, outbox: path.dirname(sj.file), file: path.basename(sj.file), source: sj.file, peer: sj.peer, inbox: sj.inbox, target: sj.target,
    state: 'queued', bytesDone: 0, bytesTotal: size, rate: 0, attempts: 0, queuedAt: sj.queuedAt, startedAt: null, finishedAt: null, error: null, landedAs: null, kind: 'send',
  };
}

/** Why `cancel(id)` refuses: `job` open (outbox jobs are not cancellable) or not (finished, unknown). Null: it may be cancelled. */
export function cancelRefusal(id: string, job: Job | undefined, finished: JobInfo | undefined): TdxError | null {
  if (!job) {
    return new TdxError(finished ? 'ALREADY_FINISHED' : 'NOT_FOUND', finished ? `job ${id} already ${finished.state === 'done' ? 'finished' : 'failed'}: nothing to cancel` : `no open job with id "${id}" (tdxfer jobs lists them)`);
  }
  if (job.info.kind !== 'send') {
    return new TdxError('NOT_CANCELLABLE', `job ${id} sends ${job.info.source} from an outbox: remove the file from the outbox to stop it being sent`);
  }
  return null;
}

/** The final view of a cancelled job. */
export function cancelledInfo(job: Job, now: number): JobInfo {
  const wasSending = job.info.state === 'sending';
  return {
    ...job.info,
    state: 'failed',
    error: wasSending ? 'cancelled by the operator (while sending: the transfer in flight may still complete, it is not retried)' : 'cancelled by the operator',
    finishedAt: now,
  };
}
