/**
 * Streaming XXH3-128 (seed 0, default secret) whose long-input loop runs in WebAssembly
 * SIMD (src/xxh3/xxh3.wat): the same digests as hash-wasm's createXXHash128 and
 * `xxhsum -H2`, at several times its speed (README "Performance"). Inputs of at most 240
 * bytes take XXH3's short and mid-size paths, which stay with hash-wasm (one shared
 * instance, used synchronously for one digest at a time).
 *
 * Each hash owns one instance of the module (its memory holds the whole state); finished
 * instances go back to a small pool, since making one costs more than hashing a small file.
 * Where the runtime has no WebAssembly SIMD, `xxh3SimdAvailable` is false and src/hash.ts
 * uses hash-wasm for everything.
 */
import { createXXHash128, type IHasher } from 'hash-wasm';
import { XXH3_WASM_BASE64 } from './xxh3-wasm.gen.js';

/** Offsets in the module's memory (see the table at the top of xxh3.wat). */
const OUT = 272;
const INPUT = 576;
/** Bytes [0, STATE_END) are a complete snapshot of a hash, short inputs' bytes included. */
const SHORT_MAX = 240;
const STATE_END = INPUT + SHORT_MAX;
/** New bytes per update() call into the module: what fits in its 4 pages after INPUT. */
const CHUNK = 4 * 65536 - INPUT;

interface Xxh3Exports {
  readonly memory: { readonly buffer: ArrayBuffer };
  init(): void;
  update(n: number): void;
  digest(len: number): void;
}

/** The part of the WebAssembly JS API used here (the project's lib settings leave it untyped). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { readonly exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const wasmBytes = Buffer.from(XXH3_WASM_BASE64, 'base64');

/** Whether this runtime validates the SIMD module (Node 16.4+ on any CPU V8 supports). */
export const xxh3SimdAvailable: boolean = (() => {
  try {
    return wasm.validate(wasmBytes);
  } catch {
    return false;
  }
})();

let compiled: object | null = null;
const POOL_MAX = 32;
const pool: Xxh3Exports[] = [];

function instance(): Xxh3Exports {
  const pooled = pool.pop();
  if (pooled) return pooled;
  compiled ??= new wasm.Module(wasmBytes);
  return new wasm.Instance(compiled).exports as Xxh3Exports;
}

let shortHasher: IHasher | null = null;
let shortPending: Promise<IHasher> | null = null;

/** Readies the hash-wasm instance that digests inputs of at most 240 bytes; call (and await) before using Xxh3Simd. */
export async function readyXxh3Simd(): Promise<void> {
  if (shortHasher) return;
  shortPending ??= createXXHash128();
  try {
    shortHasher = await shortPending;
  } finally {
    shortPending = null;
  }
}

function shortDigest(bytes: Uint8Array): string {
  if (!shortHasher) throw new Error('readyXxh3Simd() was not awaited');
  return shortHasher.init().update(bytes).digest('hex');
}

/** A snapshot of an Xxh3Simd (save()): the module's state bytes and the length so far. */
export interface Xxh3Snapshot {
  readonly total: number;
  readonly mem: Uint8Array;
}

export class Xxh3Simd {
  #x: Xxh3Exports | null;
  #mem: Uint8Array;
  #total: number;

  constructor(from?: Xxh3Snapshot) {
    const x = instance();
    this.#x = x;
    this.#mem = new Uint8Array(x.memory.buffer);
    if (from) {
      this.#mem.set(from.mem, 0);
      this.#total = from.total;
    } else {
      x.init();
      this.#total = 0;
    }
  }

  #live(): Xxh3Exports {
    if (!this.#x) throw new Error('XXH3-128 hash used after digest()');
    return this.#x;
  }

  update(data: Uint8Array): void {
    const x = this.#live();
    let o = 0;
    if (this.#total <= SHORT_MAX) {
      // Short so far: collect the bytes at INPUT; past 240 they become the first update's start.
      const room = SHORT_MAX - this.#total;
      if (data.length <= room) {
        this.#mem.set(data, INPUT + this.#total);
        this.#total += data.length;
        return;
      }
      const have = this.#total;
      o = Math.min(data.length, CHUNK - have);
      this.#mem.set(data.subarray(0, o), INPUT + have);
      this.#total += o;
      x.update(have + o);
    }
    while (o < data.length) {
      const n = Math.min(CHUNK, data.length - o);
      this.#mem.set(data.subarray(o, o + n), INPUT);
      x.update(n);
      o += n;
      this.#total += n;
    }
  }

  /** Hex digest of the bytes so far; updating may go on. */
  peek(): string {
    const x = this.#live();
    if (this.#total <= SHORT_MAX) return shortDigest(this.#mem.subarray(INPUT, INPUT + this.#total));
    x.digest(this.#total);
    return Buffer.from(this.#mem.buffer, OUT, 16).toString('hex');
  }

  /** Hex digest of all bytes; the hash is spent and its instance goes back to the pool. */
  digest(): string {
    const d = this.peek();
    if (pool.length < POOL_MAX) pool.push(this.#x!);
    this.#x = null;
    return d;
  }

  save(): Xxh3Snapshot {
    this.#live();
    return { total: this.#total, mem: this.#mem.slice(0, STATE_END) };
  }
}
