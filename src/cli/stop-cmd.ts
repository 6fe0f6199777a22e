/**
 * `tdxfer stop`: asks the running agent to stop gracefully over its status API
 * (`POST /stop`, same access rule as `POST /send`), then waits until it no longer answers.
 * The stop path for Windows, where there is no SIGTERM, and for service wrappers/scripts.
 * Exit codes as `tdxfer status`: 0 stopped, 1 refused or still running after --timeout,
 * 2 usage/config, 3 no agent answering.
 */
import type { Command } from 'commander';
import { CliFailure, EXIT, httpFailure, request, resolveEndpoint, withCliFailures, type EndpointOptions } from './status-client.js';
import type { CliIo } from './status-cmd.js';

export interface StopOptions extends EndpointOptions {
  /** How long to wait for the agent to be gone, seconds (default 30). */
  timeout?: string | number;
}

export function stopCommand(o: StopOptions, io: CliIo): Promise<number> {
  return withCliFailures(io, async () => {
    const timeoutS = Number(o.timeout ?? 30);
    if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new CliFailure(`--timeout must be a positive number of seconds, got "${o.timeout}"`, EXIT.usage);
    const ep = await resolveEndpoint(o);
    const res = await request(ep, '/stop', AbortSignal.timeout(10_000), 'POST');
    const body = await res.text();
    if (res.status !== 202) throw httpFailure(ep, res.status, body);
    io.err.write(`asked the agent at ${ep.url} to stop; waiting for it to finish transfers in flight\n`);
    const end = Date.now() + timeoutS * 1000;
    for (;;) {
      try {
        const r = await request(ep, '/health', AbortSignal.timeout(5000));
        await r.body?.cancel();
      } catch (err) {
        if (err instanceof CliFailure && err.exitCode === EXIT.notRunning) break; // gone
        throw err;
      }
      if (Date.now() > end) throw new CliFailure(`the agent at ${ep.url} is still answering ${timeoutS} s after the stop request; check its log`, EXIT.failed);
      await new Promise((r) => setTimeout(r, 200));
    }
    io.out.write('stopped\n');
    return EXIT.ok;
  });
}

export function registerStopCommand(program: Command): void {
  program
    .command('stop')
    .description('stop the running agent gracefully over its status API (finishes transfers in flight; the way to stop it on Windows)')
    .option('-c, --config <file>', 'config file (default: $TDXFER_CONFIG, else built-in defaults); gives the status address')
    .option('--url <url>', 'status API address instead of the config (e.g. http://127.0.0.1:7771)')
    .option('--token <token>', 'status API token (default: $TDXFER_STATUS_TOKEN, else status.token of the config)')
    .option('--timeout <seconds>', 'how long to wait for the agent to be gone', '30')
    .action(async (o: StopOptions) => {
      process.exitCode = await stopCommand(o, { out: process.stdout, err: process.stderr });
    });
}
