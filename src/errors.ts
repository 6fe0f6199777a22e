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

/**
 * Codes of a configuration or environment problem a restart cannot fix (a folder on a read-only mount, one
 * the agent's user may not write): `tdxfer run` exits 2 for them (systemd: RestartPreventExitStatus=2).
 */
export const ENVIRONMENT_CODES: ReadonlySet<string> = new Set(['CONFIG_INVALID', 'FOLDER_UNUSABLE', 'OUTBOX_UNUSABLE']);

/** Whether `err` or one of its causes carries one of ENVIRONMENT_CODES. */
export function isEnvironmentProblem(err: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && ENVIRONMENT_CODES.has(code)) return true;
  }
  return false;
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
