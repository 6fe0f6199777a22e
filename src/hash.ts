/**
 * The end-to-end file hashes (PROTOCOL.md 4.4): SHA-256, the v1 baseline every peer
 * speaks, and XXH3-128 (XXH128, as `xxhsum -H2` and rsync use it), ~10× cheaper in CPU
 * here (~0.06–0.09 s per GiB against ~0.7 s), negotiated in the handshake. Both run
 * incrementally; `peek()` gives the digest of the bytes so far (a resumed file's prefix)
 * and the hash goes on.
 *
 * XXH3-128 runs in WebAssembly, no native addon: inputs over 240 bytes in our own SIMD
 * module (src/xxh3/: half of hash-wasm's CPU per GiB in a micro-bench, a third inside
 * the agents; README "The file hash", 2026-12-07), the short paths and runtimes without
 * WebAssembly SIMD in hash-wasm's scalar module (same digests). Instantiating a
 * module costs far more than hashing a small file, so finished instances go back to small
 * pools and are reused. An abandoned FileHash (aborted transfer) is simply collected.
 *
 * Neither algorithm is keyed: the hash detects corruption (disk, memory, a bug), while
 * TLS-PSK authenticates the bytes on the wire. So choosing XXH3-128 weakens nothing
 * against an attacker; it only changes the odds of an undetected random corruption,
 * 2^-128 either way for practical purposes.
 */
import { createHash, type Hash } from 'node:crypto';
import { createXXHash128, type IHasher } from 'hash-wasm';
import { Xxh3Simd, readyXxh3Simd, xxh3SimdAvailable, type Xxh3Snapshot } from './xxh3/xxh3.js';

/** Wire names of the file hash algorithms (HELLO.hashes, WELCOME.hash). */
export type HashAlg = 'xxh3-128' | 'sha256';
/** Every algorithm this implementation speaks, most preferred first. */
export const HASH_ALGS: readonly HashAlg[] = Object.freeze(['xxh3-128', 'sha256']);
/** The v1 baseline: what a peer that announces no list (protocol before v1.1) uses. */
export const BASELINE_HASH: HashAlg = 'sha256';

export function isHashAlg(v: unknown): v is HashAlg {
  return v === 'xxh3-128' || v === 'sha256';
}

/** How people read the name ("SHA-256", "XXH3-128"). */
export function hashLabel(alg: HashAlg): string {
  return alg === 'sha256' ? 'SHA-256' : 'XXH3-128';
}

/** Length in lowercase hex characters of each algorithm's digest. */
export const DIGEST_HEX_CHARS: Readonly<Record<HashAlg, number>> = Object.freeze({ sha256: 64, 'xxh3-128': 32 });

/** An incremental hash of one file. */
export interface FileHash {
  readonly alg: HashAlg;
  update(data: Uint8Array): void;
  /** Lowercase hex digest of the bytes so far; updating may go on. */
  peek(): string;
  /** Lowercase hex digest of all bytes; the hash is spent. */
  digest(): string;
  /** The state so far, to go on from later with restoreFileHash() (any number of times); updating may go on. */
  save(): HashState;
}

/** A hash's state at some point (FileHash.save()): opaque, small. */
export interface HashState {
  readonly alg: HashAlg;
  readonly state: Hash | Uint8Array | Xxh3Snapshot;
}

