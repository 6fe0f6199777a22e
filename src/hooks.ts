/**
 * The inbox `onReceive` hook: run a command (argv, no shell) after a file lands.
 *
 * The child gets the parent's environment plus TDXFER_INBOX, TDXFER_FILE (absolute),
 * TDXFER_REL, TDXFER_SIZE, TDXFER_FROM, TDXFER_SHA256, and TDXFER_RECOVERED=1 when the file
 * landed before a crash and is announced after the restart. It is stopped after `timeoutMs`
 * (SIGTERM, then SIGKILL after a grace period); on POSIX the whole process group is
 * signalled so a hook's own children (`sh -c "…"`) go too.
 * Invariant: `runHook` never throws or rejects; every failure is logged with what to fix.
 *
 * Gated start (POSIX, issue #19 item 4): startGatedHook() forks the hook's process before
 * the landing's journal mark, as `/bin/sh -c GATE tdxfer-hook <command…>`, which waits for
 * one line on its stdin: `run` execs the command (same pid, process group, environment,
 * argv untouched; stdin /dev/null as before), anything else, or the end of the pipe when
 * the agent dies first, exits without running it. release() writes that line (one write
 * to the pipe) right after the mark, so between the mark and the hook's start there is a
 * pipe write, not a fork and exec. Exit 126/127 with the gate's own `tdxfer-hook:` message
 * is the command not found / not executable, reported like spawn's ENOENT/EACCES.
 */
import { spawn } from 'node:child_process';
import type { ReceivedInfo } from './types.js';
import { describeError } from './errors.js';
import type { Logger } from './log.js';

export interface HookResult {
  /** Exit code, or null when killed by a signal or never started. */
  code: number | null;
  timedOut: boolean;
}

export interface HookOptions {
  timeoutMs: number;
  log: Logger;
  cwd?: string | undefined;
  /** Time between SIGTERM and SIGKILL on timeout (default 2000 ms). */
  killGraceMs?: number;
  /** Aborted when the agent stops: the hook is stopped like on a timeout (SIGTERM, then SIGKILL). */
  signal?: AbortSignal | undefined;
}

const STDERR_KEEP = 4096;
const STDERR_LINES = 5;

/** The hook's environment variables for one received file. */
export function hookEnv(r: ReceivedInfo): Record<string, string> {
  return {
    TDXFER_INBOX: r.inbox,
    TDXFER_FILE: r.path,
    TDXFER_REL: r.file,
    TDXFER_SIZE: String(r.size),
    TDXFER_FROM: r.from,
    TDXFER_SHA256: r.sha256 ?? '',
    TDXFER_HASH: r.hash ?? r.sha256 ?? '',
    TDXFER_HASH_ALG: r.hashAlg ?? (r.sha256 ? 'sha256' : ''),
    ...(r.recovered ? { TDXFER_RECOVERED: '1' } : {}),
  };
}

export function runHook(cmd: string[], env: Record<string, string>, opts: HookOptions): Promise<HookResult> {
  return launch(cmd, env, opts, false).result;
}

/** The gate: one line on stdin, `run` execs the command, anything else (or EOF) exits 0 without it. */
const GATE = 'IFS= read -r go; [ "$go" = run ] || exit 0; exec "$@" </dev/null';
const GATE_NAME = 'tdxfer-hook';

export interface GatedHook {
  /** Lets the hook run (synchronously writes the gate's line); once. */
  release(): void;
  /** As runHook's; a hook never released ends with code 0 without having run. */
  result: Promise<HookResult>;
}

/** Forks the hook's process now, to run on release() (see the header). POSIX only. */
export function startGatedHook(cmd: string[], env: Record<string, string>, opts: HookOptions): GatedHook {
  return launch(cmd, env, opts, true);
}

