/**
 * The parts that observe or announce an agent: mDNS discovery, status API, OSC
 * triggers, onReceive hooks. Started after the agent, stopped before it (in reverse).
 */
import type { AgentConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { Agent } from '../agent/agent.js';
import { describeError } from '../errors.js';
import { MdnsDiscovery, encodeTxt } from '../discovery/index.js';
import { keyFingerprint } from '../protocol/index.js';
import type { Announcement } from '../discovery/table.js';
import { StatusServer } from '../status/server.js';
import { OscNotifier } from '../osc/notifier.js';
import { hookEnv, runHook } from '../hooks.js';
import type { ReceivedInfo } from '../agent/model.js';
import { startActivitySummary } from '../log-summary.js';

export interface Companions {
  stop(): Promise<void>;
}

export interface CompanionOptions {
  /** POST /stop on the status API: stop this process gracefully (`tdxfer stop`). */
  onStop?: (reason: string) => void;
}

export async function startCompanions(agent: Agent, cfg: AgentConfig, log: Logger, opts: CompanionOptions = {}): Promise<Companions> {
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const s of stops.reverse()) await s().catch((err) => log.warn(`stopping: ${describeError(err)}`));
  };
  try {
    stops.push(startHooks(agent, cfg, log.child({ component: 'hook' })));
    const stopSummary = startActivitySummary(agent, log, cfg.log.level);
    stops.push(async () => stopSummary());
    if (cfg.osc.targets.length > 0) {
      const osc = new OscNotifier(agent, cfg.osc, { log: log.child({ component: 'osc' }), agentName: cfg.name });
      osc.start();
      stops.push(async () => osc.stop());
      log.info(`OSC triggers to ${cfg.osc.targets.map((t) => `${t.host}:${t.port}`).join(', ')}`);
    }
    if (cfg.status.enabled) {
      const status = new StatusServer(agent, { host: cfg.status.host, port: cfg.status.port, token: cfg.status.token, log: log.child({ component: 'status' }), version: agent.version, ...(opts.onStop ? { onStop: opts.onStop } : {}) });
      const a = await status.start();
      stops.push(() => status.stop());
      log.info(`status API and dashboard on http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/${cfg.status.token ? ' (token required)' : ''}`);
    }
    if (cfg.discovery.enabled) stops.push(await startDiscovery(agent, cfg, log.child({ component: 'discovery' })));
  } catch (err) {
    await stopAll();
    throw err;
  }
  return { stop: stopAll };
}

/** onReceive: a command per inbox, run without a shell after each file lands. */
function startHooks(agent: Agent, cfg: AgentConfig, log: Logger): () => Promise<void> {
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
  agent.on('received', onReceived);
  return async () => {
    agent.off('received', onReceived);
    stopping.abort();
    await Promise.all(running);
  };
}

async function startDiscovery(agent: Agent, cfg: AgentConfig, log: Logger): Promise<() => Promise<void>> {
  const fingerprint = keyFingerprint(cfg.security.key);
  const txt = encodeTxt({ id: agent.id, name: cfg.name, version: agent.version, protocols: [1], fingerprint, inboxes: [...agent.inboxes.keys()] });
  const mdns = new MdnsDiscovery({ id: agent.id, name: cfg.name, port: agent.listenAddress.port, txt, interfaces: cfg.discovery.interfaces, log });
  const foreign = new Set<string>();
  /** Instances currently announcing another key: their re-query answers must not keep a table entry alive. */
  const foreignInstances = new Set<string>();
  const dupWarned = new Set<string>();
  // Agents of another installation (another key) are visible on the LAN but useless to
  // us: they would refuse the handshake. Say so once per agent and keep them out.
  const onAnnounce = (a: Announcement) => {
    if (a.fingerprint !== null && a.fingerprint !== fingerprint) {
      foreignInstances.add(a.instance);
      agent.table.goodbye(a.instance); // it may have been one of ours before a key change
      agent.noteForeignPeer(a); // shown on its peer row as "other installation key", never routed to
      if (!foreign.has(a.id)) {
        foreign.add(a.id);
        log.warn(`ignoring agent "${a.name}" (${a.addresses[0] ?? '?'}): it belongs to another installation (key fingerprint ${a.fingerprint}, ours ${fingerprint}); give it the same key to send to it`);
      }
      return;
    }
    foreignInstances.delete(a.instance);
    foreign.delete(a.id);
    agent.forgetForeignPeer(a.instance);
    agent.table.announce(a);
    warnDuplicates();
  };
  // Several other agents sharing a name all get files routed to that name. (A clash with
  // our own name is reported by MdnsDiscovery itself.) Once per set of ids.
  const warnDuplicates = () => {
    for (const d of agent.table.duplicates()) {
      const key = `${d.name}\0${d.ids.join(',')}`;
      if (d.ids.includes(agent.id) || dupWarned.has(key)) continue;
      dupWarned.add(key);
      const who = agent.table
        .list()
        .filter((p) => p.source === 'discovered' && p.name === d.name && p.state !== 'gone')
        .map((p) => `id ${p.id ?? '?'} at ${p.addresses[0] ?? '?'}:${p.port}`)
        .join(', ');
      log.warn(
        `${d.ids.length} agents share the name "${d.name}": ${who}. Files routed to "${d.name}" go to each of them; ` +
          `route to "${d.name}#<id prefix>" to pick one, or give each agent a unique "name"`,
      );
    }
  };
  const onSeen = (instance: string) => {
    if (!foreignInstances.has(instance)) agent.table.seen(instance);
  };
  const onGoodbye = (instance: string) => {
    agent.forgetForeignPeer(instance);
    agent.table.goodbye(instance);
  };
  mdns.on('announce', onAnnounce);
  mdns.on('seen', onSeen);
  mdns.on('goodbye', onGoodbye);
  // MdnsDiscovery logs its warnings itself: no 'warning' listener here, or each would be logged twice.
  const tick = setInterval(() => agent.table.tick(), 1000);
  tick.unref();
  try {
    await mdns.start();
    agent.discoveryState = 'on';
    log.info(`announcing "${mdns.instanceName}" (_tdxfer._tcp, port ${agent.listenAddress.port})${cfg.discovery.interfaces.length ? ` on ${cfg.discovery.interfaces.join(', ')}` : ''}`);
  } catch (err) {
    agent.discoveryState = 'error';
    clearInterval(tick);
    throw err;
  }
  return async () => {
    clearInterval(tick);
    await mdns.stop(); // goodbye first, so peers drop us at once
    agent.discoveryState = 'off';
  };
}
