import { TdxError } from '../errors.js';

export type InboxErrorCode = 'BAD_NAME' | 'TOO_LARGE' | 'NO_SPACE' | 'HASH_MISMATCH' | 'SIZE_MISMATCH' | 'IO' | 'BUSY' | 'CLOSED';

/** Whether the sender may try the same file again later (after backoff) without a human fixing something. */
const RETRYABLE: Record<InboxErrorCode, boolean> = {
  BAD_NAME: false,
  TOO_LARGE: false,
  NO_SPACE: true,
  HASH_MISMATCH: true,
  // The source file changed size while it was being sent: a fresh attempt can succeed.
  SIZE_MISMATCH: true,
  IO: true,
  BUSY: true,
  CLOSED: true,
};

/** An inbox refused or failed a file. `code` is stable (mapped onto the wire), `retryable` tells the sender whether to retry. */
export class InboxError extends TdxError {
  declare readonly code: InboxErrorCode;
  readonly retryable: boolean;
  constructor(code: InboxErrorCode, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'InboxError';
    this.retryable = options?.retryable ?? RETRYABLE[code];
  }
}

export function isInboxError(err: unknown): err is InboxError {
  return err instanceof InboxError;
}
