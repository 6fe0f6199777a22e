/**
 * Server-Sent Events fan-out of the agent's events to HTTP clients.
 *
 * Invariants:
 * - Progress is coalesced per job: at most one `progress` event per job per
 *   `progressIntervalMs`, always carrying the latest numbers (ProgressThrottle's trailing
 *   edge, src/progress.ts); a `job` event for that job supersedes (drops) its pending
 *   progress so no stale progress follows a state change.
 * - Memory per client is bounded: a client whose unsent backlog (`writableLength`)
 *   exceeds `maxBufferBytes` is disconnected (EventSource reconnects on its own).
 * - Clients that go away are removed on `close`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AgentEvents, AgentView, JobInfo } from '../types.js';
import type { Logger } from '../log.js';
import { presentIncoming, presentJob } from './present.js';
import { ProgressThrottle } from '../progress.js';
import { systemClock, type Clock } from '../clock.js';

export interface SseOptions {
  log: Logger;
  heartbeatMs?: number;
  progressIntervalMs?: number;
  maxBufferBytes?: number;
  /** The progress throttle's clock (default systemClock). */
  clock?: Clock;
}

/** Held targets reach clients through /status (`held`), not as an SSE event. */
type EventName = Exclude<keyof AgentEvents, 'held'>;

export class SseHub {
  private readonly clients = new Set<ServerResponse>();
  private readonly progress: ProgressThrottle<JobInfo>;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly heartbeatMs: number;
  private readonly maxBufferBytes: number;
  private readonly log: Logger;
  private readonly listeners: { [K in EventName]: (...args: AgentEvents[K]) => void };

  constructor(
    private readonly view: AgentView,
    opts: SseOptions,
  ) {
    this.log = opts.log;
    this.heartbeatMs = opts.heartbeatMs ?? 15_000;
    this.progress = new ProgressThrottle<JobInfo>(opts.progressIntervalMs ?? 100, {
      clock: opts.clock ?? systemClock,
      deliver: (_id, job) => this.broadcast('progress', presentJob(job)),
    });
    this.maxBufferBytes = opts.maxBufferBytes ?? 256 * 1024;
    this.listeners = {
      job: (job) => {
        if (job.state === 'done' || job.state === 'failed') this.progress.forget(job.id);
        else this.progress.drop(job.id);
        this.broadcast('job', presentJob(job));
      },
      progress: (job) => this.progress.offer(job.id, job),
      peer: (peer) => this.broadcast('peer', peer),
      received: (r) => this.broadcast('received', r),
      failure: (f) => this.broadcast('failure', f),
      // Already throttled at the source (IncomingBoard: start, ~10/s, end).
      incoming: (i) => this.broadcast('incoming', presentIncoming(i)),
    };
  }

  start(): void {
    this.view.on('job', this.listeners.job);
    this.view.on('progress', this.listeners.progress);
    this.view.on('peer', this.listeners.peer);
    this.view.on('received', this.listeners.received);
    this.view.on('failure', this.listeners.failure);
    this.view.on('incoming', this.listeners.incoming);
    this.heartbeat = setInterval(() => this.writeAll(`: heartbeat ${Date.now()}\n\n`), this.heartbeatMs);
    this.heartbeat.unref();
  }

  stop(): void {
    this.view.off('job', this.listeners.job);
    this.view.off('progress', this.listeners.progress);
    this.view.off('peer', this.listeners.peer);
    this.view.off('received', this.listeners.received);
    this.view.off('failure', this.listeners.failure);
    this.view.off('incoming', this.listeners.incoming);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.progress.clear();
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Takes over the response: headers, an opening comment, then events until either side closes. */
  attach(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.write('retry: 2000\n: connected\n\n');
    this.clients.add(res);
    const remove = (): void => void this.clients.delete(res);
    req.on('close', remove);
    res.on('close', remove);
    res.on('error', remove);
  }

  private broadcast(event: EventName, data: unknown): void {
    if (this.clients.size === 0) return;
    this.writeAll(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private writeAll(chunk: string): void {
    for (const res of this.clients) {
      if (res.writableLength > this.maxBufferBytes) {
        this.log.warn('status: dropping slow event-stream client', { backlogBytes: res.writableLength, remote: res.socket?.remoteAddress });
        this.clients.delete(res);
        res.destroy();
        continue;
      }
      res.write(chunk);
    }
  }
}
