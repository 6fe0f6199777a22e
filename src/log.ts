/**
 * Logging adapter around winston: the rest of the agent only sees `Logger`.
 * Console lines are human-readable; an optional JSON-lines file gets structured records.
 *
 * The file rotates by size and keeps a bounded number of files (issue #20) through
 * winston-daily-rotate-file, not winston's own File transport: with maxsize/maxFiles the
 * latter dropped lines written in bursts while it rotated (measured with winston 3.19, 2000
 * lines in bursts of 200: 926 kept with `tailable`, 1404 without; bursts of 20: 1643 with it), and
 * without `tailable` it restarts its numbering at each start, leaving older numbered files
 * behind forever (https://github.com/winstonjs/winston/issues/397). winston-daily-rotate-file
 * kept every line in the same measurement and prunes by its audit file across restarts.
 */
import path from 'node:path';
import winston from 'winston';
import DailyRotateFile from 'winston-daily-rotate-file';

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
  /** Path of a JSON-lines log file (optional). Written as `<stem>-<date><ext>[.n]` next to it. */
  file?: string | undefined;
  /** Rotate the file at about this size. Default 10 MiB. */
  maxSizeBytes?: number;
  /** Keep at most this many files (the current one included). Default 10. */
  maxFiles?: number;
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

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

/**
 * Local time as `YYYY-MM-DD HH:mm:ss.SSS`. The part up to the seconds is built once per second:
 * an agent landing a thousand small files a second writes a line for each.
 */
export function makeClock(): (ms: number) => string {
  let second = NaN;
  let prefix = '';
  return (ms) => {
    const s = Math.floor(ms / 1000);
    if (s !== second) {
      const d = new Date(s * 1000);
      prefix = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.`;
      second = s;
    }
    const milli = ms - s * 1000;
    return prefix + (milli < 10 ? `00${milli}` : milli < 100 ? `0${milli}` : String(milli));
  };
}

/** `<time> <LEVEL> [component] message key=value…`: every enumerable string key but level,
 * message, timestamp and component, in order (symbols, winston's own, are not enumerated). */
export function consoleText(info: Record<string, unknown>, time: string): string {
  let extras = '';
  for (const k of Object.keys(info)) {
    if (k === 'level' || k === 'message' || k === 'timestamp' || k === 'component' || k.startsWith('Symbol(')) continue;
    extras += ` ${k}=${formatValue(info[k])}`;
  }
  const comp = info['component'] ? ` [${String(info['component'])}]` : '';
  return `${time} ${String(info['level']).toUpperCase().padEnd(5)}${comp} ${String(info['message'])}${extras}`;
}

const MESSAGE = Symbol.for('message');
const LEVEL = Symbol.for('level');

function consoleFormat(): winston.Logform.Format {
  const clock = makeClock();
  return winston.format((info) => {
    (info as Record<symbol, unknown>)[MESSAGE] = consoleText(info as Record<string, unknown>, clock(Date.now()));
    return info;
  })();
}

/** The logger's own format: none. (winston's default, JSON, would stringify every record
 * once more before each transport formats it its own way.) */
const asIs = winston.format((info) => info)();

/** A logger that owns its transports: `close()` flushes and closes them (a log file's handle
 * must be closed before its folder can be removed on Windows). Bounded: at most 5 s. */
export interface ClosableLogger extends Logger {
  close(): Promise<void>;
}

export function createLogger(opts: LogOptions = {}): ClosableLogger {
  const transports: winston.transport[] = [
    new winston.transports.Console({
      silent: opts.silent ?? false,
      stderrLevels: opts.stderr ? ['error', 'warn', 'info', 'debug'] : ['error'],
      format: consoleFormat(),
    }),
  ];
  if (opts.file) transports.push(rotatingFile(opts.file, opts.maxSizeBytes ?? 10 * 1024 * 1024, opts.maxFiles ?? 10));
  const w = winston.createLogger({ level: opts.level ?? 'info', format: asIs, transports, exitOnError: false });
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      const done = transports.map((t) => new Promise<void>((r) => {
        t.once('finish', () => r());
        t.once('close', () => r());
      }));
      const timer = setTimeout(resolve, 5000);
      timer.unref();
      void Promise.all(done).then(() => {
        clearTimeout(timer);
        resolve();
      });
      w.end();
    });
    return closing;
  };
  return Object.assign(wrap(w), { close });
}

/** Files of `file` as rotated: `<stem>-YYYY-MM-DD<ext>`, then `.1`, `.2`… within a day. */
export function rotatedLogPattern(file: string): { dir: string; stem: string; ext: string; auditFile: string } {
  const ext = path.extname(file);
  const stem = path.basename(file, ext);
  const dir = path.dirname(file);
  return { dir, stem, ext, auditFile: path.join(dir, `.${stem}-audit.json`) };
}

function rotatingFile(file: string, maxSizeBytes: number, maxFiles: number): winston.transport {
  const p = rotatedLogPattern(file);
  return new DailyRotateFile({
    filename: path.join(p.dir, `${p.stem}-%DATE%${p.ext}`),
    datePattern: 'YYYY-MM-DD',
    maxSize: `${Math.max(1, Math.ceil(maxSizeBytes / 1024))}k`,
    // A count (not days): the audit file names the files this transport wrote, oldest pruned first.
    maxFiles,
    auditFile: p.auditFile,
    zippedArchive: false,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
  });
}

/**
 * One record, as winston's `logger.info(msg, fields)` builds it (fields, then level and
 * message; a `message` field is appended to the message), handed to `log(info)`: winston's
 * quickest path, without its search for `%s` tokens. Levels the logger and its transports
 * would all drop are dropped here, before the record is built and streamed.
 */
function record(w: winston.Logger, enabled: Enabled, level: LogLevel, msg: string, fields: LogFields | undefined): void {
  if (!(enabled[level] ??= w.isLevelEnabled(level))) return;
  const info: Record<string | symbol, unknown> = { ...fields, level, message: msg };
  if (fields?.['message']) info['message'] = `${msg} ${String(fields['message'])}`;
  info[LEVEL] = level;
  w.log(info as unknown as winston.LogEntry);
}

/**
 * Whether each level is written, asked of winston once per logger: the agent never changes a
 * level after start, and winston's isLevelEnabled, asked for every record, cost about a
 * microsecond and a few closures per debug call dropped (issue #12: several per file).
 */
type Enabled = Partial<Record<LogLevel, boolean>>;

function wrap(w: winston.Logger, enabled: Enabled = {}): Logger {
  return {
    debug: (msg, fields) => record(w, enabled, 'debug', msg, fields),
    info: (msg, fields) => record(w, enabled, 'info', msg, fields),
    warn: (msg, fields) => record(w, enabled, 'warn', msg, fields),
    error: (msg, fields) => record(w, enabled, 'error', msg, fields),
    // A child has its parent's level and transports: the answers are shared.
    child: (fields) => wrap(w.child(fields), enabled),
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
