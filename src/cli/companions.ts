/**
 * The parts that observe or announce an agent (mDNS discovery, status API, OSC
 * triggers, onReceive hooks) for callers that start an `Agent` themselves (tests).
 * `tdxfer run` builds everything through the composition root, agent/compose.ts.
 */
import type { AgentConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { Agent } from '../agent/agent.js';
import { startCompanionParts, type CompanionOptions } from '../agent/compose.js';

export type { CompanionOptions } from '../agent/compose.js';

export interface Companions {
  stop(): Promise<void>;
}

export async function startCompanions(agent: Agent, cfg: AgentConfig, log: Logger, opts: CompanionOptions = {}): Promise<Companions> {
  const lc = await startCompanionParts(agent, cfg, log, opts);
  return { stop: () => lc.stop() };
}
