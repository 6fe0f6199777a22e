/**
 * PURE: Windows path forms in the config (issue #14). Windows users write `D:\show\inbox`
 * (in JSON `"D:\\show\\inbox"`) or `D:/show/inbox`; both work through path.win32. Refused,
 * with a hint, are the forms that mean something other than they seem:
 * - UNC paths (`\\server\share\inbox`): a network share. tdxfer lands files atomically
 *   by renaming on the disk that holds them and watches outboxes with local change events;
 *   over SMB neither is reliable. Run tdxfer on the machine that has the disk.
 * - Drive-relative paths (`D:inbox`): relative to the current folder *of drive D:*,
 *   which depends on how the process was started.
 * A drive-less `\show\inbox` (or `/show/inbox`, as in the example configs) is allowed:
 *   it is resolved against the config file's folder, so it lands on the config's drive.
 * - Device paths (`\\.\…`).
 * `\\?\D:\…` (the long-path prefix) is a local path and is allowed; long paths work
 * without it too (Node adds it).
 * `%NAME%` is expanded from the environment on Windows (`%APPDATA%\tdxfer`).
 */

/** `%NAME%` → its value from `env` (names are case-insensitive on Windows); unknown names are left as they are. */
export function expandWindowsEnv(p: string, env: NodeJS.ProcessEnv): string {
  return p.replace(/%([A-Za-z_][A-Za-z0-9_()]*)%/g, (whole, name: string) => {
    const key = Object.keys(env).find((k) => k.toLowerCase() === name.toLowerCase());
    const v = key === undefined ? undefined : env[key];
    return v === undefined || v === '' ? whole : v;
  });
}

/** The problem with a configured path on Windows (text after "`field` "), or null when it is fine. */
export function windowsPathProblem(p: string): string | null {
  const shown = JSON.stringify(p);
  const unset = /%([A-Za-z_][A-Za-z0-9_()]*)%/.exec(p);
  if (unset) return `is ${shown}, which names the environment variable %${unset[1]}%, but it is not set for this process: set it or write the folder out.`;
  if (/^[\\/]{2}\?[\\/][A-Za-z]:[\\/]/.test(p)) return null; // \\?\D:\… long-path form of a local path
  if (/^[\\/]{2}[?.][\\/]/.test(p) && !/^[\\/]{2}\?[\\/]UNC[\\/]/i.test(p)) {
    return `is ${shown}, a Windows device path: name a folder on a local disk, e.g. "D:\\\\show\\\\inbox".`;
  }
  if (/^[\\/]{2}/.test(p)) {
    return `is ${shown}, a network share (UNC path): tdxfer must run on the machine that has the disk (atomic landing and change events do not work reliably over SMB). Install tdxfer there, or use a folder on a local disk, e.g. "D:\\\\show\\\\inbox".`;
  }
  if (/^[A-Za-z]:(?![\\/])/.test(p)) {
    return `is ${shown}, which is relative to the current folder of drive ${p.slice(0, 2)} (it depends on how tdxfer was started): write ${JSON.stringify(`${p.slice(0, 2)}\\${p.slice(2)}`)} or ${JSON.stringify(`${p.slice(0, 2)}/${p.slice(2).replace(/\\/g, '/')}`)}.`;
  }
  return null;
}
