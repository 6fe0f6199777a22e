/**
 * PURE codec for the original TouchDesigner "Threaded TCP Transfer" TOX protocol.
 *
 * One file per TCP connection:
 *   sender   -> [u16 BE n][n bytes JSON header][content-length bytes of MIME base64]
 *   receiver -> [u16 BE m][m bytes JSON answer header][content-length bytes of JSON {"success": true}]
 *
 * The header is what Python's `json.dumps` writes (`", "` / `": "` separators,
 * `ensure_ascii`), the payload what `base64.encodebytes` writes (76-character lines,
 * each followed by `\n`, nothing at all for an empty file). Both sides of tdxfer stream:
 * the payload is never held whole in memory.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { TdxError } from '../errors.js';

export type LegacyErrorCode = 'LEGACY_BAD_HEADER' | 'LEGACY_BAD_ANSWER' | 'LEGACY_BAD_BASE64' | 'LEGACY_TOO_LARGE';

/** A legacy frame or payload could not be decoded; the connection is dead. */
export class LegacyProtocolError extends TdxError {
  declare readonly code: LegacyErrorCode;
  constructor(code: LegacyErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'LegacyProtocolError';
  }
}

/** The original receiver has no limit; ours: headers are a few hundred bytes in practice. */
export const LEGACY_MAX_HEADER_BYTES = 16 * 1024;

export interface LegacyFileHeader {
  byteorder: string;
  'content-type': 'file';
  'content-encoding': 'base64';
  file_name: string;
  'content-length': number;
}

export interface LegacyAnswer {
  success: boolean;
  /** tdxfer receivers add this on failure; the original never answers false. */
  error?: string | undefined;
}

// ---------------------------------------------------------------------------
// JSON as Python writes it

/** A string literal as Python's json.dumps(ensure_ascii=True) writes it: DEL and all non-ASCII as lowercase \uXXXX. */
function pyString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** Flat object of strings, finite numbers and booleans, in insertion order, with Python's separators. */
function pyDumps(obj: Record<string, string | number | boolean>): string {
  const parts = Object.entries(obj).map(([k, v]) => {
    let val: string;
    if (typeof v === 'string') val = pyString(v);
    else if (typeof v === 'boolean') val = v ? 'true' : 'false';
    else if (Number.isSafeInteger(v)) val = String(v);
    else throw new TypeError(`legacy JSON: field ${k} must be a safe integer, got ${String(v)}`);
    return `${pyString(k)}: ${val}`;
  });
  return `{${parts.join(', ')}}`;
}

function frame(json: string): Buffer {
  const body = Buffer.from(json, 'utf8');
  if (body.length > 0xffff) throw new RangeError(`legacy header is ${body.length} bytes; the 2-byte length field allows at most 65535`);
  const out = Buffer.allocUnsafe(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

/**
 * The sender's request header, framed (length prefix included). Key order and
 * separators are exactly the original's, so a byte-for-byte comparison with Python holds.
 */
export function encodeLegacyHeader(obj: { file_name: string; 'content-length': number; byteorder?: string }): Buffer {
  return frame(
    pyDumps({
      byteorder: obj.byteorder ?? 'little',
      'content-type': 'file',
      'content-encoding': 'base64',
      file_name: obj.file_name,
      'content-length': obj['content-length'],
    }),
  );
}

/** The receiver's whole answer: framed answer header, then the JSON body `{"success": ...}` (plus `"error"` when given). */
export function legacyAnswer(success: boolean, error?: string, byteorder: string = 'little'): Buffer {
  const body: Record<string, string | boolean> = { success };
  if (!success && error !== undefined) body.error = error;
  const bodyBytes = Buffer.from(pyDumps(body), 'utf8');
  const head = frame(
    pyDumps({ byteorder, 'content-type': 'text/json', 'content-encoding': 'utf-8', 'content-length': bodyBytes.length }),
  );
  return Buffer.concat([head, bodyBytes]);
}

// ---------------------------------------------------------------------------
// Header decoding

function parseJsonObject(bytes: Buffer, what: string, code: LegacyErrorCode): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new LegacyProtocolError(code, `legacy ${what} is not valid UTF-8 JSON (${bytes.length} bytes)`, { cause: err });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new LegacyProtocolError(code, `legacy ${what} must be a JSON object`);
  }
  return v as Record<string, unknown>;
}

