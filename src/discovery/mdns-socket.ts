/**
 * The only multicast-dns import: a small typed adapter around multicast-dns 7.2.5 (the
 * socket and packet codec bonjour-service is built on). It ships no types, so the parts
 * mdns.ts relies on are described here; a failed bind becomes one TdxError DISCOVERY_FAILED
 * with a hint.
 *
 * Silent failure modes handled here (measured, /work/shared/netns/README.md):
 * - multicast-dns 'error' events throw without a listener (the caller adds its own at once);
 * - `interface` needs `bind: '0.0.0.0'` to receive multicast.
 */
import multicastDnsModule from 'multicast-dns';
import { TdxError, describeError } from '../errors.js';
import type { MdnsPacket, ResourceRecord } from './mdns-packet.js';
import type { QueryPacket } from './mdns-answer.js';

// --- the parts of multicast-dns 7.2.5 we rely on ------------------------------------------
export interface RemoteInfo {
  address: string;
  port: number;
}
export interface QueryMessage extends QueryPacket {
  id?: number;
}
export interface OutPacket {
  id?: number;
  type?: 'query' | 'response';
  flags?: number;
  questions?: Array<{ name: string; type: string }>;
  answers?: ResourceRecord[];
  additionals?: ResourceRecord[];
  authorities?: ResourceRecord[];
}
export interface MulticastDns {
  on(event: 'response', listener: (packet: MdnsPacket, rinfo: RemoteInfo) => void): unknown;
  on(event: 'query', listener: (packet: QueryMessage, rinfo: RemoteInfo) => void): unknown;
  on(event: 'error' | 'warning', listener: (err: Error) => void): unknown;
  once(event: 'ready', listener: () => void): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
  query(packet: OutPacket, cb?: (err: Error | null) => void): void;
  respond(packet: OutPacket, rinfo?: RemoteInfo | ((err: Error | null) => void), cb?: (err: Error | null) => void): void;
  destroy(cb?: () => void): void;
}
type MulticastDnsFactory = (opts: Record<string, unknown>) => MulticastDns;
const multicastDns = multicastDnsModule as unknown as MulticastDnsFactory;

/** Runs `run` and resolves true once it calls `done`, false after `ms` or if it throws. */
export function withTimeout(ms: number, run: (done: () => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    try {
      run(() => {
        clearTimeout(timer);
        resolve(true);
      });
    } catch {
      clearTimeout(timer);
      resolve(false);
    }
  });
}

/**
 * Creates one mDNS socket (UDP 5353): on the default multicast interface (`address` null)
 * or on the NIC with that IPv4 address. `bound` resolves once it is bound; if the bind
 * fails, the socket is closed and `bound` rejects with TdxError DISCOVERY_FAILED.
 * The caller attaches its listeners (an 'error' one at least) before its first await.
 */
export function openMdnsSocket(label: string, address: string | null): { mdns: MulticastDns; bound: Promise<void> } {
  const mdns = multicastDns(address === null ? {} : { interface: address, bind: '0.0.0.0' });
  const ready = new Promise<void>((resolve, reject) => {
    const onBindError = (err: Error): void => reject(err);
    mdns.once('error', onBindError);
    mdns.once('ready', () => {
      mdns.removeListener('error', onBindError);
      resolve();
    });
  });
  const bound = ready.catch(async (err: unknown) => {
    await withTimeout(1000, (done) => mdns.destroy(done));
    throw new TdxError(
      'DISCOVERY_FAILED',
      `cannot open the mDNS socket (UDP 5353) on ${label}: ${describeError(err)}. Another program may hold the port without SO_REUSEADDR, or permissions forbid it; disable discovery or use static "peers"`,
      { cause: err },
    );
  });
  return { mdns, bound };
}
