/**
 * Starting child processes from tests, with one allowance for wine.
 *
 * Under wine, `child_process.spawn` of node.exe once threw `spawn UNKNOWN` (errno -4094)
 * at once, from ChildProcess.spawn, while a test restarted an agent (CI of 7f3013f,
 * e2e/jobs.test.js, 2026-12-07). libuv reports a Windows error it has no name for as
 * UNKNOWN, so the cause is a CreateProcess failure inside wine. It did not come back in 900
 * spawn + kill -9 cycles of node.exe under wine at load 5-8 (three parallel loops, stdio
 * pipes, as the tests spawn agents). So under wine a spawn that throws UNKNOWN is tried
 * again, a few times, with a short pause, and each retry is written to stderr. Any other
 * error, and every error outside wine, is thrown as it came.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { underWine } from './platform.js';

export type SpawnFn = (cmd: string, args: string[], opts: SpawnOptions) => ChildProcess;

const pause = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

/** `fn`, tried up to `tries` times while it throws UNKNOWN; `say` hears each retry. */
export function retryUnknownSpawn(fn: SpawnFn, tries = 5, say: (line: string) => void = (l) => process.stderr.write(`${l}\n`), pauseMs = 250): SpawnFn {
  return (cmd, args, opts) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return fn(cmd, args, opts);
      } catch (err) {
        if ((err as { code?: string }).code !== 'UNKNOWN' || attempt >= tries) throw err;
        say(`spawn of ${cmd} threw UNKNOWN (try ${attempt} of ${tries}, a wine CreateProcess failure); trying again`);
        pause(pauseMs * attempt);
      }
    }
  };
}

/** child_process.spawn; under wine, retried on UNKNOWN (see the file header). */
export const spawnChild: SpawnFn = underWine ? retryUnknownSpawn(spawn) : spawn;
