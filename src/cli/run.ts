/**
 * `tdxfer run`: load the config, build the agent through the composition root
 * (agent/compose.ts), stop it on SIGINT/SIGTERM (or POST /stop) within a bounded
 * time: graceful budget GRACE_MS (12 s), hard exit HARD_EXIT_MS (15 s), both clearly
 * inside systemd's TimeoutStopSec=20.
 */
import { createLogger, type Logger } from '../log.js';
import { ConfigError, describeError, isEnvironmentProblem } from '../errors.js';
import { loadConfig, resolveConfigPath } from '../config/load.js';
import { GRACE_MS, HARD_EXIT_MS, composeAgent, type ComposedAgent } from '../agent/compose.js';
import { hookProblems, realLookup } from '../hook-check.js';
import { tuneAgentHeap } from '../heap-tuning.js';

export interface RunArgs {
  config?: string | undefined;
}

export async function runAgent(args: RunArgs): Promise<number> {
  const file = resolveConfigPath(args.config, process.env);
  const bootLog = createLogger({ level: 'info' });
  let cfg;
  try {
    cfg = await loadConfig(file, { createKey: true, log: bootLog });
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : `error: ${describeError(err)}`}\n`);
    return 2;
  }
  tuneAgentHeap(cfg.outboxes.length > 0); // a small footprint for a long-running agent (heap-tuning.ts)
  const log: Logger = createLogger({ level: cfg.log.level, file: cfg.log.file ?? undefined, maxSizeBytes: cfg.log.maxSizeBytes, maxFiles: cfg.log.maxFiles });
  if (cfg.security.keySource.startsWith('generated:')) {
    // Shown once, on the console only: never through the logger (files, journal).
    process.stdout.write(
      `\nA new installation key was created in ${cfg.security.keySource.slice('generated:'.length)}:\n\n    ${cfg.security.key.toString('base64')}\n\n` +
        `Every machine of this installation needs the same key (security.key or security.keyFile).\n\n`,
    );
  }
  // Signals are handled from the very start: one arriving while parts are still
  // starting stops the agent as soon as it can be stopped in order.
  let stopper: ((sig: string) => void) | null = null;
  let early: string | null = null;
  // conf → atomically → when-exit hooks SIGINT/SIGTERM at import and re-raises the signal
  // on this process, which reached onSignal as a second signal ("again: exiting now") and
  // cut the graceful stop short. The agent never writes through conf, so that hook has
  // nothing to clean up: the composition root owns these signals alone.
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  // Windows has no SIGTERM: a console's Ctrl-C arrives as SIGINT, Ctrl-Break as SIGBREAK,
  // and scripts or service wrappers use `tdxfer stop` (POST /stop, below). All of them take
  // the same graceful path.
  const signals: NodeJS.Signals[] = process.platform === 'win32' ? ['SIGINT', 'SIGTERM', 'SIGBREAK'] : ['SIGINT', 'SIGTERM'];
  // The stop bound (HARD_EXIT_MS) runs from the first signal, wherever it arrives: one that
  // comes while parts are still starting must not wait on a start that never ends.
  let hard: NodeJS.Timeout | null = null;
  const armHardExit = () => {
    hard ??= setTimeout(() => {
      log.error('stop took too long: exiting anyway (partial files are kept for resume)');
      process.exit(1);
    }, HARD_EXIT_MS);
    // unref: it bounds a stop that hangs on an open handle; it never keeps a stopped agent alive.
    hard.unref();
  };
  const onSignal = (sig: string) => {
    if (stopper) stopper(sig);
    else if (early) process.exit(1);
    else {
      early = sig;
      log.info(`${sig}: stopping as soon as the agent has started (at most ${HARD_EXIT_MS / 1000} s)`);
      armHardExit();
    }
  };
  for (const sig of signals) process.on(sig, onSignal);
  log.info(`tdxfer starting as "${cfg.name}"`, { config: cfg.configFile ?? 'built-in defaults', dataDir: cfg.dataDir });
  // A hook that cannot start fails on every received file: say so once, now, with the fix.
  for (const h of await hookProblems(cfg.inboxes, realLookup())) {
    log.warn(`inbox "${h.inbox}": its onReceive command cannot start: ${h.problem}; fix: ${h.fix}`, { inbox: h.inbox, command: h.command });
  }
  let composed: ComposedAgent;
  try {
    // A repeated POST /stop is not a "second signal" (that one exits at once).
    let stopAsked = false;
    composed = await composeAgent(cfg, {
      log,
      onStop: (reason) => {
        if (!stopAsked) onSignal(reason);
        stopAsked = true;
      },
    });
  } catch (err) {
    log.error(`cannot start: ${describeError(err)}`);
    // A failed start leaves no signal handler behind (a SIGTERM must end the process), and a
    // handle a library still holds must not keep it running (a service manager would wait).
    for (const sig of signals) process.off(sig, onSignal);
    if (hard) clearTimeout(hard);
    setTimeout(() => process.exit(process.exitCode ?? 1), 1000).unref();
    // 2: a folder or config problem that a restart would only repeat (see ENVIRONMENT_CODES).
    return isEnvironmentProblem(err) ? 2 : 1;
  }
  if (cfg.configFile === null && early === null) {
    process.stdout.write(
      `\ntdxfer is running on built-in defaults (data folder ${cfg.dataDir}).\n` +
        `Drop files into   ${cfg.outboxes[0]?.path ?? '?'}\n` +
        `They arrive in    ${cfg.inboxes[0]?.path ?? '?'}\n` +
        `(this agent sends to itself over TCP; see README for a real setup). Ctrl-C stops.\n\n`,
    );
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    stopper = (sig: string) => {
      if (stopping) {
        log.warn(`${sig} again: exiting now`);
        process.exit(1);
      }
      stopping = true;
      log.info(`${sig}: stopping (finishing transfers in flight, at most ${HARD_EXIT_MS / 1000} s)`);
      // The hard exit (15 s) comes clearly before systemd's TimeoutStopSec=20 kills us,
      // and after the graceful budget (GRACE_MS, 12 s) a stuck part may use up.
      armHardExit();
      void (async () => {
        await composed.stop(GRACE_MS).catch((err: unknown) => log.warn(`stopping: ${describeError(err)}`));
        if (hard) clearTimeout(hard);
        for (const sig of signals) process.off(sig, onSignal);
        // Everything of ours is closed; should a library still hold a handle (seen once:
        // chokidar's inotify after a mass archive; a known class of chokidar bugs, see
        // https://github.com/paulmillr/chokidar/issues/806), do not let the process linger with no
        // signal handler left (a service manager would wait for its stop timeout).
        setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
        resolve(0);
      })();
    };
    if (early) stopper(early);
  });
}
