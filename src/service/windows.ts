/**
 * Windows: a real service through WinSW (the wrapper node-windows ships on the npm registry,
 * MIT licensed). WinSW stops the agent with Ctrl-C (the agent finishes transfers and exits 0)
 * and kills it only after <stoptimeout>; it restarts it after failures, starts it at boot, and
 * rolls its output into logs\ beside the data folder.
 */
import { checkSafe, checkUser, SERVICE_NAME, type Plan, type ServiceAction, type ServiceOptions, type Step } from './plan.js';

export const WINSW_SOURCE = 'node_modules/node-windows/bin/winsw/winsw.exe';
export const WINSW_CONFIG_SOURCE = 'node_modules/node-windows/bin/winsw/winsw.exe.config';

export interface WindowsPaths {
  /** Where the executable and the wrapper live (Program Files\tdxfer). */
  programDir: string;
  /** ProgramData\tdxfer: config.json, data\, logs\. */
  home: string;
  data: string;
  logs: string;
  wrapper: string;
  xml: string;
}

export function windowsPaths(env: Record<string, string | undefined>): WindowsPaths {
  const programFiles = (env.ProgramFiles ?? env.PROGRAMFILES ?? 'C:\\Program Files').replace(/\\+$/, '');
  const programData = (env.ProgramData ?? env.PROGRAMDATA ?? 'C:\\ProgramData').replace(/\\+$/, '');
  const programDir = `${programFiles}\\tdxfer`;
  const home = `${programData}\\tdxfer`;
  return {
    programDir,
    home,
    data: `${home}\\data`,
    logs: `${home}\\logs`,
    wrapper: `${programDir}\\tdxfer-service.exe`,
    xml: `${programDir}\\tdxfer-service.xml`,
  };
}