function launch(cmd: string[], env: Record<string, string>, opts: HookOptions, gated: boolean): GatedHook {
  const { log } = opts;
  const [file, ...args] = cmd;
  let release = (): void => undefined;
  if (!file) {
    log.error('onReceive hook has an empty command: set onReceive.command to an argv array like ["/usr/local/bin/on-file", "--flag"]');
    return { release, result: Promise.resolve({ code: null, timedOut: false }) };
  }
  const posix = process.platform !== 'win32';
  const result = new Promise<HookResult>((resolve) => {
    let settled = false;
    let timedOut = false;
    let aborted = false;
    let stderr = '';
    let termTimer: NodeJS.Timeout | null = null;
    let killTimer: NodeJS.Timeout | null = null;
    const finish = (r: HookResult): void => {
      if (settled) return;
      settled = true;
      if (termTimer) clearTimeout(termTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      // After a timeout or abort the SIGKILL still follows for the group (children that ignored SIGTERM).
      if (killTimer && !timedOut && !aborted) clearTimeout(killTimer);
      resolve(r);
    };

    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(gated ? '/bin/sh' : file, gated ? ['-c', GATE, GATE_NAME, file, ...args] : args, {
        shell: false,
        env: { ...process.env, ...env },
        cwd: opts.cwd,
        stdio: [gated ? 'pipe' : 'ignore', 'ignore', 'pipe'],
        windowsHide: true,
        // Own process group on POSIX so a timeout can stop the hook's children too.
        detached: posix,
      });
    } catch (err) {
      logSpawnError(log, file, opts.cwd, err);
      finish({ code: null, timedOut: false });
      return;
    }

    const signal = (sig: NodeJS.Signals): void => {
      try {
        if (posix && child.pid !== undefined) process.kill(-child.pid, sig);
        else child.kill(sig);
      } catch {
        // already gone
      }
    };

    if (gated) {
      const stdin = child.stdin;
      stdin?.on('error', () => undefined); // the gate gone already (killed): its exit says so
      release = () => {
        release = () => undefined;
        stdin?.end('run\n'); // an empty pipe: libuv writes at once, inside this call
      };
    }
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      if (stderr.length < STDERR_KEEP) stderr += d.slice(0, STDERR_KEEP - stderr.length);
    });
    child.on('error', (err) => {
      logSpawnError(log, file, opts.cwd, err);
      finish({ code: null, timedOut: false });
    });
    // 'exit', not 'close': a grandchild holding stderr open must not delay the result.
    child.on('exit', (code, sig) => {
      child.stderr?.destroy();
      if (aborted && !timedOut) {
        log.warn('onReceive hook stopped: the agent is shutting down', { command: file });
      } else if (timedOut) {
        log.warn('onReceive hook timed out and was stopped', { command: file, timeoutMs: opts.timeoutMs, hint: 'make the hook faster, run slow work in the background, or raise onReceive.timeoutMs' });
      } else if (gated && (code === 126 || code === 127) && stderr.startsWith(`${GATE_NAME}:`)) {
        // The gate's exec failed: the command itself is missing or not executable.
        const errno = code === 127 ? 'ENOENT' : 'EACCES';
        const err = Object.assign(new Error(`spawn ${file} ${errno} (${stderr.trim().split(/\r?\n/)[0] ?? ''})`), { code: errno });
        logSpawnError(log, file, opts.cwd, err);
        finish({ code: null, timedOut: false });
        return;
      } else if (code !== 0) {
        const lines = stderr.split(/\r?\n/).filter((l) => l.trim() !== '').slice(0, STDERR_LINES).join(' | ');
        log.warn('onReceive hook failed', { command: file, exitCode: code, signal: sig, stderr: lines });
      } else {
        log.debug('onReceive hook done', { command: file });
      }
      finish({ code, timedOut });
    });

    const stopHook = (): void => {
      if (killTimer) return; // already stopping
      signal('SIGTERM');
      killTimer = setTimeout(() => signal('SIGKILL'), opts.killGraceMs ?? 2000);
      killTimer.unref();
    };
    termTimer = setTimeout(() => {
      timedOut = true;
      stopHook();
    }, opts.timeoutMs);
    function onAbort(): void {
      aborted = true;
      stopHook();
    }
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
  return { release: () => release(), result };
}

function logSpawnError(log: Logger, file: string, cwd: string | undefined, err: unknown): void {
  const code = (err as NodeJS.ErrnoException).code;
  let hint = 'check onReceive.command in the config';
  if (code === 'ENOENT') hint = `"${file}" was not found${cwd ? ` (or the working folder ${cwd} does not exist)` : ''}: use an absolute path, the hook runs without a shell and without shell PATH lookups of aliases`;
  else if (code === 'EACCES') hint = `"${file}" is not executable: chmod +x it, or put the interpreter first (["/usr/bin/python3", "script.py"])`;
  log.error('onReceive hook could not start', { command: file, error: describeError(err), hint });
}
