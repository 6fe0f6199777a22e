/**
 * `tdxfer limit [RATE] [--peer NAME] [--incoming]`: change a running agent's bandwidth
 * limits through `POST /limits` (effective within a second on running transfers), or
 * show them without RATE. RATE as `parseRate` reads it: 20MB/s, 160Mbit/s, 0 or off.
 */
import type { Command } from 'commander';
import type { LimitsSnapshot } from '../limits/pacer.js';
import { formatRate, parseRate } from '../limits/rate.js';
import { describeError } from '../errors.js';
import type { CliIo } from './status-cmd.js';
import { CliFailure, EXIT, getJson, resolveEndpoint, sendJson, withCliFailures, type EndpointOptions } from './status-client.js';

export interface LimitOptions extends EndpointOptions {
  peer?: string | undefined;
  incoming?: boolean | undefined;
  json?: boolean | undefined;
}

export function limitsText(l: LimitsSnapshot): string {
  const lines = [
    `outgoing (all peers): limit ${formatRate(l.outgoing.maxBytesPerSecond)}, now ${formatRate(l.outgoing.bytesPerSecond).replace('unlimited', '0 B/s')}`,
    `incoming (all peers): limit ${formatRate(l.incoming.maxBytesPerSecond)}, now ${formatRate(l.incoming.bytesPerSecond).replace('unlimited', '0 B/s')}`,
  ];
  for (const p of l.peers) {
    lines.push(`to ${p.name}: limit ${p.maxBytesPerSecond > 0 ? formatRate(p.maxBytesPerSecond) : 'none of its own'}, now ${formatRate(p.bytesPerSecond).replace('unlimited', '0 B/s')}`);
  }
  return lines.join('\n') + '\n';
}

export function limitCommand(rate: string | undefined, o: LimitOptions, io: CliIo): Promise<number> {
  return withCliFailures(io, async () => {
    if (o.peer !== undefined && o.incoming) throw new CliFailure('--peer and --incoming do not go together: a peer limit caps what this agent sends to that peer; the incoming limit is for everything it receives', EXIT.usage);
    let body: Record<string, unknown> | null = null;
    if (rate !== undefined) {
      let bps: number;
      try {
        bps = parseRate(rate);
      } catch (err) {
        throw new CliFailure(describeError(err), EXIT.usage);
      }
      body = { maxBytesPerSecond: bps, ...(o.peer !== undefined ? { peer: o.peer } : {}), ...(o.incoming ? { direction: 'incoming' } : {}) };
    }
    const ep = await resolveEndpoint(o);
    let limits: LimitsSnapshot;
    if (body === null) limits = await getJson<LimitsSnapshot>(ep, '/limits');
    else limits = await sendJson<LimitsSnapshot>(ep, '/limits', body);
    io.out.write(o.json ? JSON.stringify(limits, null, 2) + '\n' : limitsText(limits));
    return EXIT.ok;
  });
}

export function registerLimitCommand(program: Command): void {
  const io: CliIo = { out: process.stdout, err: process.stderr };
  program
    .command('limit')
    .description('set a running agent\'s bandwidth limit now (20MB/s, 160Mbit/s, 0 or off = unlimited), or show the limits and measured rates')
    .argument('[rate]', 'new limit, e.g. 20MB/s, 160Mbit/s, 500KiB/s, 0/off')
    .option('--peer <name>', 'limit only what is sent to this peer (static or discovered)')
    .option('--incoming', 'limit what this agent receives (all peers together)')
    .option('-c, --config <file>', 'config file (default: $TDXFER_CONFIG, else built-in defaults); gives the status address')
    .option('--url <url>', 'status API address instead of the config')
    .option('--token <token>', 'status API token (default: $TDXFER_STATUS_TOKEN, else status.token of the config)')
    .option('--json', 'print the limits as JSON')
    .action(async (rate: string | undefined, o: LimitOptions) => {
      process.exitCode = await limitCommand(rate, o, io);
    });
}
