/**
 * The sending side's wiring: a DestinationQueue per destination (peer + inbox), built
 * from the config with the agent's pacer and peer board. The queue picks its protocol
 * (FileSender, transfer/file-sender.ts) itself.
 */
import type { AgentConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { Pacer } from '../limits/pacer.js';
import { selectPeers, type Destination } from '../routing.js';
import { peerReason } from '../discovery/reasons.js';
import { DestinationQueue, type Job } from '../transfer/destination.js';
import type { SendSources } from '../transfer/sources.js';
import type { PeerInfo } from '../types.js';
import type { PeerBoard } from './peers.js';
import type { ReportedCode } from '../errors.js';
import type { Clock } from '../clock.js';

export interface SenderContext {
  cfg: AgentConfig;
  log: Logger;
  self: { id: string; name: string; software: string };
  /** Where this agent listens (routes to itself connect there). */
  listen: () => { host: string; port: number };
  pacer: Pacer;
  /** Agent-wide read buffers, shared reads and eager-file budget. */
  sources: SendSources;
  peers: PeerBoard;
  onJobChange: (job: Job) => void;
  onProgress: (job: Job) => void;
  onFailure: (reason: ReportedCode, message: string, peer: string | null) => void;
  /** The agent's clock: jobs' startedAt / finishedAt. */
  clock: Clock;
}

/** The peer a destination sends to now; this agent itself is reached on loopback. */
export function resolvePeer(d: Destination, peers: readonly PeerInfo[], listen: { host: string; port: number }): PeerInfo | null {
  const p = selectPeers(d.peerKey, peers)[0] ?? null;
  if (p?.source === 'self') {
    const h = listen.host;
    const local = h === '0.0.0.0' || h === '::' || h === '' ? '127.0.0.1' : h;
    return { ...p, addresses: [local], port: listen.port };
  }
  return p;
}

export function newDestinationQueue(d: Destination, ctx: SenderContext): DestinationQueue {
  const { cfg, peers } = ctx;
  const table = peers.table;
  return new DestinationQueue(d, {
    log: ctx.log.child({ component: 'sender' }),
    resolvePeer: () => resolvePeer(d, table.snapshot(), ctx.listen()),
    connectBase: {
      key: cfg.security.key,
      encrypt: cfg.security.encrypt,
      self: ctx.self,
      connectTimeoutMs: Math.min(10_000, cfg.limits.handshakeTimeoutMs),
      handshakeTimeoutMs: cfg.limits.handshakeTimeoutMs,
      idleTimeoutMs: cfg.limits.idleTimeoutMs,
      chunkBytes: cfg.transfer.chunkBytes,
      pace: ctx.pacer.forPeer(d.peer),
      hashes: cfg.security.hashes,
      sources: ctx.sources,
    },
    window: cfg.transfer.window,
    connections: cfg.transfer.connections,
    retryInitialMs: cfg.transfer.retryInitialMs,
    retryMaxMs: cfg.transfer.retryMaxMs,
    onJobChange: ctx.onJobChange,
    now: () => ctx.clock.now(),
    onProgress: ctx.onProgress,
    onPeerInboxes: (inboxes) => table.learnInboxes(d.peerKey, inboxes),
    onLinkProblem: (code, message) => peers.noteReason(d.peerKey, peerReason(code, message)),
    onReachability: (up, why) => {
      if (up) {
        peers.noteReason(d.peerKey, null);
        table.markReachable(d.peerKey);
      } else {
        table.markUnreachable(d.peerKey, why ?? undefined);
        ctx.onFailure('UNREACHABLE', why ?? 'unreachable', d.peer);
      }
    },
  });
}
