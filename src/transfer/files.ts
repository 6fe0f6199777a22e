/**
 * PURE per-file rules of a protocol v1 connection after READY (PROTOCOL.md 6), receiving
 * side: which OFFER / DATA / END / ABORT is legal now, and what to do with it. One file
 * streams at a time (OFFER → ACCEPT → DATA… → END), or one eager file is gathered in
 * memory (OFFER eager → DATA… → END, no ACCEPT); an id stays taken until its ACK or NACK.
 * No I/O: receiver.ts asks, then does the writing, landing and answering, and tells the
 * machine what happened (admitted, answered, writeFailed). Illegal frames throw the
 * TdxError the connection fails with (OUT_OF_ORDER, SIZE_MISMATCH).
 */
import { TdxError } from '../errors.js';

export type FileState =
  | { kind: 'idle' }
  /** A streamed OFFER waits for the inbox's verdict (ACCEPT, or an ACK/NACK at once). */
  | { kind: 'admitting'; id: number; path: string; size: number }
  | { kind: 'streaming'; id: number; path: string; size: number; received: number }
  | { kind: 'gathering'; id: number; path: string; size: number; received: number };

export interface OfferEvent {
  id: number;
  path: string;
  size: number;
  eager?: boolean | undefined;
}

export type OfferVerdict = { kind: 'gather' } | { kind: 'admit' };
export type DataVerdict = { kind: 'gather' } | { kind: 'write'; received: number };
export type EndVerdict =
  /** All bytes there: land it (eager: from memory). */
  | { kind: 'commit'; eager: boolean }
  /** Fewer bytes than offered: NACK SIZE_MISMATCH (and drop the partial). */
  | { kind: 'short'; eager: boolean; received: number; size: number };
export type AbortVerdict = { kind: 'drop'; eager: boolean } | { kind: 'ignore' };

export class ReceivingFiles {
  #state: FileState = { kind: 'idle' };
  /** Ids offered and not yet answered with ACK/NACK (or abandoned with ABORT). */
  readonly #unfinished = new Set<number>();

  constructor(private readonly eagerMaxBytes: number) {}

  get state(): Readonly<FileState> {
    return this.#state;
  }

  /** A file is streaming or being gathered (the connection is busy). */
  get busy(): boolean {
    return this.#state.kind !== 'idle';
  }

  isUnfinished(id: number): boolean {
    return this.#unfinished.has(id);
  }

  offer(f: OfferEvent): OfferVerdict {
    if (this.#state.kind !== 'idle') throw new TdxError('OUT_OF_ORDER', `unexpected OFFER frame: expected DATA or END for the file being received`);
    if (this.#unfinished.has(f.id)) throw new TdxError('OUT_OF_ORDER', `OFFER reuses id ${f.id}, which is not answered yet (section 6.2)`);
    if (f.eager === true && f.size > this.eagerMaxBytes) {
      throw new TdxError('OUT_OF_ORDER', `eager OFFER of ${f.size} bytes for ${f.path}, over the announced eagerMaxBytes ${this.eagerMaxBytes}`);
    }
    this.#unfinished.add(f.id);
    if (f.eager === true) {
      this.#state = { kind: 'gathering', id: f.id, path: f.path, size: f.size, received: 0 };
      return { kind: 'gather' };
    }
    this.#state = { kind: 'admitting', id: f.id, path: f.path, size: f.size };
    return { kind: 'admit' };
  }

  /** The inbox took the streamed offer: ACCEPT at `offset` (bytes kept from an earlier attempt). */
  accepted(id: number, offset: number): void {
    const s = this.#state;
    if (s.kind !== 'admitting' || s.id !== id) throw new TdxError('INTERNAL', `accepted(${id}) in state ${s.kind}`);
    this.#state = { kind: 'streaming', id, path: s.path, size: s.size, received: offset };
  }

  /** ACK or NACK sent for `id`: the id may be used again; a file admitting under it is over. */
  answered(id: number): void {
    this.#unfinished.delete(id);
    const s = this.#state;
    if (s.kind === 'admitting' && s.id === id) this.#state = { kind: 'idle' };
  }

  data(bytes: number): DataVerdict {
    const s = this.#state;
    if (s.kind !== 'streaming' && s.kind !== 'gathering') throw new TdxError('OUT_OF_ORDER', 'DATA frame without an accepted OFFER');
    if (s.received + bytes > s.size) throw new TdxError('SIZE_MISMATCH', `more DATA than offered for ${s.path}: ${s.received + bytes} > ${s.size} bytes`);
    s.received += bytes;
    return s.kind === 'gathering' ? { kind: 'gather' } : { kind: 'write', received: s.received };
  }

  /** Writing a streamed file failed mid-file: it is over (the receiver NACKs and ends the connection). */
  writeFailed(): void {
    if (this.#state.kind === 'streaming') this.#state = { kind: 'idle' };
  }

  end(id: number): EndVerdict {
    const s = this.#state;
    if ((s.kind !== 'streaming' && s.kind !== 'gathering') || s.id !== id) throw new TdxError('OUT_OF_ORDER', `END for file ${id} which is not being received`);
    this.#state = { kind: 'idle' };
    const eager = s.kind === 'gathering';
    return s.received === s.size ? { kind: 'commit', eager } : { kind: 'short', eager, received: s.received, size: s.size };
  }

  abort(id: number): AbortVerdict {
    this.#unfinished.delete(id);
    const s = this.#state;
    // Nothing in progress for it (e.g. aborted right after OFFER was refused): nothing to do.
    if ((s.kind !== 'streaming' && s.kind !== 'gathering') || s.id !== id) return { kind: 'ignore' };
    this.#state = { kind: 'idle' };
    return { kind: 'drop', eager: s.kind === 'gathering' };
  }

  /** The connection closed: what was in progress (a streamed file keeps its bytes for resume). */
  closed(): FileState {
    const s = this.#state;
    this.#state = { kind: 'idle' };
    return s;
  }
}
