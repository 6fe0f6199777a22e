/**
 * The composition root: builds every part of a running agent from the resolved config,
 * in order, and tears them down in reverse (agent/lifecycle.ts). The CLI (`tdxfer run`)
 * only loads the config and calls `composeAgent()`.
 *
 *   shared parts (clock, peer board, send sources, pacer: agent/shared.ts) → agent (inboxes,
 *   listeners, outboxes, senders) → onReceive hooks → OSC → status API → discovery
 *
 * Each part gets its collaborators (logger, clock, view, peer board) from here instead of
 * building them or reaching into the agent for them, so each can be started alone in a
 * test; the agent itself is seen only as its AgentView plus its id and bound address. Stopping: the agent's receivers stop taking
 * new files first (files being landed are still announced by OSC and the status API),
 * then discovery, status, OSC and hooks go, then the agent itself.
 */
import type { AgentConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { describeError } from '../errors.js';
import { Agent } from './agent.js';
import type { AgentView, ReceivedInfo } from '../types.js';
import { newSharedParts, type SharedParts } from './shared.js';
import { Lifecycle, type Part, type Stop } from './lifecycle.js';
import { startDiscovery } from './discovery-link.js';
import { StatusServer } from '../status/server.js';
import { startActivitySummary } from '../log-summary.js';
import { OscNotifier } from '../osc/notifier.js';
import { hookEnv, runHook } from '../hooks.js';
import { softwareVersion } from './identity.js';
import type { Clock } from '../clock.js';

/**
 * The graceful budget of a whole stop. `tdxfer run`'s hard-exit timer (HARD_EXIT_MS)
 * must be clearly longer, and systemd's TimeoutStopSec (20 s, service/tdxfer.service)
 * clearly longer than that, so the agent exits on its own before systemd kills it.
 */
export const GRACE_MS = 12_000;
/** `tdxfer run` exits anyway this long after a stop signal (partial files stay staged for resume). */
export const HARD_EXIT_MS = 15_000;

export interface ComposeOptions {
  log: Logger;
  /** POST /stop on the status API: stop this process gracefully (`tdxfer stop`). */
  onStop?: (reason: string) => void;
  /** The one clock of every timer-driven part (peer table, discovery, the agent's timestamps); default systemClock. */
  clock?: Clock;
}

export interface ComposedAgent {
  agent: Agent;
  /** The collaborators built here and shared by the parts (the same instances the agent and discovery use). */
  shared: SharedParts;
  /** Stops everything in reverse within about `graceMs`. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts the agent and everything around it; on a failure stops what started and rethrows. */
export async function composeAgent(cfg: AgentConfig, opts: ComposeOptions): Promise<ComposedAgent> {
  const { log } = opts;
  const shared = newSharedParts(cfg, log, opts.clock);
  const { clock } = shared;
  // Landings (also those a crash left unannounced) are announced once hooks, OSC and the status API listen.
  const agent = await Agent.start(cfg, { log, holdAnnouncements: true, clock, peers: shared.peers, sources: shared.sources, pacer: shared.pacer });
  let companions: Lifecycle;
  try {
    companions = await startCompanionParts(agent, shared, cfg, log, opts.onStop ? { onStop: opts.onStop } : {});
  } catch (err) {
    await agent.stop();
    throw err;
  }
  agent.openAnnouncements();
  let stopped: Promise<void> | null = null;
  return {
    agent,
    shared,
    stop: (graceMs = GRACE_MS) =>
      (stopped ??= (async () => {
        // One budget for the whole stop: what the receivers use is not left for the senders.
        const deadline = clock.now() + graceMs;
        const left = (): number => Math.max(1000, deadline - clock.now());
        // Files being landed finish with their ACK while OSC and the status API can still announce them.
        await agent.stopReceiving(Math.min(5000, graceMs / 2)).catch((err: unknown) => log.warn(`stopping receivers: ${describeError(err)}`));
        await companions.stop(left());
        await agent.stop(left());
      })()),
  };
}

export interface CompanionOptions {
  /** POST /stop on the status API: stop this process gracefully (`tdxfer stop`). */
  onStop?: (reason: string) => void;
}

/**
 * What the parts around the agent see of it: its AgentView, and for discovery its id and
 * bound transfer address (known once it started).
 */
export type ComposedView = AgentView & { readonly id: string; readonly listenAddress: { host: string; port: number } };

/**
 * The parts around an agent (hooks, OSC, status API, discovery), started in that order.
 * `shared` must be what the agent was started with (discovery feeds its peer board; the clock drives discovery's schedules).
 */
export async function startCompanionParts(agent: ComposedView, shared: SharedParts, cfg: AgentConfig, log: Logger, opts: CompanionOptions = {}): Promise<Lifecycle> {
  const lc = new Lifecycle(log);
  await lc.startAll(companionParts(agent, shared, cfg, log, opts));
  return lc;
}

function companionParts(agent: ComposedView, shared: SharedParts, cfg: AgentConfig, log: Logger, opts: CompanionOptions): Part[] {
  const version = softwareVersion();
  const parts: Part[] = [{ name: 'onReceive hooks', start: () => startHooks(agent, cfg, log.child({ component: 'hook' })) }];
  // At log.level warn/error: a once-a-minute activity line per direction (src/log-summary.ts).
  parts.push({ name: 'activity summary', start: () => startActivitySummary(agent, log, cfg.log.level) });
  if (cfg.osc.targets.length > 0) {
    parts.push({
      name: 'OSC',
      start: () => {
        const osc = new OscNotifier(agent, cfg.osc, { log: log.child({ component: 'osc' }), agentName: cfg.name });
        osc.start();
        log.info(`OSC triggers to ${cfg.osc.targets.map((t) => `${t.host}:${t.port}`).join(', ')}`);
        return () => osc.stop();
      },
    });
  }
  if (cfg.status.enabled) {
    parts.push({
      name: 'status API',
      start: async () => {
        const status = new StatusServer(agent, { host: cfg.status.host, port: cfg.status.port, token: cfg.status.token, log: log.child({ component: 'status' }), version, sse: { clock: shared.clock }, ...(opts.onStop ? { onStop: opts.onStop } : {}) });
        const a = await status.start();
        log.info(`status API and dashboard on http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/${cfg.status.token ? ' (token required)' : ''}`);
        return () => status.stop();
      },
    });
  }
  if (cfg.discovery.enabled) {
    parts.push({
      name: 'discovery',
      start: () =>
        startDiscovery(shared.peers, { id: agent.id, version, port: agent.listenAddress.port, inboxes: cfg.inboxes.map((i) => i.name) }, cfg, log.child({ component: 'discovery' }), shared.clock),
    });
  }
  return parts;
}

/** onReceive: a command per inbox, run without a shell after each file lands. */
export function startHooks(view: AgentView, cfg: AgentConfig, log: Logger): Stop {
  const running = new Set<Promise<unknown>>();
  // Stopping stops running hooks too: waiting out their timeouts (30 s by default) would
  // outlast `tdxfer run`'s hard-exit timer and leave their process groups behind.
  const stopping = new AbortController();
  const onReceived = (r: ReceivedInfo) => {
    const hook = cfg.inboxes.find((i) => i.name === r.inbox)?.onReceive;
    if (!hook) return;
    const p = runHook(hook.command, hookEnv(r), { timeoutMs: hook.timeoutMs, log, signal: stopping.signal }).finally(() => running.delete(p));
    running.add(p);
  };
  view.on('received', onReceived);
  return async () => {
    view.off('received', onReceived);
    stopping.abort();
    await Promise.all(running);
  };
}
