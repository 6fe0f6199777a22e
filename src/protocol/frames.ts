/**
 * tdxfer v1 frame codec (see PROTOCOL.md). Every frame is an 8-byte header
 * (magic "TX", version, type, uint32 BE payload length) and a payload: one UTF-8 JSON
 * object for control frames, raw file bytes for DATA.
 *
 * Pure: the socket layer feeds bytes to FrameDecoder.push() and writes what
 * encodeFrame()/encodeDataHeader() return.
 */
import { Buffer } from 'node:buffer';
import { ProtocolError } from './errors.js';
import {
  DEFAULT_LIMITS,
  decodePayload,
  encodePayload,
  type ControlPayloads,
  type ControlTypeName,
  type DecoderLimits,
} from './messages.js';

export const HEADER_BYTES = 8;
export const MAGIC_0 = 0x54; // 'T'
export const MAGIC_1 = 0x58; // 'X'
export const PROTOCOL_VERSION = 1;

export const FrameType = {
  HELLO: 0x01,
  WELCOME: 0x02,
  AUTH: 0x03,
  READY: 0x04,
  OFFER: 0x10,
  ACCEPT: 0x11,
  DATA: 0x12,
  END: 0x13,
  ACK: 0x14,
  NACK: 0x15,
  ABORT: 0x16,
  PING: 0x20,
  PONG: 0x21,
  ERROR: 0x7f,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];
export type FrameTypeName = Lowercase<keyof typeof FrameType>;

const NAME_BY_CODE = new Map<number, FrameTypeName>(
  Object.entries(FrameType).map(([k, v]) => [v, k.toLowerCase() as FrameTypeName]),
);

export type ControlFrame = { [K in ControlTypeName]: { type: K } & ControlPayloads[K] }[ControlTypeName];
export interface DataFrame { type: 'data'; data: Buffer }
export type Frame = ControlFrame | DataFrame;
/** The frame of one type, e.g. `FrameOf<'offer'>`. */
export type FrameOf<K extends FrameTypeName> = Extract<Frame, { type: K }>;

export type { DecoderLimits };
export { DEFAULT_LIMITS };

/** Checked limits per caller's object (encodeFrame runs per frame; checking each time cost ~4 % of a small-file sender, issue #12). */
const resolved = new WeakMap<object, DecoderLimits>();
let resolvedDefaults: DecoderLimits | null = null;

function resolveLimits(partial: Partial<DecoderLimits> | undefined): DecoderLimits {
  if (partial === undefined) return (resolvedDefaults ??= checkLimits(undefined));
  let l = resolved.get(partial);
  if (!l) {
    l = checkLimits(partial);
    resolved.set(partial, l);
  }
  return l;
}

function checkLimits(partial: Partial<DecoderLimits> | undefined): DecoderLimits {
  const limits = { ...DEFAULT_LIMITS, ...partial };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 0 || (key !== 'maxFileBytes' && value > 0xffffffff)) {
      throw new RangeError(`Expected limit \`${key}\` to be an integer from 0 to ${key === 'maxFileBytes' ? Number.MAX_SAFE_INTEGER : 0xffffffff}, got ${String(value)}`);
    }
  }
  return limits;
}

function writeHeader(target: Buffer, code: number, length: number): void {
  target[0] = MAGIC_0;
  target[1] = MAGIC_1;
  target[2] = PROTOCOL_VERSION;
  target[3] = code;
  target.writeUInt32BE(length, 4);
}

/**
 * The 8-byte header of a DATA frame carrying `length` bytes, so the socket layer can
 * write header and file chunk without copying them together.
 */
export function encodeDataHeader(length: number, maxDataBytes: number = DEFAULT_LIMITS.maxDataBytes): Buffer {
  if (!Number.isInteger(length) || length < 0 || length > maxDataBytes) {
    throw new ProtocolError('FRAME_TOO_LARGE', `Cannot send a DATA frame of ${length} bytes: expected an integer from 0 to ${maxDataBytes} (maxDataBytes); split the chunk`, { frame: 'data' });
  }
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  writeHeader(header, FrameType.DATA, length);
  return header;
}

/**
 * Encode one frame. Control frames are validated first (ProtocolError BAD_MESSAGE /
 * FRAME_TOO_LARGE), so garbage is never sent; only the known fields are written, in
 * wire order. DATA frames are copied into one buffer: for streaming, prefer
 * encodeDataHeader() followed by the chunk.
 */
