/**
 * The discovery part: announces this agent over mDNS and feeds what it hears into the
 * peer board (agent/peers.ts): agents of this installation into the routing table,
 * agents of another installation as "foreign" rows that are never routed to.
 * Started by the composition root (agent/compose.ts) after the agent's listener.
 */
import type { AgentConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { every, systemClock, type Clock } from '../clock.js';
import { MdnsDiscovery, encodeTxt } from '../discovery/index.js';
import { keyFingerprint } from '../protocol/index.js';
import type { Announcement } from '../discovery/table.js';
import type { PeerBoard } from './peers.js';

export interface DiscoverySelf {
  id: string;
  version: string;
  /** The port transfers are accepted on. */
  port: number;
  inboxes: string[];
}

/**
 * Announces this agent and feeds what it hears into `board`; resolves to its stop. `clock`
 * drives the mDNS schedules and the table's liveness tick (the composition root's clock).
 */
export async function startDiscovery(board: PeerBoard, self: DiscoverySelf, cfg: AgentConfig, log: Logger, clock: Clock = systemClock): Promise<() => Promise<void>> {
  const table = board.table;
  const fingerprint = keyFingerprint(cfg.security.key);
  const txt = encodeTxt({ id: self.id, name: cfg.name, version: self.version, protocols: [1], fingerprint, inboxes: self.inboxes });
  const mdns = new MdnsDiscovery({ id: self.id, name: cfg.name, port: self.port, txt, interfaces: cfg.discovery.interfaces, log, clock });
  const foreign = new Set<string>();
  /** Instances currently announcing another key: their re-query answers must not keep a table entry alive. */
  const foreignInstances = new Set<string>();
  const dupWarned = new Set<string>();
  // Agents of another installation (another key) are visible on the LAN but useless to
  // us: they would refuse the handshake. Say so once per agent and keep them out.
  const onAnnounce = (a: Announcement) => {
    if (a.fingerprint !== null && a.fingerprint !== fingerprint) {
      foreignInstances.add(a.instance);
      table.goodbye(a.instance); // it may have been one of ours before a key change
      board.noteForeign(a); // shown on its peer row as "other installation key", never routed to
      if (!foreign.has(a.id)) {
        foreign.add(a.id);
        log.warn(`ignoring agent "${a.name}" (${a.addresses[0] ?? '?'}): it belongs to another installation (key fingerprint ${a.fingerprint}, ours ${fingerprint}); give it the same key to send to it`);
      }
      return;
    }
    foreignInstances.delete(a.instance);
    foreign.delete(a.id);
    board.forgetForeign(a.instance);
    table.announce(a);
    warnDuplicates();
  };
  // Several other agents sharing a name all get files routed to that name. (A clash with
  // our own name is reported by MdnsDiscovery itself.) Once per set of ids.
  const warnDuplicates = () => {
    for (const d of table.duplicates()) {
      const key = `${d.name}\0${d.ids.join(',')}`;
      if (d.ids.includes(self.id) || dupWarned.has(key)) continue;
      dupWarned.add(key);
      const who = table
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
    if (!foreignInstances.has(instance)) table.seen(instance);
  };
  const onGoodbye = (instance: string) => {
    board.forgetForeign(instance);
    table.goodbye(instance);
  };
  mdns.on('announce', onAnnounce);
  mdns.on('seen', onSeen);
  mdns.on('goodbye', onGoodbye);
  mdns.on('expired', onGoodbye); // it stopped answering (killed, unplugged): its records expired
  // MdnsDiscovery logs its warnings itself: no 'warning' listener here, or each would be logged twice.
  const stopTick = every(clock, 1000, () => table.tick());
  try {
    await mdns.start();
    board.discoveryState = 'on';
    log.info(`announcing "${mdns.instanceName}" (_tdxfer._tcp, port ${self.port})${cfg.discovery.interfaces.length ? ` on ${cfg.discovery.interfaces.join(', ')}` : ''}`);
  } catch (err) {
    board.discoveryState = 'error';
    stopTick();
    throw err;
  }
  return async () => {
    stopTick();
    await mdns.stop(); // goodbye first, so peers drop us at once
    board.discoveryState = 'off';
  };
}
