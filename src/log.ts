/**
 * Logging adapter around winston: the rest of the agent only sees `Logger`.
 * Console lines are human-readable; an optional JSON-lines file gets structured records.
 */
import winston from 'winston';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose every record carries `fields` too (e.g. `{ component: 'watcher' }`). */
  child(fields: LogFields): Logger;
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface LogOptions {
  level?: LogLevel;
  /** Path of a JSON-lines log file (optional). */
  file?: string | undefined;
  /** Write console lines to stderr instead of stdout (CLI one-shot commands). */
  stderr?: boolean;
  /** Silence the console entirely (tests). */
  silent?: boolean;
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  if (v instanceof Error) return JSON.stringify(v.message);
  return JSON.stringify(v) ?? String(v);
}

const consoleLine = winston.format.printf((info) => {
  const { level, message, timestamp, component, ...rest } = info as Record<string, unknown>;
  const extras = Object.entries(rest)
    .filter(([k]) => typeof k === 'string' && !k.startsWith('Symbol('))
    .map(([k, v]) => `${k}=${formatValue(v)}`)
    .join(' ');
  const comp = component ? ` [${String(component)}]` : '';
  return `${String(timestamp)} ${String(level).toUpperCase().padEnd(5)}${comp} ${String(message)}${extras ? ' ' + extras : ''}`;
});

export function createLogger(opts: LogOptions = {}): Logger {
  const transports: winston.transport[] = [
    new winston.transports.Console({
      silent: opts.silent ?? false,
      stderrLevels: opts.stderr ? ['error', 'warn', 'info', 'debug'] : ['error'],
      format: winston.format.combine(winston.format.timestamp({ format: 'YYYY-MM-DD HH:mm:ss.SSS' }), consoleLine),
    }),
  ];
  if (opts.file) {
    transports.push(
      new winston.transports.File({
        filename: opts.file,
        format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
      }),
    );
  }
  const w = winston.createLogger({ level: opts.level ?? 'info', transports, exitOnError: false });
  return wrap(w);
}

function wrap(w: winston.Logger): Logger {
  return {
    debug: (msg, fields) => void w.debug(msg, fields ?? {}),
    info: (msg, fields) => void w.info(msg, fields ?? {}),
    warn: (msg, fields) => void w.warn(msg, fields ?? {}),
    error: (msg, fields) => void w.error(msg, fields ?? {}),
    child: (fields) => wrap(w.child(fields)),
  };
}

/** A logger that records into an array: for unit tests that assert on log lines. */
export function memoryLogger(records: Array<{ level: string; msg: string; fields: LogFields }> = []): Logger & {
  records: typeof records;
} {
  const make = (base: LogFields): Logger => ({
    debug: (msg, f) => void records.push({ level: 'debug', msg, fields: { ...base, ...f } }),
    info: (msg, f) => void records.push({ level: 'info', msg, fields: { ...base, ...f } }),
    warn: (msg, f) => void records.push({ level: 'warn', msg, fields: { ...base, ...f } }),
    error: (msg, f) => void records.push({ level: 'error', msg, fields: { ...base, ...f } }),
    child: (f) => make({ ...base, ...f }),
  });
  return Object.assign(make({}), { records });
}
