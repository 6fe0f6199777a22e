/**
 * What the tests know about the platform they run on. The Windows lane
 * (scripts/test-windows.mjs) runs these tests under the real Windows node.exe in wine and
 * sets TDXFER_UNDER_WINE=1 and TDXFER_TEST_TIME_SCALE (wine starts each node.exe in 1-3 s
 * and loads modules several times slower than Linux).
 */
export const isWindows = process.platform === 'win32';
export const underWine = isWindows && process.env.TDXFER_UNDER_WINE === '1';

/**
 * Multiplier for the deadlines tests wait for events (never for sleeps): 1 on Linux, set
 * by the Windows lane under wine. A deadline only bounds how long a broken case hangs.
 */
export function timeScale(): number {
  const n = Number(process.env.TDXFER_TEST_TIME_SCALE);
  return Number.isFinite(n) && n >= 1 ? n : 1;
}

/** `ms` scaled by timeScale(). */
export function deadline(ms: number): number {
  return Math.round(ms * timeScale());
}

/**
 * The skip reason for a test that hits one of wine's own flaws (not Windows behaviour),
 * or false when the test runs. Every such skip names the flaw.
 */
export function wineFlaw(flaw: keyof typeof WINE_FLAWS): string | false {
  return underWine ? `wine flaw: ${WINE_FLAWS[flaw]}` : false;
}

export const WINE_FLAWS = {
  caseRename: 'a case-only rename (A.png -> a.png) silently does nothing under wine',
  symlinkNoop: 'fs.symlink() under wine 8 reports success but creates nothing (measured: lstat then gives ENOENT) and a junction gives ENOTSUP, so symlink confinement cannot be exercised',
  birthtimeIsCtime: 'wine reports birthtimeMs as ctime',
  rootReadOnly: 'wine runs as root here, so read-only flags and permissions do not bite',
  watchedFolderDelete:
    'deleting a watched folder under wine raises no fs.watch error (Windows: EPERM, nodejs/node#31702) and the folder still stats and lists as present while delete-pending (mkdir gives EEXIST) until the watch closes, so the removal cannot be noticed',
} as const;

/** The skip reason for a test that needs a Linux-only tool, or false when it runs. */
export function linuxOnly(tool: string): string | false {
  return isWindows ? `needs ${tool} (Linux-only)` : false;
}

/**
 * The exit code a test sees after `child.kill('SIGTERM')` or `kill('SIGINT')` on a healthy
 * agent: 0 on POSIX (graceful stop), null on Windows, where kill() with any signal
 * terminates the process (libuv: TerminateProcess); a real console's Ctrl-C is not a kill(). Tests of the graceful stop itself use `tdxfer stop` there.
 */
export const EXIT_AFTER_KILL: number | null = isWindows ? null : 0;

/** Why a test of POSIX signal handling does not run on Windows. */
export const NO_SIGTERM = isWindows ? 'Windows has no SIGTERM (kill() terminates); its graceful stop, `tdxfer stop`, is tested in e2e/stop.test.ts' : false;
