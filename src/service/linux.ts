/** Linux: the systemd unit (systemd/tdxfer.service with its hardening), installed for this executable or `node dist/…`. */
import path from 'node:path';
import { checkSafe, checkUser, SERVICE_NAME, type Plan, type ServiceAction, type ServiceOptions, type Step } from './plan.js';

export const LINUX_PREFIX = '/opt/tdxfer';
export const LINUX_CONFIG = '/etc/tdxfer/config.json';
export const LINUX_UNIT = `/etc/systemd/system/${SERVICE_NAME}.service`;
export const LINUX_DEFAULT_USER = 'tdxfer';

export interface UnitParams {
  /** ExecStart's program words: the executable, or node and main.js. */
  program: string[];
  config: string;
  user: string;
  /** Documentation= target. */
  docs: string;
}

/**
 * The unit from the template: ExecStart, User/Group and Documentation replaced, everything
 * else (restart policy, hardening) as shipped. The account `tdxfer` gets Group=tdxfer; another
 * account keeps its own primary group.
 */
export function renderUnit(template: string, p: UnitParams): string {
  for (const w of p.program) checkSafe('the program path', w);
  checkSafe('--config', p.config);
  checkUser(p.user);
  const quote = (w: string): string => (w.includes(' ') ? `"${w}"` : w);
  const lines: string[] = [];
  for (const line of template.split('\n')) {
    if (line.startsWith('ExecStart=')) lines.push(`ExecStart=${[...p.program, 'run', '--config', p.config].map(quote).join(' ')}`);
    else if (line.startsWith('Documentation=')) lines.push(`Documentation=${p.docs}`);
    else if (line.startsWith('User=')) lines.push(`User=${p.user}`);
    else if (line.startsWith('Group=')) {
      if (p.user === LINUX_DEFAULT_USER) lines.push(`Group=${p.user}`);
    } else lines.push(line);
  }
  return lines.join('\n');
}

export function linuxPlan(action: ServiceAction, o: ServiceOptions, template: string): Plan {
  const d = o.destdir.replace(/\/+$/, '');
  const live = d === '';
  const unit = `${SERVICE_NAME}.service`;
  const steps: Step[] = [];
  const systemctl = (...args: string[]): void => {
    if (live) steps.push({ kind: 'run', argv: ['systemctl', ...args] });
  };
  switch (action) {
    case 'install': {
      const user = o.user ?? LINUX_DEFAULT_USER;
      checkUser(user);
      let program = o.program;
      if (o.sea && !o.launcher) {
        // The service runs its own copy: the downloaded file may sit under /home (hidden by ProtectHome).
        const target = `${LINUX_PREFIX}/bin/tdxfer`;
        steps.push({ kind: 'mkdir', path: `${d}${LINUX_PREFIX}/bin`, mode: 0o755 });
        steps.push({ kind: 'copy', from: o.program[0]!, to: `${d}${target}`, mode: 0o755 });
        program = [target];
      } else if (o.program.some((w) => w.startsWith('/home/') || w.startsWith('/root/'))) {
        steps.push({
          kind: 'note',
          text: `${o.program.join(' ')} is under /home or /root, which the unit hides (ProtectHome=yes): use scripts/install.sh (it installs into ${LINUX_PREFIX}) or the single executable`,
        });
      }
      if (live && user === LINUX_DEFAULT_USER) steps.push({ kind: 'user', name: user, home: '/var/lib/tdxfer' });
      // The README beside the program: <prefix>/app for install.sh's launcher, the checkout from source.
      const docs = o.launcher
        ? `file:${path.posix.join(path.posix.dirname(path.posix.dirname(program[0]!)), 'app/README.md')}`
        : o.sea
          ? 'man:systemd.exec(5)'
          : `file:${path.posix.join(path.posix.dirname(path.posix.dirname(path.posix.dirname(path.posix.dirname(program[1] ?? '/')))), 'README.md')}`;
      steps.push({ kind: 'mkdir', path: `${d}/etc/systemd/system`, mode: 0o755 });
      steps.push({ kind: 'write', path: `${d}${LINUX_UNIT}`, mode: 0o644, content: renderUnit(template, { program, config: o.config, user, docs }) });
      steps.push({ kind: 'mkdir', path: `${d}${path.dirname(o.config)}`, mode: 0o750 });
      steps.push({ kind: 'mkdir', path: `${d}/srv/tdxfer`, mode: 0o755, ...(live ? { owner: user } : {}) });
      systemctl('daemon-reload');
      if (o.enable) systemctl('enable', unit);
      steps.push({
        kind: 'note',
        text: `next: write the config if it is not there (\`tdxfer init --config ${o.config}\`), check it (\`tdxfer doctor --config ${o.config}\`), then \`tdxfer service start\``,
      });
      return { steps };
    }
    case 'uninstall':
      if (live) steps.push({ kind: 'run', argv: ['systemctl', 'disable', '--now', unit], allowFail: true });
      steps.push({ kind: 'remove', path: `${d}${LINUX_UNIT}` });
      systemctl('daemon-reload');
      if (o.sea) steps.push({ kind: 'remove', path: `${d}${LINUX_PREFIX}/bin/tdxfer` });
      steps.push({ kind: 'note', text: `kept ${path.dirname(o.config)} (config, key) and /var/lib/tdxfer (state); /srv/tdxfer is never removed` });
      return { steps };
    case 'status':
      steps.push({ kind: 'run', argv: ['systemctl', 'status', '--no-pager', unit], passExit: true });
      return { steps };
    case 'start':
    case 'stop':
      steps.push({ kind: 'run', argv: ['systemctl', action, unit] });
      return { steps };
  }
}
