/**
 * Core domain types (was src/agent/model.ts, moved so lower layers need not import from agent/):
 * the agent's observable model, what the status API, CLI, OSC triggers and metrics read. Produced by the composition root (src/agent/agent.ts); consumers only see
 * `AgentView`.
 */
import type { ReportedCode } from './errors.js';
import type { LimitsSnapshot } from './limits/pacer.js';
import type { EventEmitter } from 'node:events';

export type JobState = 'waiting' | 'queued' | 'sending' | 'done' | 'failed';

export interface JobInfo {
  id: string;
  /** Outbox root (absolute) and path relative to it ('/'-separated). */
  outbox: string;
  file: string;
  /** Absolute source path. */
  source: string;
  peer: string;
  inbox: string | null;
  /** Name the file will have at the receiver (relative, '/'-separated). */
  target: string;
  state: JobState;
  bytesDone: number;
  bytesTotal: number;
  /** Bytes per second over the last second or so (0 when idle). */
  rate: number;
  attempts: number;
  queuedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** Last error (state failed/waiting-after-failure), human readable. */
  error: string | null;
  /** Where the receiver put it (relative path at the receiver), once done. */
  landedAs: string | null;
  /** 'outbox' (a file in a watched outbox) or 'send' (queued with POST /send: journalled, cancellable). */
  kind?: 'outbox' | 'send';
  /**
   * The caller's own id for a job queued with `POST /send` (`clientId`), echoed in every
   * job/progress event so a client that named the job before the answer arrived (the
   * TouchDesigner module's `QueueJob`) can follow it. Absent for outbox jobs.
   */
  clientId?: string;
}

export type PeerState = 'up' | 'unreachable' | 'gone';

export interface PeerInfo {
  id: string | null;
  name: string;
  /** 'static' (config), 'discovered' (mDNS), 'self'. */
  source: 'static' | 'discovered' | 'self';
  protocol: 'tdxfer' | 'legacy';
  addresses: string[];
  port: number;
  inboxes: string[];
  version: string | null;
  state: PeerState;
  lastSeen: number | null;
  /**
   * Why the peer cannot be used, in a few words ("other installation key", "encryption
   * setting differs", "refused: too many connections", ...); null when nothing is known wrong.
   */
  reason?: string | null;
}

export interface ReceivedInfo {
  inbox: string;
  /** Relative path inside the inbox ('/'-separated) and absolute path. */
  file: string;
  path: string;
  size: number;
  /** The verified SHA-256 when the file was checked with SHA-256 (legacy, peers before v1.1, security.hashes), else null. */
  sha256: string | null;
  /** The verified digest (lowercase hex) in `hashAlg`, the algorithm the connection negotiated ("sha256" or "xxh3-128"). */
  hash?: string | null;
  hashAlg?: string | null;
  from: string;
  /** 'tdxfer' or 'legacy'. */
  via: 'tdxfer' | 'legacy';
  durationMs: number;
  at: number;
  /**
   * True when the agent died between the landing and its announcement and this is the
   * announcement after the restart (sent once; `durationMs` is 0, `at` is when it landed).
   */
  recovered?: boolean;
}

/** A file being received into one of this agent's inboxes (issue #11 item 2). */
export interface IncomingInfo {
  id: string;
  inbox: string;
  /** Path inside the inbox as offered ('/'-separated). */
  file: string;
  /** Sending agent's name (or address). */
  from: string;
  via: 'tdxfer' | 'legacy';
  /** receiving → verifying (hash, fsync, rename) → done; or interrupted (partial kept for resume) / failed. */
  state: 'receiving' | 'verifying' | 'done' | 'interrupted' | 'failed';
  /** Bytes of the file on disk (including resumed ones). */
  bytesDone: number;
  /** Offered size; null when the sender does not say (legacy TOX). */
  bytesTotal: number | null;
  /** Bytes per second over the last second or so. */
  rate: number;
  /** Bytes kept from an earlier, interrupted attempt (0 for a fresh file). */
  resumedFrom: number;
  startedAt: number;
  updatedAt: number;
  error: string | null;
  /** Name it landed under (e.g. renamed on a collision), once done. */
  landedAs: string | null;
}

export interface FailureInfo {
  /** A short stable reason code, e.g. CONNECT_FAILED, HASH_MISMATCH, NO_SPACE (src/errors.ts ERROR_CODES; a newer peer may send one this agent does not know). */
  reason: ReportedCode;
  message: string;
  peer: string | null;
  at: number;
}

/** Events emitted by `AgentView`. Progress events are emitted at most ~10/s per job. */
export interface AgentEvents {
  job: [JobInfo];
  progress: [JobInfo];
  peer: [PeerInfo];
  received: [ReceivedInfo];
  failure: [FailureInfo];
  /** An incoming transfer started, progressed (at most ~10/s) or ended. */
  incoming: [IncomingInfo];
  /** An inbox target is held open by another program (each failed landing attempt), or no longer (replaced or landed beside it). */
  held: [HeldChange];
}

