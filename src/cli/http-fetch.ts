/**
 * A minimal fetch() for the CLI's calls to the local status API, on node:http.
 *
 * Why not the global fetch: undici calls setKeepAlive() on its socket before it is
 * connected, which under wine makes every connect fail with UNKNOWN (the Windows lane,
 * issue #14; the agent's own sockets avoid it, see transport/connect.ts). node:http does
 * not, and it is all a loopback JSON/SSE client needs. Returns a WHATWG Response so
 * callers read it as they would a fetch() result.
 */
import http from 'node:http';
import { Readable } from 'node:stream';

export interface HttpFetchInit {
  method?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  body?: string;
}

const NULL_BODY = new Set([101, 204, 205, 304]);

export function httpFetch(url: string, init: HttpFetchInit = {}): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
      const headers = new Headers();
      for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
      const status = res.statusCode ?? 500;
      const body = NULL_BODY.has(status) ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
      if (body === null) res.resume();
      resolve(new Response(body, { status, statusText: res.statusMessage ?? '', headers }));
    });
    req.once('error', reject);
    req.end(init.body);
  });
}
