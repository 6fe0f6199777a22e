import { ERROR_CODES, TdxError } from '../errors.js';

export type InboxErrorCode = 'BAD_NAME' | 'TOO_LARGE' | 'NO_SPACE' | 'HASH_MISMATCH' | 'SIZE_MISMATCH' | 'IO' | 'BUSY' | 'CLOSED';

/** An inbox refused or failed a file. `code` is stable (mapped onto the wire), `retryable` tells the sender whether to retry. */
export class InboxError extends TdxError {
  declare readonly code: InboxErrorCode;
  readonly retryable: boolean;
  constructor(code: InboxErrorCode, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'InboxError';
    // Whether the sender may try the same file again later (after backoff) without a human fixing something.
    this.retryable = options?.retryable ?? ERROR_CODES[code].retryable;
  }
}

export function isInboxError(err: unknown): err is InboxError {
  return err instanceof InboxError;
}
