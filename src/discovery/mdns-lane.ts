/**
 * One lane of the mDNS adapter (mdns.ts): a socket on one interface with its query
 * schedule, answer queue and our records for that interface's addresses, and what its
 * state means for the user (did our announcement come up? is a socket error worth a
 * warning?). Apart from holding the socket, pure: the clock, randomness and the
 * machine's interfaces are passed in, so it is unit-tested without root or namespaces.
 */
import type os from 'node:os';
import { describeError } from '../errors.js';
import { AnswerQueue, ownRecords, type OwnInfo, type OwnRecord } from './mdns-answer.js';
import { ownAddresses } from './mdns-names.js';
import { QueryPlan, type Random } from './mdns-schedule.js';
import type { MulticastDns } from './mdns-socket.js';
import type { Cancel } from '../clock.js';

export interface Lane {
  /** "default", or the NIC name / address as configured, for messages. */
  label: string;
  address: string | null;
  mdns: MulticastDns;
  plan: QueryPlan;
  answers: AnswerQueue;
  own: OwnRecord[];
  /** Addresses in our A records, to notice a change. */
  published: string;
  probing: boolean;
  conflict: boolean;
  up: boolean;
  heardSelf: boolean;
  /** Cancels the lane's one schedule timer (Clock.after). */
  timer: Cancel | null;
}

/** A lane that has not probed, announced or published anything yet (call refreshOwn next). */
export function newLane(
  where: { label: string; address: string | null; mdns: MulticastDns },
  o: { now: number; self: string; capMs: number; random: Random },
): Lane {
  return {
    ...where,
    plan: new QueryPlan({ now: o.now, self: o.self, capMs: o.capMs, random: o.random }),
    answers: new AnswerQueue(o.random),
    own: [],
    published: '',
    probing: false,
    conflict: false,
    up: false,
    heardSelf: false,
    timer: null,
  };
}

/** Rebuilds the lane's records for its current addresses; true if the addresses changed. */
export function refreshOwn(
  lane: Pick<Lane, 'address' | 'published' | 'own'>,
  who: Omit<OwnInfo, 'addresses'>,
  nets?: ReturnType<typeof os.networkInterfaces>,
): boolean {
  const addresses = ownAddresses(lane.address, nets);
  const key = addresses.join(',');
  const changed = key !== lane.published;
  lane.published = key;
  lane.own = ownRecords({ ...who, addresses });
  return changed;
}

/**
 * After `upTimeoutMs`: why the lane is not working, or null. Not up: someone else answered
 * our probe (the same id: a copied data folder). Up but never heard our own announcement
 * back: multicast does not leave the interface.
 */
export function upProblem(lane: Pick<Lane, 'label' | 'up' | 'heardSelf'>, self: { instanceName: string; id: string }, upTimeoutMs: number): string | null {
  if (!lane.up) {
    return (
      `mDNS: our announcement "${self.instanceName}" did not come up on ${lane.label} within ${upTimeoutMs} ms: ` +
      `another device already announces that instance name (an agent with the same id ${self.id}: a copied data folder?). ` +
      `Other agents will not discover this one. Give each machine its own data folder, or a unique name.`
    );
  }
  if (!lane.heardSelf) {
    return (
      `mDNS: we never heard our own announcement back on ${lane.label}: multicast does not leave this interface ` +
      `(no multicast route - on Linux: ip route add 224.0.0.0/4 dev <if> - or a firewall blocking UDP 5353). Other agents will not discover this one.`
    );
  }
  return null;
}

/**
 * A socket 'error' or 'warning' on a lane: the key it is warned once under (then logged
 * at debug: send errors repeat with every packet), the line to log and the warning with
 * a hint when multicast has no route.
 */
export function socketProblem(kind: 'error' | 'warning', label: string, err: unknown): { key: string; line: string; warning: string } {
  const msg = describeError(err);
  const line = `mDNS ${kind} on ${label}: ${msg}`;
  const hint =
    kind === 'error' && /ENETUNREACH|EHOSTUNREACH/.test(msg)
      ? ' (multicast has no route here: on Linux `ip route add 224.0.0.0/4 dev <if>`, or check the interface is up)'
      : '';
  return { key: `${kind === 'error' ? 'err' : 'warn'}:${label}:${msg}`, line, warning: line + hint };
}