export function encodeFrame(frame: Frame, limits?: Partial<DecoderLimits>): Buffer {
  const l = resolveLimits(limits);
  if (frame.type === 'data') {
    if (!Buffer.isBuffer(frame.data)) throw new ProtocolError('BAD_MESSAGE', 'Cannot send DATA frame: `data` must be a Buffer', { frame: 'data', field: 'data' });
    return Buffer.concat([encodeDataHeader(frame.data.length, l.maxDataBytes), frame.data]);
  }
  const typeKey = frame.type.toUpperCase() as Uppercase<ControlTypeName>;
  const code = FrameType[typeKey] as number | undefined;
  if (code === undefined) {
    throw new ProtocolError('UNKNOWN_TYPE', `Cannot send a frame of type ${JSON.stringify(frame.type)}: expected one of ${[...NAME_BY_CODE.values()].join(', ')}`);
  }
  const payload = encodePayload(frame.type, frame, l);
  const json = Buffer.from(JSON.stringify(payload), 'utf8');
  if (json.length > l.maxControlBytes) {
    throw new ProtocolError('FRAME_TOO_LARGE', `Cannot send ${typeKey} frame: its JSON payload is ${json.length} bytes, over the ${l.maxControlBytes}-byte limit (maxControlBytes)`, { frame: frame.type });
  }
  const out = Buffer.allocUnsafe(HEADER_BYTES + json.length);
  writeHeader(out, code, json.length);
  json.copy(out, HEADER_BYTES);
  return out;
}

/** Recognisable first bytes of other protocols, to turn "bad magic" into a hint. */
const FOREIGN: Array<{ test: (h: Buffer) => boolean; hint: string }> = [
  {
    test: (h) => h[0] === 0x16 && h[1] === 0x03,
    hint: 'looks like TLS: this port expects plain tdxfer, or the peer has encryption on (set security.encrypt the same on both agents)',
  },
  {
    test: (h) => /^(GET |POST|PUT |HEAD|DELE|OPTI|PATC|CONN)/.test(h.toString('latin1', 0, 4)),
    hint: 'looks like HTTP: this is the tdxfer transfer port, not the status API',
  },
  {
    // Original TOX framing: 2-byte length, then a JSON header starting with {"
    test: (h) => h[2] === 0x7b && h[3] === 0x22,
    hint: 'looks like the original TOX protocol: point it at the legacy port (legacy.listen) instead',
  },
];

function describeBytes(h: Buffer): string {
  const hex = [...h].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  const ascii = [...h].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
  return `${hex} ("${ascii}")`;
}

interface Header { name: FrameTypeName; length: number }

function parseHeader(h: Buffer, limits: DecoderLimits): Header {
  if (h[0] !== MAGIC_0 || h[1] !== MAGIC_1) {
    const hint = FOREIGN.find((f) => f.test(h))?.hint;
    throw new ProtocolError('BAD_MAGIC', `Not a tdxfer frame: expected magic 54 58 ("TX"), got ${describeBytes(h)}${hint ? `; ${hint}` : ''}`);
  }
  const version = h[2]!;
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError('BAD_VERSION', `Peer speaks tdxfer protocol version ${version}, this agent speaks version ${PROTOCOL_VERSION}: run the same tdxfer version on both agents`, { version });
  }
  const code = h[3]!;
  const name = NAME_BY_CODE.get(code);
  if (name === undefined) {
    throw new ProtocolError('UNKNOWN_TYPE', `Unknown tdxfer v1 frame type 0x${code.toString(16).padStart(2, '0')}: the peer sent something this version does not define`);
  }
  const length = h.readUInt32BE(4);
  const max = name === 'data' ? limits.maxDataBytes : limits.maxControlBytes;
  if (length > max) {
    throw new ProtocolError('FRAME_TOO_LARGE', `${name.toUpperCase()} frame announces ${length} payload bytes, over the ${max}-byte limit (${name === 'data' ? 'maxDataBytes' : 'maxControlBytes'})`, { frame: name });
  }
  return { name, length };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decodeBody(name: FrameTypeName, payload: Buffer, limits: DecoderLimits): Frame {
  if (name === 'data') return { type: 'data', data: payload };
  let json: unknown;
  try {
    json = JSON.parse(utf8.decode(payload));
  } catch (cause) {
    throw new ProtocolError('BAD_JSON', `${name.toUpperCase()} frame payload (${payload.length} bytes) is not valid UTF-8 JSON: ${cause instanceof Error ? cause.message : String(cause)}`, { frame: name, cause });
  }
  return { type: name, ...decodePayload(name, json, limits) } as Frame;
}

