/** Shared bits for the status API tests: a started server on port 0 and a raw HTTP client. */
import http from 'node:http';
import { memoryLogger } from '../../src/log.js';
import { StatusServer, type StatusServerOptions } from '../../src/status/server.js';
import { FakeView } from '../helpers/fake-view.js';

export interface Started {
  view: FakeView;
  server: StatusServer;
  base: string;
  port: number;
  log: ReturnType<typeof memoryLogger>;
}

export async function startStatus(opts: Partial<StatusServerOptions> = {}, view = new FakeView()): Promise<Started> {
  const log = memoryLogger();
  const server = new StatusServer(view, { host: '127.0.0.1', port: 0, token: null, log, version: '9.9.9-test', ...opts });
  const { port } = await server.start();
  return { view, server, base: `http://127.0.0.1:${port}`, port, log };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: () => unknown;
}

export function request(
  url: string,
  o: { method?: string; headers?: Record<string, string | number>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: o.method ?? 'GET', headers: o.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) as unknown });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}
