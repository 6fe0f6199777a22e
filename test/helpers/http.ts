/** A plain HTTP request for tests of the status API (real sockets, no client library). */
import http from 'node:http';
import { deadline } from './platform.js';

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json<T = any>(): T; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export function httpRequest(
  url: string,
  o: { method?: string; headers?: Record<string, string | number>; body?: string | Buffer } = {},
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    // A connection of its own per request (agent: false), as the CLI, curl and the TD module
    // make them: a kept-alive socket from the pool could belong to an agent the test just
    // killed and restarted on the same port (under wine its end is not always seen in time).
    const req = http.request(url, { method: o.method ?? 'GET', headers: o.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    // A hang detector: 10 s on Linux, scaled under wine (slow process start and I/O).
    const ms = deadline(10_000);
    req.setTimeout(ms, () => req.destroy(new Error(`${o.method ?? 'GET'} ${url}: no answer within ${Math.round(ms / 1000)} s`)));
    req.on('error', reject);
    req.end(o.body);
  });
}