function checkLength(v: unknown, max: number, what: string, code: LegacyErrorCode): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new LegacyProtocolError(code, `legacy ${what}: "content-length" must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  if (v > max) {
    throw new LegacyProtocolError('LEGACY_TOO_LARGE', `legacy ${what}: "content-length" ${v} is over the limit of ${max} bytes`);
  }
  return v;
}

/** Validates a decoded request header object. Unknown extra fields are ignored, like the original does. */
export function validateLegacyHeader(o: Record<string, unknown>, maxContentLength: number): LegacyFileHeader {
  const code = 'LEGACY_BAD_HEADER';
  if (o['content-type'] !== 'file') {
    throw new LegacyProtocolError(code, `legacy header: "content-type" must be "file", got ${JSON.stringify(o['content-type'])}`);
  }
  if (o['content-encoding'] !== 'base64') {
    throw new LegacyProtocolError(code, `legacy header: "content-encoding" must be "base64", got ${JSON.stringify(o['content-encoding'])}`);
  }
  const name = o.file_name;
  if (typeof name !== 'string' || name === '') {
    throw new LegacyProtocolError(code, `legacy header: "file_name" must be a non-empty string, got ${JSON.stringify(name)}`);
  }
  const length = checkLength(o['content-length'], maxContentLength, 'header', code);
  const byteorder = typeof o.byteorder === 'string' ? o.byteorder : 'little';
  return { byteorder, 'content-type': 'file', 'content-encoding': 'base64', file_name: name, 'content-length': length };
}

/** Reads one length-prefixed JSON object incrementally; `push` returns it plus the bytes after it. */
class FramedJsonReader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  constructor(
    private readonly maxBytes: number,
    private readonly what: string,
    private readonly code: LegacyErrorCode,
  ) {}

  push(chunk: Buffer): { obj: Record<string, unknown>; rest: Buffer } | null {
    if (this.done) throw new Error(`legacy ${this.what} already decoded: feed the remaining bytes elsewhere`);
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length < 2) return null;
    const n = this.buf.readUInt16BE(0);
    if (n === 0) throw new LegacyProtocolError(this.code, `legacy ${this.what} has length 0`);
    if (n > this.maxBytes) {
      throw new LegacyProtocolError(this.code, `legacy ${this.what} is ${n} bytes, over the limit of ${this.maxBytes}: not a TOX peer?`);
    }
    if (this.buf.length < 2 + n) return null;
    this.done = true;
    const obj = parseJsonObject(this.buf.subarray(2, 2 + n), this.what, this.code);
    const rest = this.buf.subarray(2 + n);
    this.buf = Buffer.alloc(0);
    return { obj, rest };
  }

  /** Bytes held but not yet decoded (for truncation messages). */
  get buffered(): number {
    return this.buf.length;
  }
}

export interface LegacyHeaderDecoderOptions {
  /** Largest header accepted, bytes (default 16 KiB). */
  maxHeaderBytes?: number;
  /** Largest `content-length` accepted (encoded payload bytes). */
  maxContentLength: number;
}

/**
 * Incremental request-header decoder: `push(chunk)` returns null until the header is
 * complete, then `{ header, rest }` where `rest` are the payload bytes that came with
 * the last chunk. Throws LegacyProtocolError on anything invalid; it is then dead.
 */
export class LegacyHeaderDecoder {
  private readonly reader: FramedJsonReader;
  constructor(private readonly opts: LegacyHeaderDecoderOptions) {
    this.reader = new FramedJsonReader(opts.maxHeaderBytes ?? LEGACY_MAX_HEADER_BYTES, 'header', 'LEGACY_BAD_HEADER');
  }

  push(chunk: Buffer): { header: LegacyFileHeader; rest: Buffer } | null {
    const r = this.reader.push(chunk);
    if (r === null) return null;
    return { header: validateLegacyHeader(r.obj, this.opts.maxContentLength), rest: r.rest };
  }

  get buffered(): number {
    return this.reader.buffered;
  }
}

/**
 * Incremental answer decoder (sender side): `push(chunk)` returns null until the answer
 * header and its body are complete, then the answer. Throws LegacyProtocolError when
 * the bytes are not a TOX answer.
 */
export class LegacyAnswerDecoder {
  private readonly reader = new FramedJsonReader(LEGACY_MAX_HEADER_BYTES, 'answer header', 'LEGACY_BAD_ANSWER');
  private bodyLength = -1;
  private body: Buffer = Buffer.alloc(0);
  private answer: LegacyAnswer | null = null;

  push(chunk: Buffer): LegacyAnswer | null {
    if (this.answer !== null) return this.answer;
    let data = chunk;
    if (this.bodyLength < 0) {
      const r = this.reader.push(chunk);
      if (r === null) return null;
      const h = r.obj;
      if (h['content-type'] !== 'text/json' || h['content-encoding'] !== 'utf-8') {
        throw new LegacyProtocolError(
          'LEGACY_BAD_ANSWER',
          `legacy answer header must have "content-type": "text/json" and "content-encoding": "utf-8", got ${JSON.stringify(h['content-type'])} / ${JSON.stringify(h['content-encoding'])}`,
        );
      }
      this.bodyLength = checkLength(h['content-length'], LEGACY_MAX_HEADER_BYTES, 'answer header', 'LEGACY_BAD_ANSWER');
      data = r.rest;
    }
    this.body = this.body.length === 0 ? data : Buffer.concat([this.body, data]);
    if (this.body.length < this.bodyLength) return null;
    const o = parseJsonObject(this.body.subarray(0, this.bodyLength), 'answer', 'LEGACY_BAD_ANSWER');
    if (typeof o.success !== 'boolean') {
      throw new LegacyProtocolError('LEGACY_BAD_ANSWER', `legacy answer must have a boolean "success", got ${JSON.stringify(o.success)}`);
    }
    this.answer = { success: o.success, error: typeof o.error === 'string' ? o.error : undefined };
    return this.answer;
  }
}

/** One-shot form of LegacyAnswerDecoder: the answer if `buf` holds a complete one, else null. */
export function parseLegacyAnswer(buf: Buffer): LegacyAnswer | null {
  return new LegacyAnswerDecoder().push(buf);
}

// ---------------------------------------------------------------------------
// MIME base64 (Python base64.encodebytes / decodebytes)

/** Input bytes per 76-character output line. */
const LINE_BYTES = 57;

/** Exact length of `base64.encodebytes` output for `n` input bytes. */
export function base64MimeLength(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`base64MimeLength: n must be a non-negative integer, got ${n}`);
  const chars = 4 * Math.ceil(n / 3);
  return chars + Math.ceil(chars / 76);
}

/** Largest decoded size `content-length` encoded bytes can carry (CRLF or no line breaks at all). */
export function base64MaxDecodedLength(contentLength: number): number {
  return Math.floor(contentLength / 4) * 3;
}

/** Largest `content-length` worth accepting for files up to `maxFileBytes`: MIME with CRLF line breaks. */
export function base64MaxEncodedLength(maxFileBytes: number): number {
  const chars = 4 * Math.ceil(maxFileBytes / 3);
  return chars + 2 * Math.ceil(chars / 76);
}

/** Pure incremental encoder: `push` returns whole 76-character lines, `end` the last short line. */
export class Base64MimeEncoderCore {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer {
    const data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const lines = Math.floor(data.length / LINE_BYTES);
    const used = lines * LINE_BYTES;
    // Copy: the caller may reuse its chunk, and a subarray would pin it.
    this.pending = Buffer.from(data.subarray(used));
    if (lines === 0) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(lines * 77);
    const b64 = Buffer.from(data.subarray(0, used).toString('base64'), 'latin1');
    for (let i = 0; i < lines; i++) {
      b64.copy(out, i * 77, i * 76, i * 76 + 76);
      out[i * 77 + 76] = 0x0a;
    }
    return out;
  }

  end(): Buffer {
    if (this.pending.length === 0) return Buffer.alloc(0);
    const out = Buffer.from(this.pending.toString('base64') + '\n', 'latin1');
    this.pending = Buffer.alloc(0);
    return out;
  }
}

/** Bytes in, `base64.encodebytes` text out, streaming (never more than 56 bytes held). */
export class Base64MimeEncoder extends Transform {
  private readonly core = new Base64MimeEncoderCore();
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out = this.core.push(chunk);
    if (out.length > 0) this.push(out);
    cb();
  }
  override _flush(cb: TransformCallback): void {
    const out = this.core.end();
    if (out.length > 0) this.push(out);
    cb();
  }
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
/** 0-63: digit value; SKIP: line break; PAD: '='; BAD: anything else. */
const SKIP = 64;
const PAD = 65;
const BAD = 255;
const DECODE = new Uint8Array(256).fill(BAD);
for (let i = 0; i < 64; i++) DECODE[ALPHABET.charCodeAt(i)] = i;
DECODE[0x0a] = SKIP;
DECODE[0x0d] = SKIP;
DECODE[0x3d] = PAD;

function describeByte(b: number): string {
  return b >= 0x20 && b < 0x7f ? `'${String.fromCharCode(b)}' (0x${b.toString(16).padStart(2, '0')})` : `0x${b.toString(16).padStart(2, '0')}`;
}

/**
 * Pure incremental base64 decoder. Accepts the standard alphabet with line breaks
 * (LF or CRLF) anywhere and of any length, or none. Rejects any other byte, '=' that
 * is not final padding, data after the padding, and an incomplete last group.
 * `offset` in errors counts encoded bytes from the start of the payload.
 */
export class Base64DecoderCore {
  /** Bits of the current 4-character group, and how many characters it holds. */
  private acc = 0;
  private n = 0;
  /** '=' seen: afterwards only the '=' that complete the group, and line breaks. */
  private padding = false;
  private padsMissing = 0;
  private offset = 0;
  /** Decoded bytes so far. */
  decoded = 0;

  constructor(private readonly maxDecodedBytes: number = Number.MAX_SAFE_INTEGER) {}

  push(chunk: Buffer): Buffer {
    const out = Buffer.allocUnsafe(Math.floor(((this.n + chunk.length) * 3) / 4) + 3);
    let o = 0;
    let acc = this.acc;
    let n = this.n;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      const v = DECODE[c]!;
      if (v < 64) {
        if (this.padding) throw this.fail(`data ${describeByte(c)} after the '=' padding`, i);
        acc = (acc << 6) | v;
        if (++n === 4) {
          out[o++] = (acc >>> 16) & 0xff;
          out[o++] = (acc >>> 8) & 0xff;
          out[o++] = acc & 0xff;
          acc = 0;
          n = 0;
        }
      } else if (v === SKIP) {
        continue;
      } else if (v === PAD) {
        if (!this.padding) {
          // '=' may only stand in the 3rd or 4th place of a group: "xx==" or "xxx=".
          if (n < 2) throw this.fail(`'=' padding at position ${n + 1} of a 4-character group`, i);
          if (n === 2) {
            out[o++] = (acc >>> 4) & 0xff;
          } else {
            out[o++] = (acc >>> 10) & 0xff;
            out[o++] = (acc >>> 2) & 0xff;
          }
          this.padding = true;
          this.padsMissing = 3 - n;
          acc = 0;
          n = 0;
        } else {
          if (this.padsMissing === 0) throw this.fail(`too much '=' padding`, i);
          this.padsMissing--;
        }
      } else {
        throw this.fail(`invalid character ${describeByte(c)}`, i);
      }
    }
    this.acc = acc;
    this.n = n;
    this.offset += chunk.length;
    this.decoded += o;
    if (this.decoded > this.maxDecodedBytes) {
      throw new LegacyProtocolError('LEGACY_TOO_LARGE', `legacy payload decodes to more than the limit of ${this.maxDecodedBytes} bytes`);
    }
    return out.subarray(0, o);
  }

  /** Checks the input ended on a whole group; throws otherwise. */
  end(): void {
    if (this.padding ? this.padsMissing !== 0 : this.n !== 0) {
      const have = this.padding ? 4 - this.padsMissing : this.n;
      throw new LegacyProtocolError(
        'LEGACY_BAD_BASE64',
        `bad base64 padding: the payload ends inside a 4-character group (${have} of 4 characters): truncated, or not padded with '='`,
      );
    }
  }

  private fail(what: string, i: number): LegacyProtocolError {
    return new LegacyProtocolError('LEGACY_BAD_BASE64', `bad base64 in legacy payload: ${what} at byte ${this.offset + i}`);
  }
}

/** Base64 text in (any line breaks), bytes out, streaming. Errors are LegacyProtocolError LEGACY_BAD_BASE64. */
export class Base64Decoder extends Transform {
  private readonly core: Base64DecoderCore;
  constructor(opts: { maxDecodedBytes?: number } = {}) {
    super();
    this.core = new Base64DecoderCore(opts.maxDecodedBytes);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let out: Buffer;
    try {
      out = this.core.push(chunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    if (out.length > 0) this.push(out);
    cb();
  }
  override _flush(cb: TransformCallback): void {
    try {
      this.core.end();
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb();
  }
}
