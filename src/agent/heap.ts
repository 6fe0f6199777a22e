/**
 * The agent's JavaScript heap near what it holds live (issue #19, sender memory). V8 reads
 * these two flags at every collection, so they work when set while the process runs (its
 * heap size limits would need flags at process start, which the ways of starting the agent
 * do not share):
 *
 * - always (`tdxfer run`): the young generation keeps its first size (1 MiB semi-spaces)
 *   instead of growing to 16 MiB ones under a burst of allocations, ~30 MiB V8 never gives
 *   back;
 * - in an agent that fans out (an outbox with several destinations or `peer: "*"`): the
 *   old generation is collected at 1.5 × its live size instead of up to 4 × (V8's default
 *   for small heaps): 200 small files to 19 destinations promote ~25 MiB of short-lived
 *   state. Not in every agent: receiving a big stream it cost ~60 % more CPU (frequent full
 *   collections), where V8's own choice is better; an agent that fans out and receives big
 *   streams too pays that.
 *
 * Measured with test/bench/fanout.ts --one-sender (one sender process, the three loads in
 * turn, 19 receivers): sender peak RSS 121/165/183 MiB before, 103–117/117–124/126–133 MiB
 * with both.
 */
import v8 from 'node:v8';
import type { AgentConfig } from '../config/types.js';

export const AGENT_V8_FLAGS = ['--semi-space-growth-factor=1'];

export function applyAgentV8Flags(): void {
  for (const f of AGENT_V8_FLAGS) v8.setFlagsFromString(f);
}

/** The agent's outboxes send files to several destinations at once. */
export function fansOut(cfg: Pick<AgentConfig, 'outboxes'>): boolean {
  return cfg.outboxes.some((o) => o.to.length > 1 || o.to.some((r) => r.peer === '*'));
}

/** The old generation's growth for an agent that fans out (true) or V8's own (false). */
export function fanoutHeap(active: boolean): void {
  // 0 is V8's default: its own growing factor.
  v8.setFlagsFromString(`--heap-growing-percent=${active ? 50 : 0}`);
}