/** Element text (quotes stay as they are: <arguments> carries command-line quoting). */
function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function xmlAttr(s: string): string {
  return xmlEscape(s).replace(/"/g, '&quot;');
}

/** Windows command-line quoting for display and <arguments>: key=value keeps the key outside the quotes. */
function winQuote(w: string): string {
  if (!/[\s"]/.test(w)) return w;
  const kv = /^([a-z]+=)(.*)$/.exec(w);
  return kv ? `${kv[1]}"${kv[2]}"` : `"${w}"`;
}

export interface WinswParams {
  program: string[];
  config: string;
  paths: WindowsPaths;
  /** Named account (".\name" or "DOMAIN\name"); null: LocalSystem. */
  user: string | null;
  /** Only while installing: WinSW reads it once to register the account; never left on disk. */
  password: string | null;
}

/** The WinSW (1.x) service definition. */
export function winswXml(p: WinswParams): string {
  const [exe, ...pre] = p.program;
  const args = [...pre, 'run', '--config', p.config].map(winQuote).join(' ');
  const lines = [
    '<!-- tdxfer service, written by `tdxfer service install` (WinSW 1.x from node-windows). Reinstall to change it. -->',
    '<service>',
    `  <id>${SERVICE_NAME}</id>`,
    '  <name>tdxfer</name>',
    '  <description>tdxfer hot-folder transfer agent (outbox folders to inbox folders)</description>',
    `  <executable>${xmlEscape(exe!)}</executable>`,
    `  <arguments>${xmlEscape(args)}</arguments>`,
    `  <workingdirectory>${xmlEscape(p.paths.data)}</workingdirectory>`,
    `  <env name="TDXFER_DATA_DIR" value="${xmlAttr(p.paths.data)}"/>`,
    '  <env name="NODE_ENV" value="production"/>',
    // Start at boot.
    '  <startmode>Automatic</startmode>',
    // Graceful stop: Ctrl-C to the agent, which finishes in-flight writes; killed after 20 s.
    '  <stopparentprocessfirst>true</stopparentprocessfirst>',
    '  <stoptimeout>20 sec</stoptimeout>',
    // Recovery: restart after a crash, then back off; the count resets after an hour of running.
    '  <onfailure action="restart" delay="5 sec"/>',
    '  <onfailure action="restart" delay="30 sec"/>',
    '  <onfailure action="restart" delay="2 min"/>',
    '  <resetfailure>1 hour</resetfailure>',
    // Logs beside the data folder, 8 files of 10 MiB at most.
    `  <logpath>${xmlEscape(p.paths.logs)}</logpath>`,
    '  <log mode="roll-by-size">',
    '    <sizeThreshold>10240</sizeThreshold>',
    '    <keepFiles>8</keepFiles>',
    '  </log>',
  ];
  if (p.user !== null) {
    const [domain, name] = p.user.includes('\\') ? p.user.split('\\', 2) : ['.', p.user];
    lines.push(
      '  <serviceaccount>',
      `    <domain>${xmlEscape(domain!)}</domain>`,
      `    <user>${xmlEscape(name!)}</user>`,
      ...(p.password !== null ? [`    <password>${xmlEscape(p.password)}</password>`] : []),
      '    <allowservicelogon>true</allowservicelogon>',
      '  </serviceaccount>',
    );
  }
  lines.push('</service>', '');
  return lines.join('\r\n');
}

/** The inbound rule for the transfer port, private networks only. */
export function firewallCommand(program: string, port: number): string[] {
  return [
    'netsh', 'advfirewall', 'firewall', 'add', 'rule',
    'name=tdxfer', 'dir=in', 'action=allow', 'protocol=TCP', `localport=${port}`, 'profile=private', `program=${program}`, 'enable=yes',
  ];
}

export function firewallRemoveCommand(): string[] {
  return ['netsh', 'advfirewall', 'firewall', 'delete', 'rule', 'name=tdxfer'];
}

export function windowsPlan(action: ServiceAction, o: ServiceOptions, winsw: { exe: Buffer; config: string } | null): Plan {
  const p = windowsPaths(o.env);
  const steps: Step[] = [];
  switch (action) {
    case 'install': {
      if (o.user !== null) checkUser(o.user.replace(/^[^\\]*\\/, ''));
      let program = o.program;
      if (o.sea) {
        program = [`${p.programDir}\\tdxfer.exe`];
        steps.push({ kind: 'mkdir', path: p.programDir, mode: 0o755 });
        steps.push({ kind: 'copy', from: o.program[0]!, to: program[0]!, mode: 0o755 });
      }
      for (const w of [...program, o.config]) checkSafe('a service path', w);
      if (!o.sea) steps.push({ kind: 'mkdir', path: p.programDir, mode: 0o755 });
      steps.push({ kind: 'mkdir', path: p.data, mode: 0o755 });
      steps.push({ kind: 'mkdir', path: p.logs, mode: 0o755 });
      if (winsw) {
        steps.push({ kind: 'write', path: p.wrapper, content: winsw.exe.toString('base64'), binary: true, mode: 0o755, shown: `(WinSW ${winsw.exe.length} bytes, from node-windows)` });
        steps.push({ kind: 'write', path: `${p.wrapper}.config`, content: winsw.config, mode: 0o644 });
      }
      const password = o.user !== null ? (o.env.TDXFER_SERVICE_PASSWORD ?? null) : null;
      if (o.user !== null && password === null) {
        steps.push({ kind: 'note', text: `--user ${o.user}: set TDXFER_SERVICE_PASSWORD to that account's password for this command (it is not kept on disk), or enter it later in services.msc` });
      }
      const xml = winswXml({ program, config: o.config, paths: p, user: o.user, password });
      const clean = winswXml({ program, config: o.config, paths: p, user: o.user, password: null });
      steps.push({ kind: 'write', path: p.xml, content: xml, mode: 0o644, ...(password !== null ? { shown: clean.replace('    <allowservicelogon>', '    <password>********</password>\r\n    <allowservicelogon>') } : {}) });
      steps.push({ kind: 'run', argv: [p.wrapper, 'install'] });
      // WinSW read the password while installing: the file keeps no secret.
      if (password !== null) steps.push({ kind: 'write', path: p.xml, content: clean, mode: 0o644 });
      const fw = firewallCommand(program[0]!, o.port);
      if (o.firewall) steps.push({ kind: 'run', argv: fw });
      else steps.push({ kind: 'note', text: `firewall (run as administrator, or install with --firewall): ${fw.map(winQuote).join(' ')}` });
      steps.push({ kind: 'note', text: `next: write the config if it is not there (\`tdxfer init --config "${o.config}"\`), then \`tdxfer service start\`; logs in ${p.logs}` });
      return { steps };
    }
    case 'uninstall':
      steps.push({ kind: 'run', argv: [p.wrapper, 'stop'], allowFail: true });
      steps.push({ kind: 'run', argv: [p.wrapper, 'uninstall'], allowFail: true });
      if (o.firewall) steps.push({ kind: 'run', argv: firewallRemoveCommand(), allowFail: true });
      steps.push({ kind: 'remove', path: p.xml });
      steps.push({ kind: 'remove', path: p.wrapper });
      steps.push({ kind: 'remove', path: `${p.wrapper}.config` });
      if (o.sea) steps.push({ kind: 'remove', path: `${p.programDir}\\tdxfer.exe` });
      steps.push({ kind: 'note', text: `kept ${p.home} (config, key, state, logs)` });
      return { steps };
    case 'status':
      steps.push({ kind: 'run', argv: ['sc.exe', 'query', SERVICE_NAME], passExit: true });
      return { steps };
    case 'start':
    case 'stop':
      steps.push({ kind: 'run', argv: ['sc.exe', action, SERVICE_NAME] });
      return { steps };
  }
}
