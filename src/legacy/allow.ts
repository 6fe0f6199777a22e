/**
 * Source-address allow-list for the legacy TOX listener (the TOX protocol has no
 * authentication, so the address is all there is). IPv4-mapped IPv6 addresses
 * (`::ffff:10.0.0.5`, what a dual-stack socket reports) are checked as IPv4.
 */
import net from 'node:net';
import { ConfigError } from '../errors.js';

import { normalizeAddress } from '../transport/address.js';

export { normalizeAddress };

function family(addr: string): 'ipv4' | 'ipv6' | null {
  const v = net.isIP(addr);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : null;
}

export interface AllowList {
  /** True when `addr` may connect. An empty list allows everyone. */
  allows(addr: string): boolean;
  readonly entries: readonly string[];
}

/**
 * Builds the allow-list from IPs and CIDRs (`10.0.0.7`, `192.168.1.0/24`, `fd00::/8`).
 * Throws ConfigError naming `field[i]` for an entry that is neither.
 */
export function buildAllowList(entries: readonly string[], field = 'legacy.allow'): AllowList {
  const list = new net.BlockList();
  entries.forEach((raw, i) => {
    const entry = raw.trim();
    const [addrPart, prefixPart, extra] = entry.split('/');
    const addr = normalizeAddress(addrPart ?? '');
    const fam = family(addr);
    const hint = 'expected an IP address or CIDR such as "192.168.1.20" or "192.168.1.0/24"';
    if (fam === null || extra !== undefined) {
      throw new ConfigError(`${field}[${i}]`, `${field}[${i}] is ${JSON.stringify(raw)}: ${hint}`);
    }
    if (prefixPart === undefined) {
      list.addAddress(addr, fam);
      return;
    }
    const max = fam === 'ipv4' ? 32 : 128;
    const prefix = /^\d{1,3}$/.test(prefixPart) ? Number(prefixPart) : NaN;
    if (!(prefix >= 0 && prefix <= max)) {
      throw new ConfigError(`${field}[${i}]`, `${field}[${i}] is ${JSON.stringify(raw)}: the prefix length must be 0-${max}; ${hint}`);
    }
    list.addSubnet(addr, prefix, fam);
  });
  const frozen = Object.freeze([...entries]);
  return {
    entries: frozen,
    allows(addr: string): boolean {
      if (frozen.length === 0) return true;
      const a = normalizeAddress(addr);
      const fam = family(a);
      return fam !== null && list.check(a, fam);
    },
  };
}
