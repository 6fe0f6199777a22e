/**
 * Typed errors with a stable `code` and an optional `cause`. Every layer adds
 * context by wrapping, never by string-concatenating a stack.
 */
export class TdxError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TdxError';
    this.code = code;
  }
}

/** Config is invalid: `field` is the JSON path of the offending value (e.g. `outboxes[0].to[1].peer`). */
export class ConfigError extends TdxError {
  readonly field: string;
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super('CONFIG_INVALID', message, options);
    this.name = 'ConfigError';
    this.field = field;
  }
}

/** A short, single-line description of any thrown value, for log lines (no stacks). */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const base = typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
    const cause = (err as { cause?: unknown }).cause;
    if (cause === undefined || cause === err) return base;
    const inner = describeError(cause);
    // Wrappers usually quote their cause already: say it once.
    return base.includes(inner) || (cause instanceof Error && base.includes(cause.message)) ? base : `${base}: ${inner}`;
  }
  return String(err);
}
