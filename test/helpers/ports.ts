/**
 * Ports for the few test cases that need a number before anything listens on it.
 *
 * Everything else listens on port 0 and reads the port back (`agent.listenAddress`,
 * `Spawned.transferPort()` / `statusPort()`). A port picked free with listen(0) and
 * closed again is NOT safe to hand out: node --test runs files in parallel, and another
 * process's listen(0) or any outgoing connection's ephemeral port can take it before
 * the agent binds it (CI saw STATUS_PORT_IN_USE that way).
 *
 * reservedPort() instead picks from 20000–31999, below the ephemeral ranges (Linux
 * ip_local_port_range 32768–60999, Windows and macOS 49152–65535), so the kernel never
 * hands it to a listen(0) or an outgoing connection; checks that it binds now; and
 * reserves it across test processes with an O_EXCL lock file
 * `<tmpdir>/tdxfer-test-ports/<port>` holding the creating PID, removed when this process
 * exits (a lock of a dead PID is stale and is cleared). So a "ghost" port stays one
 * nothing listens on, and a port written into a config before its agent starts is still
 * free when it does.
 *
 * Windows processes take 26000–31999, the others 20000–25999: the Windows lane runs
 * node.exe under wine on the same loopback as Linux test processes, with another temp
 * folder and other PIDs, so the two could not see (or would misjudge) each other's locks.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { randomInt } from 'node:crypto';

const [LOW, HIGH] = process.platform === 'win32' ? [26000, 32000] : [20000, 26000]; // HIGH exclusive
const LOCK_DIR = path.join(os.tmpdir(), 'tdxfer-test-ports');
const held = new Set<number>();
let exitHook = false;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The lock file of `port` (exported for its test). */
export function lockFile(port: number): string {
  return path.join(LOCK_DIR, String(port));
}

/** Creates the lock of `port`; false if another live process holds it (exported for its test). */
export function lockPort(port: number): boolean {
  fs.mkdirSync(LOCK_DIR, { recursive: true });
  const file = lockFile(port);
  try {
    const fd = fs.openSync(file, 'wx');
    fs.writeSync(fd, String(process.pid));
    fs.closeSync(fd);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  // Held. A lock of a dead process is stale: remove it, but do not take this port in this
  // call (two processes clearing the same stale lock must not both end up holding it).
  let pid = NaN;
  try {
    pid = Number(fs.readFileSync(file, 'utf8'));
  } catch {
    return false;
  }
  if (Number.isInteger(pid) && pid > 0 && !alive(pid)) fs.rmSync(file, { force: true });
  return false;
}

function unlock(port: number): void {
  held.delete(port);
  fs.rmSync(lockFile(port), { force: true });
}

function binds(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function unlockAtExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const p of [...held]) unlock(p);
  });
}

/**
 * A port outside the ephemeral range, free now and reserved for this process until it
 * exits (or `releasePort`). Only for a port that must be named before anything listens
 * on it (a peer that stays down, a CLI reading it from a config): see the file comment.
 */
export async function reservedPort(host = '127.0.0.1'): Promise<number> {
  fs.mkdirSync(LOCK_DIR, { recursive: true });
  unlockAtExit();
  for (let i = 0; i < 500; i++) {
    const port = randomInt(LOW, HIGH);
    if (held.has(port) || !lockPort(port)) continue;
    held.add(port);
    if (await binds(port, host)) return port;
    unlock(port);
  }
  throw new Error(`reservedPort: no free port in ${LOW}–${HIGH - 1} after 500 tries (locks in ${LOCK_DIR})`);
}

/** Gives a reserved port back before the process exits. */
export function releasePort(port: number): void {
  if (held.has(port)) unlock(port);
}

/**
 * Fixed ports a case must use as they are (the built-in defaults 7770 and 7771 of a
 * zero-config `tdxfer run`), held for this process: waits until no other test process holds
 * their locks and all of them bind, so that two suites on one machine (a loaded run beside
 * CI, the Windows lane beside a Linux suite, which cannot see each other's locks but do see
 * a bound port) take turns instead of one failing with EADDRINUSE. All or none: a port
 * locked while another is busy is let go again before the next try. Polls every `everyMs`;
 * after `deadlineMs` it throws, naming the ports and the lock folder. Returns the release
 * (also done at exit). `onWait` is called before each wait (tests).
 */
export async function holdFixedPorts(
  ports: readonly number[],
  opts: { host?: string; deadlineMs?: number; everyMs?: number; onWait?: () => void } = {},
): Promise<() => void> {
  const { host = '0.0.0.0', deadlineMs = 180_000, everyMs = 200 } = opts;
  unlockAtExit();
  const until = Date.now() + deadlineMs;
  for (;;) {
    const taken: number[] = [];
    for (const p of ports) {
      if (held.has(p) || !lockPort(p)) break;
      held.add(p);
      taken.push(p);
    }
    if (taken.length === ports.length) {
      const free = await Promise.all(ports.map((p) => binds(p, host)));
      if (free.every(Boolean)) return () => ports.forEach(releasePort);
    }
    taken.forEach(unlock);
    if (Date.now() > until) {
      throw new Error(`holdFixedPorts: ports ${ports.join(', ')} stayed in use for ${deadlineMs / 1000} s (another test process's lock in ${LOCK_DIR}, or a program listening on ${host}); this case needs exactly these ports`);
    }
    opts.onWait?.();
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
