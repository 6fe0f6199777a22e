#!/usr/bin/env node
/** The `tdxfer` command line. Each command's handler sets the exit code. */
import { Command } from 'commander';
import { registerConfigCommands } from './config-cmd.js';
import { registerStatusCommands } from './status-cmd.js';
import { registerDoctorCommand } from './doctor.js';
import { registerJobsCommands } from './jobs-cmd.js';
import { registerLimitCommand } from './limit-cmd.js';
import { registerStopCommand } from './stop-cmd.js';
import { runAgent } from './run.js';
import { sendCommand } from './send.js';
import { versionLine } from '../build-info.js';
import { registerServiceCommands } from './service-cmd.js';

const program = new Command();
program
  .name('tdxfer')
  .description('Hot-folder transfer agent for TouchDesigner installations: outbox folders → inbox folders of other machines, verified and atomic.')
  .version(versionLine(), '-V, --version', 'print the version, commit and platform')
  .showHelpAfterError('(run with --help for usage)');

program
  .command('run')
  .description('run the agent (watch outboxes, send, receive into inboxes) until SIGINT/SIGTERM, Ctrl-Break (Windows) or `tdxfer stop`')
  .option('-c, --config <file>', 'config file (default: $TDXFER_CONFIG, else built-in defaults)')
  .action(async (o: { config?: string }) => {
    process.exitCode = await runAgent({ config: o.config });
  });

program
  .command('send')
  .description('send files once to a peer and wait until each is confirmed (no running agent needed); exit 0 only if every file was confirmed')
  .argument('<files...>', 'files to send')
  .requiredOption('-t, --to <peer[/inbox]>', 'destination: a peer name from the config (or this agent\'s own name) and its inbox')
  .option('-c, --config <file>', 'config file (default: $TDXFER_CONFIG, else built-in defaults)')
  .option('--as <name>', 'name at the receiver (one file only; relative, may contain folders)')
  .option('--quiet', 'no progress bar')
  .action(async (files: string[], o: { to: string; config?: string; as?: string; quiet?: boolean }) => {
    process.exitCode = await sendCommand({ files, to: o.to, config: o.config, as: o.as, quiet: o.quiet ?? false });
  });

registerConfigCommands(program);
registerStatusCommands(program);
registerJobsCommands(program);
registerDoctorCommand(program);
registerLimitCommand(program);
registerServiceCommands(program);
registerStopCommand(program);

// No top-level await: the single executable runs this as CommonJS (Node 20's SEA).
program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`tdxfer: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
