/**
 * Does an inbox's `onReceive` command exist? Used by `tdxfer run` (a warning at start) and
 * `tdxfer doctor` (a check line). The hook runs without a shell (src/hooks.ts), so the
 * rules are those of spawn(): a command with a folder part is a path (relative to the
 * agent's working folder), a bare name is looked up on PATH (on Windows also with each
 * PATHEXT extension). The file-system probe is injected so the logic is unit-testable.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

/** What a probe found at one path. */
export type FileKind = 'executable' | 'not-executable' | 'folder' | 'missing';

export interface CommandLookup {
  platform: NodeJS.Platform;
  env: NodeJS.ProcessEnv;
  cwd: string;
  probe: (file: string) => Promise<FileKind>;
}

export type CommandCheck = { ok: true; file: string } | { ok: false; problem: string; fix: string };

function envVar(env: NodeJS.ProcessEnv, name: string): string | undefined {
  // Windows environment names are case-insensitive (Path, PATH).
  const key = Object.keys(env).find((k) => k.toUpperCase() === name);
  return key === undefined ? undefined : env[key];
}

/** Where spawn() would find `command`, or why it would not. */
export async function checkCommand(command: string, look: CommandLookup): Promise<CommandCheck> {
  const p = look.platform === 'win32' ? path.win32 : path.posix;
  const win = look.platform === 'win32';
  if (command.trim() === '') return { ok: false, problem: 'the command is empty', fix: 'set onReceive.command to an argv array like ["/usr/local/bin/on-file", "--flag"]' };
  const exts = win ? ['', ...(envVar(look.env, 'PATHEXT') ?? '.COM;.EXE;.BAT;.CMD').split(';').filter((e) => e !== '')] : [''];
  const hasFolder = command.includes('/') || (win && command.includes('\\'));
  if (hasFolder) {
    const abs = p.resolve(look.cwd, command);
    for (const ext of exts) {
      const kind = await look.probe(abs + ext);
      if (kind === 'executable') return { ok: true, file: abs + ext };
      if (kind === 'not-executable' && !win) return { ok: false, problem: `${abs} is not executable`, fix: `chmod +x "${abs}", or put its interpreter first (["/usr/bin/python3", "${abs}"])` };
      if (kind === 'folder' && ext === '') return { ok: false, problem: `${abs} is a folder, not a program`, fix: 'point onReceive.command[0] at the program itself' };
    }
    return { ok: false, problem: `${abs} does not exist`, fix: `install it there or correct onReceive.command[0] (an absolute path is safest)` };
  }
  const dirs = (envVar(look.env, 'PATH') ?? '').split(win ? ';' : ':').filter((d) => d !== '');
  let notExec: string | null = null;
  for (const dir of dirs) {
    for (const ext of win && p.extname(command) !== '' ? [''] : exts) {
      const file = p.join(dir, command + ext);
      const kind = await look.probe(file);
      if (kind === 'executable') return { ok: true, file };
      if (kind === 'not-executable' && !win) notExec ??= file;
    }
  }
  if (notExec) return { ok: false, problem: `"${command}" is on PATH only as ${notExec}, which is not executable`, fix: `chmod +x "${notExec}" or use the absolute path of the right program` };
  return {
    ok: false,
    problem: `"${command}" was not found on the agent's PATH${dirs.length ? ` (${dirs.join(win ? ';' : ':')})` : ' (PATH is empty)'}`,
    fix: 'use the absolute path of the program in onReceive.command[0] (the hook runs without a shell; a service has a short PATH)',
  };
}

/** The real file system: an existing regular file with an execute bit (any file on Windows). */
export async function probeFile(file: string): Promise<FileKind> {
  const st = await fs.stat(file).catch(() => null);
  if (!st) return 'missing';
  if (st.isDirectory()) return 'folder';
  if (process.platform === 'win32') return 'executable';
  try {
    await fs.access(file, fs.constants.X_OK);
    return 'executable';
  } catch {
    return 'not-executable';
  }
}

export function realLookup(cwd = process.cwd()): CommandLookup {
  return { platform: process.platform, env: process.env, cwd, probe: probeFile };
}

export interface HookProblem {
  inbox: string;
  command: string;
  problem: string;
  fix: string;
}

/** Every inbox whose `onReceive` command would not start, in config order. */
export async function hookProblems(inboxes: ReadonlyArray<{ name: string; onReceive?: { command: string[] } | undefined }>, look: CommandLookup): Promise<HookProblem[]> {
  const out: HookProblem[] = [];
  for (const ib of inboxes) {
    if (!ib.onReceive) continue;
    const command = ib.onReceive.command[0] ?? '';
    const r = await checkCommand(command, look);
    if (!r.ok) out.push({ inbox: ib.name, command, problem: r.problem, fix: r.fix });
  }
  return out;
}
