/**
 * The agent's observable model: what the status API, CLI, OSC triggers and metrics
 * read. Produced by the composition root (src/agent/agent.ts); consumers only see
 * `AgentView`.
 */
import type { LimitsSnapshot } from '../limits/pacer.js';
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
}

export interface ReceivedInfo {
  inbox: string;
  /** Relative path inside the inbox ('/'-separated) and absolute path. */
  file: string;
  path: string;
  size: number;
  sha256: string | null;
  from: string;
  /** 'tdxfer' or 'legacy'. */
  via: 'tdxfer' | 'legacy';
  durationMs: number;
  at: number;
}

export interface FailureInfo {
  /** A short stable reason code, e.g. CONNECT_FAILED, HASH_MISMATCH, NO_SPACE. */
  reason: string;
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
  /** Bandwidth limits and measured rates (limits/pacer.ts). */
  limits?: LimitsSnapshot;
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
}

export interface AgentView extends EventEmitter<AgentEvents> {
  snapshot(): AgentSnapshot;
  health(): Promise<HealthReport>;
  /** Queue an existing file (the TOX's QueueJob). Rejects with a TdxError (code + message) on bad input. */
  send(req: SendRequest): Promise<JobInfo>;
  job(id: string): JobInfo | undefined;
  /** Change a bandwidth limit now; rejects with a TdxError on bad input. */
  setLimit?(req: LimitRequest): LimitsSnapshot;
}
