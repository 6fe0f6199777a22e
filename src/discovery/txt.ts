/**
 * PURE codec for the TXT record an agent announces over mDNS.
 *
 * Keys: id (stable agent id), name, ver (software version), proto (protocol versions,
 * comma-separated), fp (key fingerprint, never the key), inb/inb1/inb2… (inbox names,
 * comma-separated, ',' and '%' percent-escaped), inbt=1 when the inbox list did not fit.
 *
 * Invariant: every `key=value` entry is at most 255 bytes (RFC 6763 §6.1). bonjour-service
 * sends nothing at all, silently, if one entry is longer (see /work/shared/netns/README.md).
 */
import { TdxError } from '../errors.js';

export const TXT_ENTRY_MAX_BYTES = 255;

export interface TxtInfo {
  id: string;
  name: string;
  version: string;
  protocols: number[];
  fingerprint: string | null;
  inboxes: string[];
}

export interface DecodedTxt {
  id: string | null;
  name: string | null;
  version: string | null;
  protocols: number[];
  fingerprint: string | null;
  inboxes: string[];
  /** The announcer had more inboxes than fit (inbt=1): the list is incomplete. */
  inboxesTruncated: boolean;
}

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/** Bytes `key=value` takes in the TXT record (without the length byte). */
export function txtEntryBytes(key: string, value: string): number {
  return bytes(key) + 1 + bytes(value);
}

export function escapeInbox(name: string): string {
  return name.replace(/%/g, '%25').replace(/,/g, '%2C');
}

export function unescapeInbox(s: string): string {
  return s.replace(/%2C/gi, ',').replace(/%25/g, '%');
}

function inboxKey(i: number): string {
  return i === 0 ? 'inb' : `inb${i}`;
}

/**
 * The TXT record to publish. Long inbox lists are split across inb, inb1, inb2… (at most
 * `maxInboxKeys` entries, default 4, to keep the mDNS packet well under one MTU); what does
 * not fit is left out and flagged with inbt=1.
 * Throws TdxError DISCOVERY_TXT when a single-valued field cannot fit in 255 bytes.
 */
export function encodeTxt(info: TxtInfo, opts: { maxInboxKeys?: number } = {}): Record<string, string> {
  const maxKeys = Math.max(1, opts.maxInboxKeys ?? 4);
  const txt: Record<string, string> = {};
  const single: Array<[string, string, string]> = [
    ['id', info.id, 'agent id'],
    ['name', info.name, 'agent name ("name" in the config)'],
    ['ver', info.version, 'software version'],
    ['proto', info.protocols.join(','), 'protocol list'],
  ];
  if (info.fingerprint !== null) single.push(['fp', info.fingerprint, 'key fingerprint']);
  for (const [key, value, what] of single) {
    if (txtEntryBytes(key, value) > TXT_ENTRY_MAX_BYTES) {
      throw new TdxError(
        'DISCOVERY_TXT',
        `The ${what} is too long to announce over mDNS: ${bytes(value)} bytes, at most ${TXT_ENTRY_MAX_BYTES - bytes(key) - 1}; shorten it`,
      );
    }
    txt[key] = value;
  }

  const chunks: string[][] = [];
  let truncated = false;
  let cur: string[] = [];
  let curBytes = 0;
  for (const name of info.inboxes) {
    if (name.length === 0) continue;
    const esc = escapeInbox(name);
    const budget = (i: number): number => TXT_ENTRY_MAX_BYTES - bytes(inboxKey(i)) - 1;
    const extra = (cur.length > 0 ? 1 : 0) + bytes(esc);
    if (curBytes + extra <= budget(chunks.length)) {
      cur.push(esc);
      curBytes += extra;
      continue;
    }
    if (cur.length > 0 && chunks.length + 1 < maxKeys && bytes(esc) <= budget(chunks.length + 1)) {
      chunks.push(cur);
      cur = [esc];
      curBytes = bytes(esc);
      continue;
    }
    truncated = true; // this inbox fits nowhere any more (or alone exceeds an entry)
  }
  if (cur.length > 0) chunks.push(cur);
  chunks.forEach((c, i) => (txt[inboxKey(i)] = c.join(',')));
  if (truncated) txt.inbt = '1';
  return txt;
}

function text(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (typeof v === 'number') return String(v);
  return null;
}

/** Raw TXT strings (multicast-dns gives Buffer[]) -> key/value map; later duplicates lose (RFC 6763 §6.4). */
function entriesToMap(list: readonly unknown[]): Map<string, string | null> {
  const m = new Map<string, string | null>();
  for (const item of list) {
    const s = text(item);
    if (s === null || s.length === 0) continue;
    const eq = s.indexOf('=');
    const key = (eq === -1 ? s : s.slice(0, eq)).toLowerCase();
    if (key.length === 0 || m.has(key)) continue;
    m.set(key, eq === -1 ? null : s.slice(eq + 1));
  }
  return m;
}

function objectToMap(obj: Record<string, unknown>): Map<string, string | null> {
  const m = new Map<string, string | null>();
  for (const [k, v] of Object.entries(obj)) {
    const key = k.toLowerCase();
    if (!m.has(key) || m.get(key) === null) m.set(key, v === true ? null : text(v));
  }
  return m;
}

/**
 * Decodes what a browser hands us: a key/value object (bonjour-service gives strings,
 * undefined for empty values, or Buffers in binary mode) or the raw entry list
 * (Buffer[] / string[]). Never throws; missing or odd values become null / [].
 */
export function decodeTxt(input: unknown): DecodedTxt {
  const m = Array.isArray(input)
    ? entriesToMap(input)
    : input !== null && typeof input === 'object' && !Buffer.isBuffer(input)
      ? objectToMap(input as Record<string, unknown>)
      : new Map<string, string | null>();
  const str = (k: string): string | null => {
    const v = m.get(k);
    return v === undefined || v === null || v.length === 0 ? null : v;
  };
  const protocols = (str('proto') ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => /^\d+$/.test(p))
    .map(Number);
  const inbKeys = [...m.keys()]
    .map((k) => /^inb(\d*)$/.exec(k))
    .filter((x): x is RegExpExecArray => x !== null)
    .map((x) => ({ key: x[0], index: x[1] === '' ? 0 : Number(x[1]) }))
    .sort((a, b) => a.index - b.index);
  const inboxes: string[] = [];
  for (const { key } of inbKeys) {
    for (const part of (str(key) ?? '').split(',')) {
      if (part.length === 0) continue;
      const name = unescapeInbox(part);
      if (!inboxes.includes(name)) inboxes.push(name);
    }
  }
  // RFC 6763 §6.4: a key without '=' is a boolean attribute that is present (true).
  const t = m.has('inbt') ? (m.get('inbt') ?? '1') : null;
  return {
    id: str('id'),
    name: str('name'),
    version: str('ver'),
    protocols,
    fingerprint: str('fp'),
    inboxes,
    inboxesTruncated: t !== null && t !== '0',
  };
}
