/** Carries out a service plan on this machine, or prints it for --dry-run. The only I/O of `tdxfer service`. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { ServiceError, type Plan, type Step } from './plan.js';

export interface ApplyIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const mode = (m: number): string => m.toString(8).padStart(4, '0');

function quote(w: string): string {
  return /^[A-Za-z0-9_./\\:=,+@%-]+$/.test(w) ? w : `"${w.replace(/"/g, '\\"')}"`;
}

/** One line (or block) per step, as --dry-run prints it. */
export function describeStep(s: Step): string {
  switch (s.kind) {
    case 'copy':
      return `copy ${s.from} -> ${s.to} (mode ${mode(s.mode)})`;
    case 'write': {
      const body = s.shown ?? (s.binary ? '(binary)' : s.content);
      const lines = body.replace(/\r\n/g, '\n').replace(/\n$/, '').split('\n').map((l) => `    | ${l}`);
      return `write ${s.path} (mode ${mode(s.mode)}):\n${lines.join('\n')}`;
    }
    case 'mkdir':
      return `mkdir ${s.path} (mode ${mode(s.mode)}${s.owner ? `, owner ${s.owner}` : ''})`;
    case 'remove':
      return `remove ${s.path}`;
    case 'user':
      return `run useradd --system --user-group --home-dir ${s.home} --no-create-home --shell /usr/sbin/nologin ${s.name}   (only if ${s.name} does not exist)`;
    case 'run':
      return `run ${(s.shown ?? s.argv).map(quote).join(' ')}${s.allowFail ? '   (failure ignored)' : ''}`;
    case 'note':
      return `note: ${s.text}`;
  }
}

export function printPlan(title: string, plan: Plan, io: ApplyIO): void {
  io.stdout.write(`${title} --dry-run: nothing is changed. It would:\n`);
  for (const s of plan.steps) io.stdout.write(`  ${describeStep(s).replace(/\n/g, '\n  ')}\n`);
}

function runStep(argv: string[], io: ApplyIO): number {
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: 'inherit' });
  if (r.error) {
    io.stderr.write(`tdxfer service: cannot run ${argv[0]}: ${r.error.message}\n`);
    return 127;
  }
  return r.status ?? 1;
}

/** Carries out the plan; returns the exit code (a `status` step's own exit code passes through). */
export function applyPlan(plan: Plan, io: ApplyIO): number {
  let code = 0;
  for (const s of plan.steps) {
    switch (s.kind) {
      case 'copy':
        if (s.from !== s.to) {
          // Through a temporary name: a running copy of the old executable stays intact.
          const tmp = `${s.to}.new`;
          fs.copyFileSync(s.from, tmp);
          fs.chmodSync(tmp, s.mode);
          fs.renameSync(tmp, s.to);
          io.stdout.write(`installed ${s.to}\n`);
        }
        break;
      case 'write': {
        const data = s.binary ? Buffer.from(s.content, 'base64') : Buffer.from(s.content);
        // Unchanged content stays untouched (a reinstall of the same build changes nothing).
        if (!(fs.existsSync(s.path) && fs.readFileSync(s.path).equals(data))) {
          const tmp = `${s.path}.new`;
          fs.writeFileSync(tmp, data, { mode: s.mode });
          fs.renameSync(tmp, s.path);
          io.stdout.write(`wrote ${s.path}\n`);
        }
        fs.chmodSync(s.path, s.mode);
        break;
      }
      case 'mkdir':
        fs.mkdirSync(s.path, { recursive: true, mode: s.mode });
        if (s.owner && process.platform !== 'win32' && runStep(['chown', s.owner, s.path], io) !== 0) {
          throw new ServiceError('SERVICE_STEP_FAILED', `could not give ${s.path} to ${s.owner} (does the account exist? run as root)`);
        }
        break;
      case 'remove':
        if (fs.existsSync(s.path)) {
          fs.rmSync(s.path, { force: true });
          io.stdout.write(`removed ${s.path}\n`);
        }
        break;
      case 'user':
        if (spawnSync('id', ['-u', s.name], { stdio: 'ignore' }).status !== 0) {
          const nologin = fs.existsSync('/usr/sbin/nologin') ? '/usr/sbin/nologin' : '/sbin/nologin';
          const argv = ['useradd', '--system', '--user-group', '--home-dir', s.home, '--no-create-home', '--shell', nologin, '--comment', 'tdxfer agent', s.name];
          if (runStep(argv, io) !== 0) throw new ServiceError('SERVICE_STEP_FAILED', `could not create the ${s.name} user (run as root)`);
          io.stdout.write(`created system user ${s.name}\n`);
        }
        break;
      case 'run': {
        const rc = runStep(s.argv, io);
        if (s.passExit) code = rc;
        else if (rc !== 0 && !s.allowFail) {
          throw new ServiceError('SERVICE_STEP_FAILED', `\`${s.argv.map(quote).join(' ')}\` failed (exit ${rc}); nothing after it was done`);
        }
        break;
      }
      case 'note':
        io.stdout.write(`${s.text}\n`);
        break;
    }
  }
  return code;
}