export interface AgentSnapshot {
  agent: { id: string; name: string; version: string; listen: string; startedAt: number; discovery: 'off' | 'on' | 'error' };
  peers: PeerInfo[];
  /** Per destination ("peer/inbox"): counts by state. */
  queues: Array<{ destination: string; peer: string; inbox: string | null; queued: number; sending: number; waiting: number; failed: number }>;
  active: JobInfo[];
  recent: JobInfo[];
  received: ReceivedInfo[];
  failures: FailureInfo[];
  /** Files being received right now. */
  incoming?: IncomingInfo[];
  /** Per configured outbox: files still to send and the ones stuck (waiting after an error, or refused for good). */
  outboxes?: OutboxInfo[];
  /** Bandwidth limits and measured rates (limits/pacer.ts). */
  limits?: LimitsSnapshot;
  /** Inbox files another program holds open, whose verified new version waits staged (inbox/held.ts). */
  held?: HeldFile[];
}

export interface OutboxInfo {
  path: string;
  /** Files not yet delivered everywhere (queued, waiting or sending). */
  pending: number;
  sending: number;
  /** At most 50: a job waiting after an error (retried with backoff) or refused for good (it stays in the outbox). */
  stuck: Array<{ file: string; peer: string; inbox: string | null; state: JobState; error: string | null; attempts: number; queuedAt: number }>;
  /** Files the agent's user may not read (they are not sent, and /health is degraded, until they are readable). */
  unreadable?: Array<{ file: string; path: string; code: string; fix: string }>;
  /** Files left in the outbox by include/exclude: how many (counted up to 1000) and the first few names. */
  excluded?: { count: number; names: string[] };
}

/** A change of one bandwidth limit at runtime (POST /limits, `tdxfer limit`). */
export interface LimitRequest {
  /** Bytes per second, 0 = unlimited. */
  maxBytesPerSecond: number;
  /** A peer's outgoing cap (static or discovered, by name); absent: agent-wide. */
  peer?: string | undefined;
  /** Agent-wide outgoing (default) or incoming; not with `peer`. */
  direction?: 'outgoing' | 'incoming' | undefined;
}

export interface HealthReport {
  ok: boolean;
  uptimeSeconds: number;
  version: string;
  listen: string;
  discovery: 'off' | 'on' | 'error';
  folders: Array<{ kind: 'inbox' | 'outbox'; name: string; path: string; exists: boolean; writable: boolean; freeBytes: number | null }>;
  problems: string[];
}

export interface SendRequest {
  /** Absolute path of an existing file (or relative to an outbox? no: absolute or cwd-relative). */
  file: string;
  peer: string;
  inbox?: string | undefined;
  /** Target name at the receiver (relative, '/'-separated); default the base name. */
  as?: string | undefined;
  /** The caller's id for this job, echoed as `JobInfo.clientId` (see there). */
  clientId?: string | undefined;
}

export interface AgentView extends EventEmitter<AgentEvents> {
  snapshot(): AgentSnapshot;
  health(): Promise<HealthReport>;
  /** Queue an existing file (the TOX's QueueJob). Rejects with a TdxError (code + message) on bad input. */
  send(req: SendRequest): Promise<JobInfo>;
  job(id: string): JobInfo | undefined;
  /** Jobs not finished yet (queued, waiting, sending), oldest first. */
  openJobs(): JobInfo[];
  /**
   * Cancel a job queued with `send()`: it is removed from the job journal at once and not
   * retried. Rejects with a TdxError: NOT_FOUND (no such open job), NOT_CANCELLABLE (an
   * outbox file: remove the file from its outbox instead).
   */
  cancel(id: string): Promise<JobInfo>;
  /** Change a bandwidth limit now; rejects with a TdxError on bad input. */
  setLimit?(req: LimitRequest): LimitsSnapshot;
  /**
   * Called by a `received` listener during the event: the agent's stop waits for `until`
   * (OSC: its datagrams sent) before closing the parts. The landing itself is marked
   * announced in the journal before the event, write-ahead (agent/announce.ts).
   */
  holdAnnouncement?(info: ReceivedInfo, until: Promise<unknown>): void;
  /**
   * Work for each landing to start before its journal mark (`prepare`, which may return a
   * function) and let go right after it (that function), in the announcement's synchronous
   * step, in the order added: OSC encodes /tdxfer/received, then sends it; the onReceive
   * hook forks its gated process, then releases it. Returns the removal.
   */
  prepareAnnouncement?(prepare: (info: ReceivedInfo) => (() => void) | undefined): () => void;
}

/** A held target's change: `held` on each landing attempt it blocks, `released` once its new version landed. */
export interface HeldChange {
  state: 'held' | 'released';
  file: HeldFile;
  /** When this change happened (ms since the epoch). */
  atMs: number;
}

/** One held target, as shown in the status. */
export interface HeldFile {
  inbox: string;
  /** The file's path inside the inbox, `/`-separated. */
  rel: string;
  /** Absolute path of the held file. */
  path: string;
  /** When the first rename over it failed (ms since the epoch). */
  sinceMs: number;
  /** The error that shows the hold: EPERM, EBUSY or EACCES. */
  code: string;
  /** Who probably holds it (Windows cannot tell us which process). */
  likelyHolder: string;
}
