/** Peer addresses as logs, limits and allow-lists compare them. */
const MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** `::ffff:a.b.c.d` -> `a.b.c.d`; anything else unchanged (zone ids dropped). */
export function normalizeAddress(addr: string): string {
  const noZone = addr.split('%')[0] ?? addr;
  const m = MAPPED.exec(noZone);
  return m ? m[1]! : noZone;
}
