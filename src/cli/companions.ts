/**
 * The parts that observe or announce an agent: status API, OSC triggers, onReceive
 * hooks, mDNS discovery. Started after the agent, stopped before it.
 */
import type { AgentConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { Agent } from '../agent/agent.js';

export interface Companions {
  stop(): Promise<void>;
}

export async function startCompanions(_agent: Agent, _cfg: AgentConfig, _log: Logger): Promise<Companions> {
  const stops: Array<() => Promise<void>> = [];
  return {
    async stop() {
      for (const s of stops.reverse()) await s();
    },
  };
}
