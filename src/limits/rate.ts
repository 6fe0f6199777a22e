/**
 * PURE: rates as people write them (`20MB/s`, `160Mbit/s`, `0`, `off`) to bytes per
 * second and back. Decimal prefixes are powers of 1000 (as network gear counts), binary
 * ones (KiB, MiB, GiB) powers of 1024; `bit` units are divided by 8. A bare number is
 * bytes per second.
 */
import { TdxError } from '../errors.js';

const PREFIX: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 };

export const RATE_EXAMPLES = '`20MB/s`, `160Mbit/s`, `500KiB/s`, `2500000` (bytes per second), or `0`/`off` for unlimited';

/** Bytes per second (an integer; 0 = unlimited). Throws TdxError BAD_RATE with a hint. */
export function parseRate(text: string): number {
  const t = text.trim();
  if (/^(0|off|none|unlimited)$/i.test(t)) return 0;
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]i?)?(b|bit|byte|bytes|bits)?\s*(\/\s*s|ps)?$/i.exec(t);
  if (!m) throw new TdxError('BAD_RATE', `cannot read the rate ${JSON.stringify(text)}: write it like ${RATE_EXAMPLES}`);
  const [, num, prefix = '', unit = '', per = ''] = m;
  if (unit === '' && (prefix !== '' || per !== '')) throw new TdxError('BAD_RATE', `the rate ${JSON.stringify(text)} has no unit: write B for bytes or bit for bits, e.g. 20MB/s or 160Mbit/s`);
  if (unit === 'b') throw new TdxError('BAD_RATE', `the rate ${JSON.stringify(text)} is ambiguous (b): write ${num}${prefix}bit/s for bits or ${num}${prefix}B/s for bytes`);
  const bits = /^bits?$/i.test(unit);
  const factor = PREFIX[prefix.toLowerCase()]!;
  const value = Math.round((Number(num) * factor) / (bits ? 8 : 1));
  if (!Number.isSafeInteger(value)) throw new TdxError('BAD_RATE', `the rate ${JSON.stringify(text)} is too large`);
  if (value === 0) throw new TdxError('BAD_RATE', `the rate ${JSON.stringify(text)} rounds to 0 bytes per second; write 0 or off for unlimited`);
  return value;
}

/** `20 MB/s (160 Mbit/s)`, or `unlimited` for 0. */
export function formatRate(bytesPerSecond: number): string {
  if (bytesPerSecond === 0) return 'unlimited';
  return `${human(bytesPerSecond, 'B/s')} (${human(bytesPerSecond * 8, 'bit/s')})`;
}

function human(n: number, unit: string): string {
  const steps: Array<[number, string]> = [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [f, p] of steps) if (n >= f) return `${(n / f).toFixed(n / f >= 100 ? 0 : 1)} ${p}${unit}`;
  return `${Math.round(n)} ${unit}`;
}
