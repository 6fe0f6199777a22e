/**
 * Sender for the original TouchDesigner "Threaded TCP Transfer" TOX receiver.
 *
 * One connection per file: header with the exact encoded length (computed from the
 * file size, so nothing is buffered), the file streamed through the MIME base64
 * encoder with backpressure, then the answer. Success only on `{"success": true}`.
 */
import fs from 'node:fs';
import net from 'node:net';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TdxError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { Base64MimeEncoder, LegacyAnswerDecoder, base64MimeLength, encodeLegacyHeader, type LegacyAnswer } from '../protocol/legacy.js';

export interface SendLegacyOptions {
  host: string;
  port: number;
  /** Absolute path of the file to send. */
  file: string;
  /** `file_name` in the header: where the receiver writes it, relative to its target folder. */
  targetName: string;
  log?: Logger;
  /** Connect timeout, and the longest silence while sending or waiting for the answer. Default 60 s. */
  timeoutMs?: number;
  onProgress?: (bytesDone: number, total: number) => void;
  signal?: AbortSignal;
}

const READ_CHUNK = 256 * 1024;

/**
 * The name to put in `file_name` for an outbox-relative path ('/'-separated). The
 * original receiver writes `os.path.join(target_dir, file_name)` and cannot create
 * folders (it drops the connection), so by default only the base name is sent.
 */
export function legacyTargetName(rel: string, flatten: boolean = true): string {
  if (!flatten) return rel;
  const parts = rel.split('/').filter((p) => p !== '');
  return parts[parts.length - 1] ?? rel;
}

const NO_ANSWER_HINT =
  'the TOX receiver drops the connection when a folder in the file name does not exist or it hit an error; tdxfer sends base names by default, see README';

/** Counts the bytes read from the file and checks the file still has the size announced in the header. */
class SizeGuard extends Transform {
  done = 0;
  constructor(
    private readonly size: number,
    private readonly file: string,
    private readonly onProgress?: (bytesDone: number, total: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.done += chunk.length;
    this.onProgress?.(this.done, this.size);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    if (this.done !== this.size) {
      cb(new TdxError('SOURCE_CHANGED', `${this.file} shrank from ${this.size} to ${this.done} bytes while being sent; it will be sent again once it is stable`));
      return;
    }
    cb();
  }
}

export async function sendLegacyFile(opts: SendLegacyOptions): Promise<void> {
  const { host, port, file, targetName } = opts;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const where = `${host}:${port}`;
  if (opts.signal?.aborted) throw new TdxError('ABORTED', `sending ${file} to ${where} was cancelled`);

  let size: number;
  try {
    const st = await fs.promises.stat(file);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (err) {
    throw new TdxError('SOURCE_UNREADABLE', `cannot send ${file}: ${describeError(err)}`, { cause: err });
  }
  const header = encodeLegacyHeader({ file_name: targetName, 'content-length': base64MimeLength(size) });
  const log = opts.log?.child({ component: 'legacy-send' });
  log?.debug('legacy send', { file, to: where, as: targetName, bytes: size });

  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let connected = false;
    let sent = false;
    let answer: LegacyAnswer | null = null;
    let timedOut = false;
    let sendError: unknown = null;
    let sourceFailed: unknown = null;
    const sourceError = (): TdxError =>
      sourceFailed instanceof TdxError
        ? sourceFailed
        : new TdxError('SOURCE_UNREADABLE', `cannot read ${file}: ${describeError(sourceFailed)}`, { cause: sourceFailed });
    const answerDecoder = new LegacyAnswerDecoder();
    const source: Readable = size === 0 ? Readable.from([]) : fs.createReadStream(file, { start: 0, end: size - 1, highWaterMark: READ_CHUNK });
    const socket = net.connect({ host, port });

    const finish = (err: TdxError | null): void => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      socket.setTimeout(0);
      if (err) {
        source.destroy();
        socket.destroy();
        log?.debug('legacy send failed', { file, to: where, error: err.message });
        reject(err);
      } else {
        socket.end();
        resolve();
      }
    };
    const decide = (): void => {
      if (answer === null) return;
      if (!answer.success) {
        const text = answer.error ?? 'no reason given';
        finish(new TdxError('LEGACY_REFUSED', `${where} refused ${JSON.stringify(targetName)}: ${text}`));
      } else if (sent) {
        finish(null);
      }
    };
    const onAbort = (): void => finish(new TdxError('ABORTED', `sending ${file} to ${where} was cancelled`));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    // Cancelled while the source was stat'ed above: the event fired before anyone listened.
    if (opts.signal?.aborted) onAbort();

    socket.setTimeout(timeoutMs, () => {
      timedOut = true;
      const phase = !connected ? 'connecting' : sent ? 'waiting for the answer' : 'sending';
      finish(new TdxError('TIMEOUT', `no progress for ${timeoutMs} ms while ${phase} (${targetName} to ${where})`));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) {
        finish(new TdxError('CONNECT_FAILED', `cannot connect to legacy receiver ${where}: ${err.message}; is the TOX running and listening on that port?`, { cause: err }));
      }
      // After connecting, a reset decides nothing by itself: an answer may already be in; 'close' decides.
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        answer = answerDecoder.push(chunk);
      } catch (err) {
        finish(new TdxError('LEGACY_BAD_ANSWER', `${where} answered something that is not a TOX answer: ${describeError(err)}`, { cause: err }));
        return;
      }
      decide();
    });
    socket.on('close', () => {
      if (settled || timedOut) return;
      if (sourceFailed) {
        finish(sourceError());
        return;
      }
      if (answer !== null) {
        if (!answer.success || sent) {
          decide();
          return;
        }
      }
      const cause = sendError ?? undefined;
      finish(
        new TdxError(
          'LEGACY_NO_ANSWER',
          `${where} closed the connection without answering for ${targetName}${sendError ? ` (${describeError(sendError)})` : ''}: ${NO_ANSWER_HINT}`,
          { cause },
        ),
      );
    });
    socket.once('connect', () => {
      connected = true;
      socket.write(header);
      const guard = new SizeGuard(size, file, opts.onProgress);
      // pipeline() also destroys the source with the socket's error when the peer goes
      // away; by then the socket is destroyed. Only errors while it is alive are the file's.
      const onSourceError = (err: unknown): void => {
        if (!socket.destroyed && sourceFailed === null) sourceFailed = err;
      };
      source.once('error', onSourceError);
      guard.once('error', onSourceError);
      pipeline(source, guard, new Base64MimeEncoder(), socket, { end: false }).then(
        () => {
          sent = true;
          decide();
        },
        (err: unknown) => {
          if (sourceFailed) {
            finish(sourceError());
            return;
          }
          sendError = err; // the peer went away: 'close' (answer or not) decides
        },
      );
    });
  });
}
