/**
 * The venue run's eyes on the segment (test/bench/venue.ts): one process that runs inside
 * the venue's switch namespace, where the bridge has an address of its own, so it reaches
 * every agent over the bridge without touching the host's network.
 *
 * - Receives the receivers' OSC on UDP `--osc-port` and prints each message as a JSON line
 *   `{"osc": {"address", "args", "from"}}`.
 * - Answers commands read from stdin, one JSON line each:
 *   `{"id": 1, "cmd": "peers", "targets": ["10.x.y.2:7771", ...], "token": "..."}` →
 *   `{"id": 1, "peers": [[{"name", "state", "source"}...] | null, ...]}` (null: no answer).
 * Exits when stdin closes.
 */
import dgram from 'node:dgram';
import http from 'node:http';
import readline from 'node:readline';
import { decode } from 'node-osc';

const args = process.argv.slice(2);
const oscPort = Number(args[args.indexOf('--osc-port') + 1] ?? 9000);

function out(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const sock = dgram.createSocket('udp4');
sock.on('message', (buf, rinfo) => {
  try {
    const m = decode(buf) as { address: string; args: Array<{ value: unknown }> };
    out({ osc: { address: m.address, args: m.args.map((a) => a.value), from: rinfo.address } });
  } catch {
    // not OSC: ignore
  }
});
sock.bind(oscPort, '0.0.0.0', () => out({ ready: true, oscPort }));

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function getJson(target: string, pathname: string, token: string): Promise<unknown> {
  const [host, port] = target.split(':');
  return new Promise((resolve) => {
    const req = http.get({ host, port: Number(port), path: pathname, agent, timeout: 20_000, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 ? JSON.parse(body) : null);
        } catch {
          resolve(null);
        }
      });
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

interface Command {
  id: number;
  cmd: 'peers';
  targets: string[];
  token: string;
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let c: Command;
  try {
    c = JSON.parse(line) as Command;
  } catch {
    return;
  }
  if (c.cmd === 'peers') {
    void Promise.all(
      c.targets.map(async (t) => {
        const s = (await getJson(t, '/status', c.token)) as { peers?: Array<{ name: string; state: string; source: string }> } | null;
        return s?.peers ? s.peers.map((p) => ({ name: p.name, state: p.state, source: p.source })) : null;
      }),
    ).then((peers) => out({ id: c.id, peers }));
  }
});
rl.on('close', () => {
  sock.close();
  agent.destroy();
  process.exit(0);
});
