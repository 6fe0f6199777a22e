#!/usr/bin/env node
/**
 * The `tdxfer` command line. Each command's handler sets the exit code.
 *
 * Start-up cost (issue #12): `run` and `send` load only their own modules, imported when
 * their action runs; the other commands' modules (status client, service installer,
 * doctor, …) are loaded only when the first argument is not `run` or `send`, since
 * commander needs them registered for help, suggestions and their own parsing. Loading
 * every module cost a one-shot `tdxfer send` ~0.1 s of CPU before its first byte.
 */
import { Command } from 'commander';
import { versionLine } from '../build-info.js';
import { configHasOutbox, tuneYoungGeneration } from '../heap-tuning.js';

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
    if (configHasOutbox(o.config) === true) tuneYoungGeneration(); // before the agent's modules load, or they grow it (heap-tuning.ts)
    const { runAgent } = await import('./run.js');
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
    const { sendCommand } = await import('./send.js');
    process.exitCode = await sendCommand({ files, to: o.to, config: o.config, as: o.as, quiet: o.quiet ?? false });
  });

/** Every other command, in the order `tdxfer --help` lists them. */
async function registerOthers(): Promise<void> {
  const [config, status, jobs, doctor, limit, service, stop] = await Promise.all([
    import('./config-cmd.js'), import('./status-cmd.js'), import('./jobs-cmd.js'), import('./doctor.js'),
    import('./limit-cmd.js'), import('./service-cmd.js'), import('./stop-cmd.js'),
  ]);
  config.registerConfigCommands(program);
  status.registerStatusCommands(program);
  jobs.registerJobsCommands(program);
  doctor.registerDoctorCommand(program);
  limit.registerLimitCommand(program);
  service.registerServiceCommands(program);
  stop.registerStopCommand(program);
}

const first = process.argv[2];
const ready = first === 'run' || first === 'send' ? Promise.resolve() : registerOthers();

// No top-level await: the single executable runs this as CommonJS (Node 20's SEA).
ready.then(() => program.parseAsync(process.argv)).catch((err: unknown) => {
  process.stderr.write(`tdxfer: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
