/** Peer addresses as logs, limits and allow-lists compare them. */
const MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** `::ffff:a.b.c.d` -> `a.b.c.d`; anything else unchanged (zone ids dropped). */
export function normalizeAddress(addr: string): string {
  const noZone = addr.split('%')[0] ?? addr;
  const m = MAPPED.exec(noZone);
  return m ? m[1]! : noZone;
}

function isIPv4(a: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(a);
}

/**
 * Usable addresses of an announcement, best first: the referer (the address the
 * announcement came from, proven to reach us) first, then IPv4 before IPv6. IPv6
 * link-local without a zone id (fe80::… without %) cannot be connected to and is dropped.
 */
export function addressOrder(addresses: readonly string[], referer?: string): string[] {
  const usable = (a: string): boolean => a.length > 0 && !(/^fe[89ab][0-9a-f]:/i.test(a) && !a.includes('%'));
  const norm = (a: string): string => (isIPv4(a) ? a : a.toLowerCase());
  const out: string[] = [];
  const push = (a: string): void => {
    const n = norm(a.trim());
    if (usable(n) && !out.includes(n)) out.push(n);
  };
  if (referer !== undefined) push(referer);
  for (const a of addresses) if (isIPv4(a.trim())) push(a);
  for (const a of addresses) if (!isIPv4(a.trim())) push(a);
  return out;
}