class Sha256Hash implements FileHash {
  readonly alg = 'sha256' as const;
  readonly #h: Hash;
  constructor(h: Hash = createHash('sha256')) {
    this.#h = h;
  }
  update(data: Uint8Array): void {
    this.#h.update(data);
  }
  peek(): string {
    return this.#h.copy().digest('hex');
  }
  digest(): string {
    return this.#h.digest('hex');
  }
  save(): HashState {
    return { alg: this.alg, state: this.#h.copy() };
  }
}

const POOL_MAX = 64;
const pool: IHasher[] = [];
let compiling: Promise<IHasher> | null = null;

async function xxhInstance(): Promise<IHasher> {
  const h = pool.pop();
  if (h) return h.init();
  // The first one compiles the module: later callers wait for it instead of compiling too.
  if (compiling) {
    await compiling.catch(() => undefined); // its own caller reports a failure
    const again = pool.pop();
    if (again) return again.init();
  }
  const p = createXXHash128();
  compiling ??= p;
  return p;
}

let simd = xxh3SimdAvailable;

/** Which implementation computes XXH3-128 here: our SIMD module, or hash-wasm alone where WebAssembly SIMD is missing. */
export function xxh3Backend(): 'wasm-simd' | 'hash-wasm' {
  return simd ? 'wasm-simd' : 'hash-wasm';
}

/** Tests: hash XXH3-128 with hash-wasm alone, as a runtime without WebAssembly SIMD does (false: back to what is available). */
export function forceXxh3Fallback(on: boolean): void {
  simd = !on && xxh3SimdAvailable;
}

/** XXH3-128 in the SIMD module (src/xxh3/xxh3.ts). */
class Xxh128SimdHash implements FileHash {
  readonly alg = 'xxh3-128' as const;
  readonly #h: Xxh3Simd;
  constructor(h: Xxh3Simd) {
    this.#h = h;
  }
  update(data: Uint8Array): void {
    this.#h.update(data);
  }
  peek(): string {
    return this.#h.peek();
  }
  digest(): string {
    return this.#h.digest();
  }
  save(): HashState {
    return { alg: this.alg, state: this.#h.save() };
  }
}

/** XXH3-128 in hash-wasm's scalar module, where WebAssembly SIMD is missing. */
class Xxh128Hash implements FileHash {
  readonly alg = 'xxh3-128' as const;
  #h: IHasher | null;
  constructor(h: IHasher) {
    this.#h = h;
  }
  #live(): IHasher {
    if (!this.#h) throw new Error('XXH3-128 hash used after digest()');
    return this.#h;
  }
  update(data: Uint8Array): void {
    this.#live().update(data);
  }
  peek(): string {
    const h = this.#live();
    const state = h.save();
    const d = h.digest('hex');
    h.load(state);
    return d;
  }
  save(): HashState {
    return { alg: this.alg, state: this.#live().save() };
  }
  digest(): string {
    const h = this.#live();
    const d = h.digest('hex');
    this.#h = null;
    if (pool.length < POOL_MAX) pool.push(h);
    return d;
  }
}

/** A hash that goes on from a saved state (FileHash.save()); the state stays usable. */
export async function restoreFileHash(s: HashState): Promise<FileHash> {
  if (s.alg === 'sha256') return new Sha256Hash((s.state as Hash).copy());
  if (!(s.state instanceof Uint8Array)) {
    await readyXxh3Simd();
    return new Xxh128SimdHash(new Xxh3Simd(s.state as Xxh3Snapshot));
  }
  const h = await xxhInstance();
  h.load(s.state as Uint8Array);
  return new Xxh128Hash(h);
}

/** A fresh hash of `alg`. Async: XXH3-128 may need its WebAssembly instance first. */
export async function createFileHash(alg: HashAlg): Promise<FileHash> {
  if (alg === 'sha256') return new Sha256Hash();
  if (simd) {
    await readyXxh3Simd();
    return new Xxh128SimdHash(new Xxh3Simd());
  }
  return new Xxh128Hash(await xxhInstance());
}

/** Digest of one buffer (an eager file held whole). */
export async function hashOf(alg: HashAlg, data: Uint8Array): Promise<string> {
  const h = await createFileHash(alg);
  h.update(data);
  return h.digest();
}

/**
 * The server's pick (PROTOCOL.md 5.1): the first algorithm of its own list (its order of
 * preference) that the client announced. A client that announced no list (before v1.1)
 * speaks SHA-256 only. null: nothing in common (answered with ERROR UNSUPPORTED_PROTOCOL).
 */
export function pickHash(offered: readonly string[] | undefined, accepted: readonly HashAlg[]): HashAlg | null {
  const theirs = offered ?? [BASELINE_HASH];
  return accepted.find((a) => theirs.includes(a)) ?? null;
}
