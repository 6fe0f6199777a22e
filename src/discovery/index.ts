/**
 * Discovery: the pure PeerTable, the TXT codec and the bonjour-service adapter, plus
 * the small piece of wiring between adapter and table that every user needs.
 */
import type { MdnsDiscovery } from './mdns.js';
import type { PeerTable } from './table.js';
import { every, systemClock, type Clock } from '../clock.js';

export { PeerTable, type Announcement, type PeerTableOptions } from './table.js';
export { encodeTxt, decodeTxt, type TxtInfo, type DecodedTxt } from './txt.js';
export { MdnsDiscovery, instanceNameFor, hostNameFor, resolveInterfaces, type MdnsDiscoveryOptions } from './mdns.js';

/**
 * Feeds adapter events into the table and runs the table's liveness tick (default every
 * second: a silent peer is 'gone' when its mDNS records expire, at the latest goneAfterMs + tickMs). Returns the unwiring;
 * call it before (or after) `discovery.stop()`.
 */
export function wireDiscovery(discovery: MdnsDiscovery, table: PeerTable, opts: { tickMs?: number; clock?: Clock } = {}): { stop(): void } {
  const onAnnounce = table.announce.bind(table);
  const onSeen = table.seen.bind(table);
  const onGoodbye = table.goodbye.bind(table);
  discovery.on('announce', onAnnounce);
  discovery.on('seen', onSeen);
  discovery.on('goodbye', onGoodbye);
  discovery.on('expired', onGoodbye);
  const stopTick = every(opts.clock ?? systemClock, opts.tickMs ?? 1000, () => table.tick());
  return {
    stop(): void {
      stopTick();
      discovery.off('announce', onAnnounce);
      discovery.off('seen', onSeen);
      discovery.off('goodbye', onGoodbye);
      discovery.off('expired', onGoodbye);
    },
  };
}
