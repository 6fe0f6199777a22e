/**
 * PURE: mDNS naming for the adapter in mdns.ts: our instance and host names, the
 * configured interfaces resolved to addresses, and the DNS name helpers used to read
 * answers. No socket, no timer: unit-tested without root or namespaces.
 */
import os from 'node:os';
import { TdxError } from '../errors.js';

export const SERVICE_TYPE = 'tdxfer';
export const SERVICE_DOMAIN = `_${SERVICE_TYPE}._tcp.local`;
/** DNS label limit (RFC 1035): instance and host labels longer than this are not sent. */
const LABEL_MAX_BYTES = 63;

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

function truncateBytes(s: string, max: number): string {
  let out = '';
  for (const ch of s) {
    if (bytes(out + ch) > max) break;
    out += ch;
  }
  return out;
}

/**
 * `${name} (${id.slice(0,6)})`: unique even when two agents share a name. Dots would split
 * the DNS label (bonjour replaces them by '-'); long names are cut to fit 63 bytes.
 */
export function instanceNameFor(name: string, id: string): string {
  const suffix = ` (${id.slice(0, 6)})`;
  // eslint-disable-next-line no-control-regex
  const clean = name.replace(/[\u0000-\u001f\u007f]/g, '').replace(/\./g, '-').trim() || 'tdxfer';
  return truncateBytes(clean, LABEL_MAX_BYTES - bytes(suffix)) + suffix;
}

/** `<name>-<shortid>.local`, reduced to a valid host label (letters, digits, '-'). */
export function hostNameFor(name: string, id: string): string {
  const shortId = id.slice(0, 6).toLowerCase().replace(/[^a-z0-9]/g, '') || 'x';
  const label = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // combining accents: "É" -> "E"
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, LABEL_MAX_BYTES - shortId.length - 1)
    .replace(/-$/, '');
  return `${label || 'tdxfer'}-${shortId}.local`;
}

type NetworkInterfaces = ReturnType<typeof os.networkInterfaces>;

/**
 * Configured interfaces (names or IPv4 addresses) -> one IPv4 each, deduplicated.
 * Throws TdxError DISCOVERY_INTERFACE naming the existing interfaces when one is unknown.
 */
export function resolveInterfaces(
  wanted: readonly string[],
  nets: NetworkInterfaces = os.networkInterfaces(),
): Array<{ label: string; address: string }> {
  const v4 = (name: string): string[] =>
    (nets[name] ?? []).filter((a) => a.family === 'IPv4' || (a.family as unknown) === 4).map((a) => a.address);
  const existing = (): string =>
    Object.keys(nets)
      .map((n) => `${n} (${v4(n).join(', ') || 'no IPv4'})`)
      .join(', ') || 'none';
  const out: Array<{ label: string; address: string }> = [];
  for (const w of wanted) {
    const entry = w.trim();
    let address: string | undefined;
    if (/^\d{1,3}(\.\d{1,3}){3}$/.test(entry)) {
      address = Object.keys(nets).some((n) => v4(n).includes(entry)) ? entry : undefined;
      if (address === undefined) {
        throw new TdxError(
          'DISCOVERY_INTERFACE',
          `discovery.interfaces: no network interface has the address ${entry}. Existing: ${existing()}. Fix "discovery.interfaces" in the config (interface names or their IPv4 addresses).`,
        );
      }
    } else {
      if (nets[entry] === undefined) {
        throw new TdxError(
          'DISCOVERY_INTERFACE',
          `discovery.interfaces: unknown network interface "${entry}". Existing: ${existing()}. Fix "discovery.interfaces" in the config.`,
        );
      }
      address = v4(entry)[0];
      if (address === undefined) {
        throw new TdxError(
          'DISCOVERY_INTERFACE',
          `discovery.interfaces: interface "${entry}" has no IPv4 address (mDNS here is IPv4 only). Existing: ${existing()}.`,
        );
      }
    }
    if (!out.some((o) => o.address === address)) out.push({ label: entry === address ? entry : `${entry} (${address})`, address });
  }
  return out;
}

/**
 * IPv4 addresses for our A records: the lane's own (`address`), or, on the default
 * interface (null), every non-internal IPv4 address of the machine.
 */
export function ownAddresses(address: string | null, nets: NetworkInterfaces = os.networkInterfaces()): string[] {
  if (address !== null) return [address];
  return Object.values(nets)
    .flatMap((l) => l ?? [])
    .filter((a) => (a.family === 'IPv4' || (a.family as unknown) === 4) && !a.internal)
    .map((a) => a.address);
}

/** DNS names compare case-insensitively, with or without the root dot. */
export function sameName(a: string, b: string): boolean {
  return a.toLowerCase().replace(/\.$/, '') === b.toLowerCase().replace(/\.$/, '');
}

/** "<instance>._tdxfer._tcp.local" -> "<instance>"; null for other services. */
export function instanceOf(fqdn: string): string | null {
  const suffix = `.${SERVICE_DOMAIN}`;
  const f = fqdn.replace(/\.$/, '');
  if (f.length <= suffix.length || f.slice(-suffix.length).toLowerCase() !== suffix) return null;
  return f.slice(0, -suffix.length);
}