/**
 * Incremental decoder: push() returns every whole frame completed by the chunk and
 * keeps the rest.
 *
 * Invariants:
 * - At most HEADER_BYTES + limit bytes are held; a length over the limit is rejected
 *   from the header alone, before any payload byte is stored.
 * - A DATA payload lying inside one pushed chunk is returned as a subarray of that chunk
 *   (zero copy: the caller must not reuse the chunk's memory); a payload split across
 *   chunks is copied exactly once, or, with `splitData`, never: each part is returned
 *   as soon as it arrives, as its own DATA frame (a subarray of the chunk it came in).
 *   The parts of one payload are consecutive, so the byte stream is the same; only the
 *   frame boundaries of DATA are not kept (a receiver only counts and stores the bytes, PROTOCOL.md section 6).
 * - Once push() has thrown, the decoder is dead: every later push() throws the same
 *   ProtocolError. Frames completed earlier in the failing chunk are dropped with it
 *   (the connection is closing anyway).
 */
export interface DecoderOptions {
  /**
   * Deliver a DATA payload that spans several pushed chunks as several DATA frames, one
   * per chunk, without copying (default false: one frame, copied together). For the
   * transfer path: with TLS every 16 KiB record arrives as its own chunk, so nearly
   * every 1 MiB payload would otherwise be copied into a freshly allocated buffer.
   */
  splitData?: boolean;
}

export class FrameDecoder {
  readonly limits: Readonly<DecoderLimits>;
  readonly #splitData: boolean;
  readonly #head = Buffer.alloc(HEADER_BYTES);
  #headLength = 0;
  #header: Header | null = null;
  #payload: Buffer | null = null;
  #payloadLength = 0;
  /** splitData: bytes of the current DATA payload still to come (0 = not inside one). */
  #dataLeft = 0;
  #dead: { error: unknown } | null = null;

  constructor(limits?: Partial<DecoderLimits>, options: DecoderOptions = {}) {
    this.limits = Object.freeze(checkLimits(limits));
    this.#splitData = options.splitData === true;
  }

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.#headLength + this.#payloadLength;
  }

  /** The error that killed this decoder (a ProtocolError), or null while it is alive. */
  get error(): unknown {
    return this.#dead?.error ?? null;
  }

  push(chunk: Buffer): Frame[] {
    if (this.#dead) throw this.#dead.error;
    try {
      return this.#push(chunk);
    } catch (err) {
      // Anything but a ProtocolError here is a bug in this file: rethrown as is so the
      // fuzz tests see it, and the decoder is dead all the same.
      this.#dead = { error: err };
      this.#headLength = 0;
      this.#payload = null;
      this.#payloadLength = 0;
      this.#dataLeft = 0;
      throw err;
    }
  }

  #push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let pos = 0;
    for (;;) {
      if (this.#dataLeft > 0) {
        // splitData: the rest of a DATA payload, passed on as it comes.
        if (pos === chunk.length) break;
        const n = Math.min(this.#dataLeft, chunk.length - pos);
        frames.push({ type: 'data', data: chunk.subarray(pos, pos + n) });
        pos += n;
        this.#dataLeft -= n;
        if (this.#dataLeft > 0) break;
        this.#header = null;
        continue;
      }
      if (this.#header === null) {
        if (this.#headLength === 0 && chunk.length - pos >= HEADER_BYTES) {
          this.#header = parseHeader(chunk.subarray(pos, pos + HEADER_BYTES), this.limits);
          pos += HEADER_BYTES;
        } else {
          const n = Math.min(HEADER_BYTES - this.#headLength, chunk.length - pos);
          chunk.copy(this.#head, this.#headLength, pos, pos + n);
          this.#headLength += n;
          pos += n;
          if (this.#headLength < HEADER_BYTES) break;
          this.#header = parseHeader(this.#head, this.limits);
          this.#headLength = 0;
        }
      }
      const { name, length } = this.#header;
      if (this.#payload === null) {
        if (chunk.length - pos >= length) {
          frames.push(decodeBody(name, chunk.subarray(pos, pos + length), this.limits));
          pos += length;
          this.#header = null;
          continue;
        }
        if (pos === chunk.length) break;
        if (name === 'data' && this.#splitData) {
          frames.push({ type: 'data', data: chunk.subarray(pos) });
          this.#dataLeft = length - (chunk.length - pos);
          break;
        }
        this.#payload = Buffer.allocUnsafe(length);
        this.#payloadLength = 0;
      }
      const n = Math.min(length - this.#payloadLength, chunk.length - pos);
      chunk.copy(this.#payload, this.#payloadLength, pos, pos + n);
      this.#payloadLength += n;
      pos += n;
      if (this.#payloadLength < length) break;
      const payload = this.#payload;
      this.#payload = null;
      this.#payloadLength = 0;
      this.#header = null;
      frames.push(decodeBody(name, payload, this.limits));
    }
    return frames;
  }
}
