/**
 * `tdxfer jobs [--json]` and `tdxfer cancel <id>`: the open jobs of a running agent
 * (GET /jobs) and cancelling one queued with POST /send (DELETE /jobs/<id>). Exit codes
 * as `tdxfer status` (0 ok, 1 agent refused, 2 usage, 3 no agent answering).
 */
import type { Command } from 'commander';
import type { JobView } from '../status/present.js';
import { formatBytes, table, type CliIo } from './status-cmd.js';
import { EXIT, getJson, httpFailure, request, resolveEndpoint, withCliFailures, type EndpointOptions } from './status-client.js';

export function jobsText(jobs: JobView[]): string {
  if (jobs.length === 0) return 'no open jobs\n';
  const rows = [['ID', 'KIND', 'FILE', 'TO', 'STATE', 'DONE', 'ERROR']];
  for (const j of jobs) {
    rows.push([
      j.id,
      j.kind ?? 'outbox',
      j.source,
      `${j.peer}/${j.inbox ?? ''}${j.target !== j.file ? ` as ${j.target}` : ''}`,
      j.state,
      `${formatBytes(j.bytesDone)}/${formatBytes(j.bytesTotal)}`,
      j.error ?? '',
    ]);
  }
  return table(rows);
}

export function jobsCommand(o: EndpointOptions & { json?: boolean }, io: CliIo): Promise<number> {
  return withCliFailures(io, async () => {
    const ep = await resolveEndpoint(o);
    const { jobs } = await getJson<{ jobs: JobView[] }>(ep, '/jobs');
    io.out.write(o.json ? JSON.stringify(jobs, null, 2) + '\n' : jobsText(jobs));
    return EXIT.ok;
  });
}

export function cancelCommand(id: string, o: EndpointOptions, io: CliIo): Promise<number> {
  return withCliFailures(io, async () => {
    const ep = await resolveEndpoint(o);
    const res = await request(ep, `/jobs/${encodeURIComponent(id)}`, AbortSignal.timeout(10_000), 'DELETE');
    const text = await res.text();
    if (!res.ok) throw httpFailure(ep, res.status, text);
    const j = JSON.parse(text) as JobView;
    io.out.write(`cancelled ${j.id}: ${j.source} → ${j.peer}/${j.inbox ?? ''}${j.error?.includes('while sending') ? ' (it was being sent: that transfer may still complete)' : ''}\n`);
    return EXIT.ok;
  });
}

const CONFIG_HELP = 'config file (default: $TDXFER_CONFIG, else built-in defaults); gives the status address';

export function registerJobsCommands(program: Command): void {
  const io: CliIo = { out: process.stdout, err: process.stderr };
  program
    .command('jobs')
    .description('list the open jobs of a running agent (outbox files and POST /send jobs): id, file, destination, state')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--url <url>', 'status API address instead of the config')
    .option('--token <token>', 'status API token (default: $TDXFER_STATUS_TOKEN, else status.token of the config)')
    .option('--json', 'print the jobs as JSON')
    .action(async (o: EndpointOptions & { json?: boolean }) => {
      process.exitCode = await jobsCommand(o, io);
    });
  program
    .command('cancel')
    .description('cancel a job queued with POST /send (tdxfer jobs shows ids); outbox files are cancelled by removing them from the outbox')
    .argument('<id>', 'job id')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--url <url>', 'status API address instead of the config')
    .option('--token <token>', 'status API token (default: $TDXFER_STATUS_TOKEN, else status.token of the config)')
    .action(async (id: string, o: EndpointOptions) => {
      process.exitCode = await cancelCommand(id, o, io);
    });
}
