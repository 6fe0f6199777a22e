/**
 * The local status API (node:http, no framework): health canary, JSON status, Server-Sent
 * Events, Prometheus metrics, the dashboard page, `POST /send` (the TOX's QueueJob) and
 * `POST /stop` (`tdxfer stop`: a graceful stop where there are no signals, i.e. Windows).
 *
 * Access rules (public contract, README "Status API"):
 * - With a token: every request carries `Authorization: Bearer <token>` or `?token=<token>`
 *   (compared in constant time), else 401.
 * - Without a token: only loopback clients are served (403 otherwise, even if bound to a
 *   wider address by mistake), the Host header must name a loopback host (DNS rebinding),
 *   and a state-changing request a browser could have sent cross-site is refused, with or
 *   without a token (authorizeMutation in csrf.ts: a web page cannot queue files).
 * A handler error is a 500 with a message; nothing a client sends can crash the agent.
 */
import { bodyFields } from './body.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AgentView, SendRequest } from '../types.js';
import { TdxError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { RateLimitedLog } from '../ratelog.js';
import { authorizeMutation } from './csrf.js';
import { AgentMetrics } from './metrics.js';
import { dashboardHtml, dashboardScript } from './page.js';
import { presentJob, presentSnapshot } from './present.js';
import { parseLimitRequest } from './limits.js';
import { SseHub, type SseOptions } from './sse.js';

export interface StatusServerOptions {
  host: string;
  port: number;
  token: string | null;
  log: Logger;
  version: string;
  /** Largest accepted request body, bytes (default 64 KiB). */
  maxBodyBytes?: number;
  /** The event stream's timings (tests tune them) and its progress throttle's clock (the composition root's). */
  sse?: Omit<SseOptions, 'log'>;
  /** Include prom-client's default process metrics (default true). */
  defaultMetrics?: boolean;
  /**
   * `POST /stop` (`tdxfer stop`): asks the process to stop gracefully, called after the
   * answer is sent. Without it the endpoint answers 404. Same access rule as `POST /send`.
   */
  onStop?: (reason: string) => void;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const JSON_HEADERS = { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' };

export function isLoopbackAddress(addr: string | undefined): boolean {
  if (!addr) return false;
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

function hostOfHeader(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class StatusServer {
  private readonly server: http.Server;
  private readonly sse: SseHub;
  private readonly metrics: AgentMetrics;
  private readonly log: Logger;
  private readonly tokenDigest: Buffer | null;
  private readonly maxBodyBytes: number;
  private readonly refusals: RateLimitedLog;
  private started = false;

  constructor(
    private readonly view: AgentView,
    private readonly opts: StatusServerOptions,
  ) {
    this.log = opts.log;
    this.tokenDigest = opts.token ? digest(opts.token) : null;
    this.maxBodyBytes = opts.maxBodyBytes ?? 64 * 1024;
    this.refusals = new RateLimitedLog(opts.log);
    this.sse = new SseHub(view, { log: opts.log, ...opts.sse });
    this.metrics = new AgentMetrics(view, { defaultMetrics: opts.defaultMetrics ?? true });
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
    this.server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  /** The port it listens on (status.port may be 0: any free port). */
  private boundPort(): number {
    const a = this.server.address();
    return a !== null && typeof a === 'object' ? a.port : this.opts.port;
  }

  async start(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const where = `${this.opts.host}:${this.opts.port}`;
        if (err.code === 'EADDRINUSE') {
          reject(new TdxError('STATUS_PORT_IN_USE', `status API: port ${where} is already in use (another tdxfer agent running?); change status.port in the config or stop the other process`, { cause: err }));
        } else if (err.code === 'EADDRNOTAVAIL') {
          reject(new TdxError('STATUS_LISTEN_FAILED', `status API: cannot listen on ${where}: no local interface has that address; fix status.host in the config`, { cause: err }));
        } else {
          reject(new TdxError('STATUS_LISTEN_FAILED', `status API: cannot listen on ${where}: ${describeError(err)}`, { cause: err }));
        }
      };
      this.server.once('error', onError);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.server.on('error', (err) => this.log.error('status API server error', { error: describeError(err) }));
    this.sse.start();
    this.metrics.start();
    this.started = true;
    const addr = this.server.address() as AddressInfo;
    if (!this.tokenDigest && !isLoopbackAddress(addr.address)) {
      this.log.warn('status API listens beyond loopback without a token: only loopback clients will be served; set status.token to allow remote access', { host: addr.address });
    }
    this.log.info('status API listening', { url: `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}/` });
    return { host: addr.address, port: addr.port };
  }

  /** Connected `/events` clients (for tests and diagnostics). */
  get eventClients(): number {
    return this.sse.clientCount;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.refusals.stop();
    this.sse.stop();
    this.metrics.stop();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      // The dashboard's script is public code (it ships in the package) and carries no data:
      // served without the token, so the page's <script src> needs none.
      if (url.pathname === '/dashboard.js') return this.serveScript(req, res);
      this.authorize(req, url);
      await this.route(req, res, url);
    } catch (err) {
      if (err instanceof HttpError) {
        this.sendJson(res, err.status, { error: err.message, code: err.code }, err.headers);
      } else {
        this.log.error('status API handler failed', { method: req.method, url: req.url, error: describeError(err) });
        this.sendJson(res, 500, { error: `internal error: ${describeError(err)}`, code: 'INTERNAL' });
      }
    }
  }

  private serveScript(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, `${method} not allowed on /dashboard.js; use GET or HEAD`, 'METHOD_NOT_ALLOWED', { Allow: 'GET, HEAD' });
    const js = dashboardScript();
    res.writeHead(200, {
      'Content-Type': 'text/javascript; charset=utf-8',
      'Content-Length': Buffer.byteLength(js),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
    });
    res.end(method === 'HEAD' ? undefined : js);
  }

  private authorize(req: http.IncomingMessage, url: URL): void {
    if (this.tokenDigest) {
      const auth = req.headers.authorization;
      // RFC 9110 11.1: the auth scheme is case-insensitive ("bearer", "BEARER").
      const bearer = auth === undefined ? null : /^bearer[ \t]+(.*)$/i.exec(auth);
      const given = bearer ? bearer[1]!.trim() : url.searchParams.get('token');
      if (given === null || !timingSafeEqual(digest(given), this.tokenDigest)) {
        throw new HttpError(401, 'missing or wrong token: send `Authorization: Bearer <status.token>` or add `?token=<status.token>` to the URL', 'UNAUTHORIZED', {
          'WWW-Authenticate': 'Bearer realm="tdxfer"',
        });
      }
      this.authorizeMutation(req);
      return;
    }
    if (!isLoopbackAddress(req.socket.remoteAddress)) {
      throw new HttpError(403, 'the status API serves only this machine unless status.token is set in the config', 'FORBIDDEN');
    }
    const host = hostOfHeader(req.headers.host ?? '').toLowerCase();
    if (host !== '' && host !== 'localhost' && !isLoopbackAddress(host) && host !== this.opts.host.toLowerCase()) {
      throw new HttpError(403, `Host "${host}" is not a loopback name; use http://127.0.0.1:${this.boundPort()}/ or set status.token`, 'FORBIDDEN');
    }
    this.authorizeMutation(req);
  }

  /** Cross-site request forgery: one rule for every state-changing endpoint (csrf.ts). */
  private authorizeMutation(req: http.IncomingMessage): void {
    const refusal = authorizeMutation(req);
    if (refusal) {
      this.metrics.countRefusal(refusal.code);
      this.refusals.warn('status API cross-site refusals', `status API: refused ${req.method} ${req.url}: ${refusal.message}`);
      throw new HttpError(refusal.status, refusal.message, refusal.code);
    }
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? 'GET';
    const p = url.pathname;
    const only = (...allowed: string[]): void => {
      if (!allowed.includes(method)) throw new HttpError(405, `${method} not allowed on ${p}; use ${allowed.join(' or ')}`, 'METHOD_NOT_ALLOWED', { Allow: allowed.join(', ') });
    };
    const jobMatch = /^\/jobs\/([^/]+)$/.exec(p);
    switch (true) {
      case p === '/': {
        only('GET', 'HEAD');
        res.writeHead(200, {
          'Content-Type': 'text/html; charset=utf-8',
          'Cache-Control': 'no-store',
          // Scripts only from this server (/dashboard.js): no inline script can run in the page.
          'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
          'X-Content-Type-Options': 'nosniff',
          'Referrer-Policy': 'no-referrer',
        });
        res.end(method === 'HEAD' ? undefined : dashboardHtml(this.opts.version));
        return;
      }
      case p === '/health': {
        only('GET');
        const h = await this.view.health();
        this.sendJson(res, h.ok ? 200 : 503, h);
        return;
      }
      case p === '/status': {
        only('GET');
        this.sendJson(res, 200, presentSnapshot(this.view.snapshot()));
        return;
      }
      case p === '/events': {
        only('GET');
        this.sse.attach(req, res);
        return;
      }
      case p === '/metrics': {
        only('GET');
        const body = await this.metrics.render();
        res.writeHead(200, { 'Content-Type': this.metrics.contentType, 'Cache-Control': 'no-store' });
        res.end(body);
        return;
      }
      case p === '/send': {
        only('POST');
        const sendReq = parseSendRequest(await this.readBody(req), req.headers['content-type']);
        try {
          const job = await this.view.send(sendReq);
          this.sendJson(res, 202, { ...presentJob(job) });
        } catch (err) {
          if (err instanceof TdxError) throw new HttpError(err.code.startsWith('JOURNAL_') ? 503 : 400, err.message, err.code);
          throw err;
        }
        return;
      }
      case p === '/limits': {
        // Same access rule as POST /send: every request passes authorize() in handle().
        only('GET', 'POST');
        if (method === 'GET' || !this.view.setLimit) {
          this.sendJson(res, 200, this.view.snapshot().limits ?? null);
          return;
        }
        try {
          this.sendJson(res, 200, this.view.setLimit(parseLimitRequest(await this.readBody(req), req.headers['content-type'])));
        } catch (err) {
          if (err instanceof TdxError) throw new HttpError(400, err.message, err.code);
          throw err;
        }
        return;
      }
      case p === '/stop': {
        only('POST');
        const onStop = this.opts.onStop;
        if (!onStop) throw new HttpError(404, 'this agent cannot be stopped over its status API', 'NOT_FOUND');
        const from = req.socket.remoteAddress ?? '?';
        this.log.info(`stop requested over the status API (POST /stop from ${from})`);
        res.once('finish', () => onStop(`stop request from ${from}`));
        this.sendJson(res, 202, { stopping: true });
        return;
      }
      case p === '/jobs': {
        only('GET');
        this.sendJson(res, 200, { jobs: this.view.openJobs().map(presentJob) });
        return;
      }
      case jobMatch !== null: {
        only('GET', 'DELETE');
        let id: string;
        try {
          id = decodeURIComponent(jobMatch![1]!);
        } catch {
          throw new HttpError(400, `bad job id in ${p}: invalid percent-encoding`, 'BAD_REQUEST');
        }
        if (method === 'DELETE') {
          try {
            this.sendJson(res, 200, presentJob(await this.view.cancel(id)));
          } catch (err) {
            if (!(err instanceof TdxError)) throw err;
            const status = err.code === 'NOT_FOUND' ? 404 : err.code === 'NOT_CANCELLABLE' || err.code === 'ALREADY_FINISHED' ? 409 : 500;
            throw new HttpError(status, err.message, err.code);
          }
          return;
        }
        const job = this.view.job(id);
        if (!job) throw new HttpError(404, `no job with id "${id}" (finished jobs are forgotten after a while)`, 'NOT_FOUND');
        this.sendJson(res, 200, presentJob(job));
        return;
      }
      default:
        throw new HttpError(404, `no such endpoint: ${p} (try /status, /health, /events, /metrics, POST /send, POST /limits, POST /stop, /jobs, /jobs/<id>)`, 'NOT_FOUND');
    }
  }

  private readBody(req: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      const declared = Number(req.headers['content-length'] ?? '0');
      if (declared > this.maxBodyBytes) {
        req.resume();
        reject(new HttpError(413, `request body too large: ${declared} bytes, limit ${this.maxBodyBytes}`, 'BODY_TOO_LARGE', { Connection: 'close' }));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > this.maxBodyBytes) {
          req.removeAllListeners('data');
          req.resume();
          reject(new HttpError(413, `request body too large: over ${this.maxBodyBytes} bytes`, 'BODY_TOO_LARGE', { Connection: 'close' }));
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });
  }

  private sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { ...JSON_HEADERS, 'Content-Length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }
}

/** A caller's own job id (POST /send `clientId`): short and safe to echo anywhere. */
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * `{ file, peer, inbox?, as?, clientId? }` from a JSON body, or the same fields form-encoded (what
 * TouchDesigner's Web Client DAT sends by default). Field `target` is accepted for `peer`
 * (the TOX's `QueueJob(file_name, target_name)`).
 */
export function parseSendRequest(body: string, contentType: string | undefined): SendRequest {
  const fields = bodyFields(body, contentType, '{"file": "/abs/path", "peer": "name"}', (m) => new HttpError(400, m, 'BAD_REQUEST'));
  const str = (k: string): string | undefined => {
    const v = fields[k];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw new HttpError(400, `\`${k}\` must be a string, got ${JSON.stringify(v)}`, 'BAD_REQUEST');
    return v;
  };
  const file = str('file');
  const peer = str('peer') ?? str('target');
  if (!file) throw new HttpError(400, 'missing `file`: the absolute path of the file to send', 'BAD_REQUEST');
  if (!peer) throw new HttpError(400, 'missing `peer`: the name of the receiving agent', 'BAD_REQUEST');
  const req: SendRequest = { file, peer };
  const inbox = str('inbox');
  const as = str('as');
  const clientId = str('clientId');
  if (inbox !== undefined) req.inbox = inbox;
  if (as !== undefined) req.as = as;
  if (clientId !== undefined) {
    if (!CLIENT_ID.test(clientId)) throw new HttpError(400, `\`clientId\` must be 1-64 characters from A-Z a-z 0-9 . _ : -, got ${JSON.stringify(clientId.slice(0, 80))}`, 'BAD_REQUEST');
    req.clientId = clientId;
  }
  return req;
}
