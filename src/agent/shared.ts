/**
 * The collaborators the composition root (agent/compose.ts) builds once and hands to
 * every part that needs them, so no part reaches into another for them: the peer board
 * (routing table + link reasons: the agent's dispatch and senders, discovery), the
 * agent-wide sources of outgoing bytes (transfer/sources.ts), the bandwidth pacer and
 * the clock. `Agent` builds the same defaults when it is started alone (tests).
 */
import type { AgentConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { Pacer } from '../limits/pacer.js';
import { PeerTable } from '../discovery/table.js';
import { SendSources } from '../transfer/sources.js';
import { systemClock, type Clock } from '../clock.js';
import { PeerBoard } from './peers.js';

export interface SharedParts {
  clock: Clock;
  peers: PeerBoard;
  sources: SendSources;
  pacer: Pacer;
}

/** An empty peer board on `clock` (the table's liveness and the foreign rows' lastSeen). */
export function newPeerBoard(clock: Clock): PeerBoard {
  return new PeerBoard(new PeerTable({ now: () => clock.now() }), clock);
}

/** One budget of read buffers and small files for every destination (issue #19): memory does not grow with the peers. */
export function newSendSources(cfg: AgentConfig, log: Logger): SendSources {
  return SendSources.fromConfig(cfg.transfer, log);
}

/** Bandwidth limits of the config: every sender and receiving connection goes through the one pacer. */
export function newPacer(cfg: AgentConfig): Pacer {
  const peerRates: Record<string, number> = { ...cfg.transfer.peerMaxBytesPerSecond };
  for (const p of cfg.peers) if (p.maxBytesPerSecond) peerRates[p.name] = p.maxBytesPerSecond;
  return new Pacer({ outgoing: cfg.transfer.maxBytesPerSecond, incoming: cfg.limits.maxIncomingBytesPerSecond, peers: peerRates });
}

export function newSharedParts(cfg: AgentConfig, log: Logger, clock: Clock = systemClock): SharedParts {
  return { clock, peers: newPeerBoard(clock), sources: newSendSources(cfg, log.child({ component: 'sender' })), pacer: newPacer(cfg) };
}
