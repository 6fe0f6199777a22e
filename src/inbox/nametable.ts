/**
 * PURE: a compact multiset of file names grouped by collision key (case-insensitive, NFC),
 * for folders of 100,000 names and more (issue #20).
 *
 * A Map of 100,000 JS strings costs ~7 MB of heap (string headers, map entries) and keeps
 * the V8 heap grown after the listing that filled it. Here the names live in one byte arena
 * (latin1 when every code unit fits a byte, else UTF-16, so any JS string round-trips
 * exactly, lone surrogates included) and an open-addressing table of typed arrays holds,
 * per name, the 32-bit hash of its collision key and where its spelling is: ~25 bytes per
 * name in all, outside the JS heap. A lookup hashes the key, walks the probe run and
 * compares the folded spellings of the slots with the same hash, so a hash collision costs
 * a comparison, never a wrong answer.
 */
import { collisionKey } from '../names.js';

const EMPTY = 0;
const TOMB = 1;
/** Bit 15 of a slot's length: the spelling is stored as UTF-16 (else latin1). */
const WIDE = 0x8000;

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

/** FNV-1a over the UTF-16 code units; never EMPTY or TOMB. */
export function keyHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h >>>= 0;
  return h < 2 ? h + 2 : h;
}

export class NameTable {
  #hash = new Uint32Array(16);
  #off = new Uint32Array(16);
  #len = new Uint16Array(16);
  #arena = Buffer.allocUnsafe(256);
  #used = 0;
  #size = 0;
  #tombs = 0;

  get size(): number {
    return this.#size;
  }

  /** Bytes held (table and arena), for tests and the status of long runs. */
  get bytes(): number {
    return this.#hash.byteLength + this.#off.byteLength + this.#len.byteLength + this.#arena.byteLength;
  }

  #spelling(slot: number): string {
    const len = this.#len[slot]!;
    const off = this.#off[slot]!;
    return len & WIDE ? this.#arena.toString('utf16le', off, off + (len & ~WIDE)) : this.#arena.toString('latin1', off, off + len);
  }

  /** Slots whose name has collision key `key` (hash `h`), in insertion order of the probe run. */
  #slots(key: string, h: number): number[] {
    const mask = this.#hash.length - 1;
    const out: number[] = [];
    for (let i = h & mask; this.#hash[i] !== EMPTY; i = (i + 1) & mask) {
      if (this.#hash[i] === h && collisionKey(this.#spelling(i)) === key) out.push(i);
    }
    return out;
  }

  /** Every stored spelling whose collision key is `key`. */
  spellings(key: string): string[] {
    return this.#slots(key, keyHash(key)).map((s) => this.#spelling(s));
  }

  hasKey(key: string): boolean {
    return this.#slots(key, keyHash(key)).length > 0;
  }

  has(name: string): boolean {
    return this.spellings(collisionKey(name)).includes(name);
  }

  add(name: string): void {
    const key = collisionKey(name);
    const h = keyHash(key);
    if (this.#slots(key, h).some((s) => this.#spelling(s) === name)) return;
    if ((this.#size + this.#tombs + 1) * 4 > this.#hash.length * 3) this.#rehash(this.#size + 1);
    const wide = !isLatin1(name);
    const bytes = wide ? name.length * 2 : name.length;
    if (bytes >= WIDE) throw new RangeError(`name too long for the index: ${bytes} bytes`);
    if (this.#used + bytes > this.#arena.length) this.#compact(bytes);
    this.#arena.write(name, this.#used, wide ? 'utf16le' : 'latin1');
    const mask = this.#hash.length - 1;
    let i = h & mask;
    while (this.#hash[i] !== EMPTY && this.#hash[i] !== TOMB) i = (i + 1) & mask;
    if (this.#hash[i] === TOMB) this.#tombs--;
    this.#hash[i] = h;
    this.#off[i] = this.#used;
    this.#len[i] = wide ? bytes | WIDE : bytes;
    this.#used += bytes;
    this.#size++;
  }

  remove(name: string): void {
    const key = collisionKey(name);
    const slot = this.#slots(key, keyHash(key)).find((s) => this.#spelling(s) === name);
    if (slot === undefined) return;
    this.#hash[slot] = TOMB;
    this.#size--;
    this.#tombs++;
  }

  names(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.#hash.length; i++) if (this.#hash[i]! > TOMB) out.push(this.#spelling(i));
    return out;
  }

  /** Room for `need` more bytes: live spellings copied into a fresh arena (garbage dropped), grown when needed. */
  #compact(need: number): void {
    let live = 0;
    for (let i = 0; i < this.#hash.length; i++) if (this.#hash[i]! > TOMB) live += this.#len[i]! & ~WIDE;
    // At most 3/4 full after it: the next compaction is a quarter of the arena's adds away.
    let cap = this.#arena.length;
    while (live + need > (cap * 3) / 4) cap = Math.ceil(cap * 1.5);
    const arena = Buffer.allocUnsafe(cap);
    let used = 0;
    for (let i = 0; i < this.#hash.length; i++) {
      if (this.#hash[i]! <= TOMB) continue;
      const n = this.#len[i]! & ~WIDE;
      this.#arena.copy(arena, used, this.#off[i]!, this.#off[i]! + n);
      this.#off[i] = used;
      used += n;
    }
    this.#arena = arena;
    this.#used = used;
  }

  /** A table sized for `n` names (load <= 1/2 after it), tombstones dropped. */
  #rehash(n: number): void {
    let cap = 16;
    while (cap < n * 2) cap *= 2;
    const [hash, off, len] = [this.#hash, this.#off, this.#len];
    this.#hash = new Uint32Array(cap);
    this.#off = new Uint32Array(cap);
    this.#len = new Uint16Array(cap);
    const mask = cap - 1;
    for (let j = 0; j < hash.length; j++) {
      if (hash[j]! <= TOMB) continue;
      let i = hash[j]! & mask;
      while (this.#hash[i] !== EMPTY) i = (i + 1) & mask;
      this.#hash[i] = hash[j]!;
      this.#off[i] = off[j]!;
      this.#len[i] = len[j]!;
    }
    this.#tombs = 0;
  }
}
