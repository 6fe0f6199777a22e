/**
 * How the CLI finds and talks to a running agent's status API: the address comes from
 * --url, else from the config's `status` section (no key needed: a machine without a key
 * yet can still ask), the token from --token, $TDXFER_STATUS_TOKEN or `status.token`.
 */
import { prepareConfig, resolveConfigPath } from '../config/index.js';
import { describeError } from '../errors.js';
import { httpFetch, type HttpFetchInit } from './http-fetch.js';

export interface EndpointOptions {
  config?: string | undefined;
  url?: string | undefined;
  token?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

export interface Endpoint {
  url: string;
  token: string | null;
}

/** Exit codes shared by `status`, `peers` and `doctor`. */
export const EXIT = { ok: 0, failed: 1, usage: 2, notRunning: 3 } as const;

export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** A host:port the status API can be reached at from this machine ("0.0.0.0" means loopback). */
export function statusUrl(host: string, port: number): string {
  let h = host;
  if (h === '0.0.0.0' || h === '') h = '127.0.0.1';
  else if (h === '::') h = '::1';
  if (h.includes(':')) h = `[${h}]`;
  return `http://${h}:${port}`;
}

export async function resolveEndpoint(o: EndpointOptions): Promise<Endpoint> {
  const env = o.env ?? process.env;
  const envToken = env.TDXFER_STATUS_TOKEN !== undefined && env.TDXFER_STATUS_TOKEN !== '' ? env.TDXFER_STATUS_TOKEN : undefined;
  if (o.url) {
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw new CliFailure(`--url ${o.url} is not a URL: use e.g. http://127.0.0.1:7771`, EXIT.usage);
    }
    return { url: u.origin, token: o.token ?? envToken ?? null };
  }
  const file = resolveConfigPath(o.config, env);
  let status;
  try {
    status = (await prepareConfig(file, { env })).config.status;
  } catch (err) {
    throw new CliFailure(`cannot read the config to find the status API: ${describeError(err)}\n(or pass --url http://host:port)`, EXIT.usage);
  }
  if (!status.enabled) {
    throw new CliFailure(`the status API is off in ${file ?? 'the built-in defaults'} (status.enabled: false): turn it on, or pass --url`, EXIT.notRunning);
  }
  return { url: statusUrl(status.host, status.port), token: o.token ?? envToken ?? status.token };
}

export function notRunning(url: string): CliFailure {
  return new CliFailure(`no tdxfer agent answering at ${url} — start it with \`tdxfer run\` or check status.port`, EXIT.notRunning);
}

/** GET a JSON endpoint; network failures become "not running", HTTP errors say what to do. */
export async function getJson<T>(ep: Endpoint, path: string, opts: { timeoutMs?: number; okStatuses?: number[] } = {}): Promise<T> {
  const res = await request(ep, path, AbortSignal.timeout(opts.timeoutMs ?? 5000));
  const text = await res.text();
  if (!res.ok && !(opts.okStatuses ?? []).includes(res.status)) throw httpFailure(ep, res.status, text);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CliFailure(`${ep.url}${path} did not answer with JSON (is that a tdxfer agent?)`, EXIT.failed);
  }
}

/**
 * Runs a CLI command's body: a CliFailure is printed to stderr and becomes the exit code; anything
 * else is a bug and propagates. The one error handling of the status-API commands.
 */
export async function withCliFailures(io: { err: { write(s: string): unknown } }, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CliFailure) {
      io.err.write(`${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

/** POST (or `method`) a JSON body and parse the JSON answer; failures as getJson. */
export async function sendJson<T>(ep: Endpoint, path: string, body: unknown, opts: { timeoutMs?: number; method?: string } = {}): Promise<T> {
  const res = await request(ep, path, AbortSignal.timeout(opts.timeoutMs ?? 5000), opts.method ?? 'POST', body);
  const text = await res.text();
  if (!res.ok) throw httpFailure(ep, res.status, text);
  return JSON.parse(text) as T;
}

export async function request(ep: Endpoint, path: string, signal: AbortSignal, method = 'GET', jsonBody?: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  if (ep.token) headers.Authorization = `Bearer ${ep.token}`;
  const init: HttpFetchInit = { method, headers, signal };
  if (jsonBody !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(jsonBody);
  }
  try {
    return await httpFetch(`${ep.url}${path}`, init);
  } catch (err) {
    if (signal.aborted) {
      if ((signal.reason as Error | undefined)?.name === 'TimeoutError') {
        throw new CliFailure(`the agent at ${ep.url} did not answer in time — is it stuck? check its log`, EXIT.notRunning);
      }
      throw err; // cancelled by the caller (Ctrl-C)
    }
    throw notRunning(ep.url);
  }
}

export function httpFailure(ep: Endpoint, status: number, body: string): CliFailure {
  if (status === 401) {
    return new CliFailure(`the agent at ${ep.url} wants a token: pass --token, set TDXFER_STATUS_TOKEN, or set status.token in the config`, EXIT.usage);
  }
  let msg = body.slice(0, 300);
  try {
    msg = (JSON.parse(body) as { error?: string }).error ?? msg;
  } catch {
    // not JSON: keep the text
  }
  return new CliFailure(`the agent at ${ep.url} answered ${status}: ${msg}`, EXIT.failed);
}
