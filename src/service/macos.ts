/** macOS: a LaunchDaemon (started at boot, restarted after a crash, output to a log file). */
import { checkSafe, checkUser, type Plan, type ServiceAction, type ServiceOptions, type Step } from './plan.js';

export const MACOS_LABEL = 'com.tdxfer.agent';
export const MACOS_PLIST = `/Library/LaunchDaemons/${MACOS_LABEL}.plist`;
export const MACOS_PREFIX = '/usr/local/tdxfer';
export const MACOS_CONFIG = '/Library/Application Support/tdxfer/config.json';
export const MACOS_DATA = '/Library/Application Support/tdxfer/data';
export const MACOS_LOG = '/Library/Logs/tdxfer/tdxfer.log';

function x(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function launchdPlist(p: { program: string[]; config: string; user: string | null }): string {
  const args = [...p.program, 'run', '--config', p.config].map((a) => `    <string>${x(a)}</string>`);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    '<dict>',
    '  <key>Label</key>',
    `  <string>${MACOS_LABEL}</string>`,
    '  <key>ProgramArguments</key>',
    '  <array>',
    ...args,
    '  </array>',
    '  <key>EnvironmentVariables</key>',
    '  <dict>',
    '    <key>TDXFER_DATA_DIR</key>',
    `    <string>${x(MACOS_DATA)}</string>`,
    '  </dict>',
    '  <key>WorkingDirectory</key>',
    `  <string>${x(MACOS_DATA)}</string>`,
    ...(p.user !== null ? ['  <key>UserName</key>', `  <string>${x(p.user)}</string>`] : []),
    '  <key>RunAtLoad</key>',
    '  <true/>',
    // Restarted unless it exited 0 (a graceful stop); an invalid config (exit 2) is retried every ThrottleInterval.
    '  <key>KeepAlive</key>',
    '  <dict>',
    '    <key>SuccessfulExit</key>',
    '    <false/>',
    '  </dict>',
    '  <key>ThrottleInterval</key>',
    '  <integer>10</integer>',
    '  <key>ExitTimeOut</key>',
    '  <integer>20</integer>',
    '  <key>StandardOutPath</key>',
    `  <string>${x(MACOS_LOG)}</string>`,
    '  <key>StandardErrorPath</key>',
    `  <string>${x(MACOS_LOG)}</string>`,
    '</dict>',
    '</plist>',
    '',
  ].join('\n');
}

export function macosPlan(action: ServiceAction, o: ServiceOptions): Plan {
  const steps: Step[] = [];
  const target = `system/${MACOS_LABEL}`;
  switch (action) {
    case 'install': {
      if (o.user !== null) checkUser(o.user);
      let program = o.program;
      if (o.sea) {
        program = [`${MACOS_PREFIX}/tdxfer`];
        steps.push({ kind: 'mkdir', path: MACOS_PREFIX, mode: 0o755 });
        steps.push({ kind: 'copy', from: o.program[0]!, to: program[0]!, mode: 0o755 });
      }
      for (const w of [...program, o.config]) checkSafe('a service path', w);
      steps.push({ kind: 'mkdir', path: MACOS_DATA, mode: 0o750, ...(o.user !== null ? { owner: o.user } : {}) });
      steps.push({ kind: 'mkdir', path: '/Library/Logs/tdxfer', mode: 0o755, ...(o.user !== null ? { owner: o.user } : {}) });
      steps.push({ kind: 'write', path: MACOS_PLIST, mode: 0o644, content: launchdPlist({ program, config: o.config, user: o.user }) });
      steps.push({ kind: 'run', argv: ['launchctl', 'bootout', target], allowFail: true });
      steps.push({ kind: 'run', argv: ['launchctl', 'bootstrap', 'system', MACOS_PLIST] });
      steps.push({ kind: 'note', text: `started; logs in ${MACOS_LOG}. Write the config first if it is not there: \`tdxfer init --config "${o.config}"\`` });
      return { steps };
    }
    case 'uninstall':
      steps.push({ kind: 'run', argv: ['launchctl', 'bootout', target], allowFail: true });
      steps.push({ kind: 'remove', path: MACOS_PLIST });
      if (o.sea) steps.push({ kind: 'remove', path: `${MACOS_PREFIX}/tdxfer` });
      steps.push({ kind: 'note', text: `kept ${MACOS_CONFIG.replace(/\/config\.json$/, '')} (config, key, state) and ${MACOS_LOG}` });
      return { steps };
    case 'status':
      steps.push({ kind: 'run', argv: ['launchctl', 'print', target], passExit: true });
      return { steps };
    case 'start':
      steps.push({ kind: 'run', argv: ['launchctl', 'kickstart', target] });
      return { steps };
    case 'stop':
      // SIGTERM: the agent finishes in-flight writes and exits 0, which KeepAlive leaves stopped.
      steps.push({ kind: 'run', argv: ['launchctl', 'kill', 'SIGTERM', target] });
      return { steps };
  }
}
