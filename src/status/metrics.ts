/**
 * Prometheus metrics for the agent, in a private prom-client Registry (never the global
 * one: several agents or tests may share a process).
 *
 * Counters advance on the model's events; a job is counted once when it first reaches `done`
 * (the model may re-emit a finished job). The queue-depth gauge is read
 * from `snapshot()` at scrape time so it cannot drift from the model.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AgentView, FailureInfo, JobInfo, ReceivedInfo } from '../types.js';

/** How many finished job ids are remembered to suppress double counting. */
const FINISHED_MEMORY = 2048;

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly sentBytes: Counter<'peer'>;
  private readonly sentFiles: Counter<'peer'>;
  private readonly receivedBytes: Counter<'peer'>;
  private readonly receivedFiles: Counter<'peer'>;
  private readonly failures: Counter<'reason'>;
  private readonly duration: Histogram;
  private readonly refused: Counter<'code'>;
  private readonly finished = new Set<string>();
  private readonly onJob = (job: JobInfo): void => this.countJob(job);
  private readonly onReceived = (r: ReceivedInfo): void => {
    this.receivedBytes.inc({ peer: r.from }, r.size);
    this.receivedFiles.inc({ peer: r.from });
  };
  private readonly onFailure = (f: FailureInfo): void => void this.failures.inc({ reason: f.reason });

  constructor(
    private readonly view: AgentView,
    opts: { defaultMetrics?: boolean } = {},
  ) {
    const registers = [this.registry];
    this.sentBytes = new Counter({ name: 'tdxfer_sent_bytes_total', help: 'Bytes of files delivered and acknowledged, by peer.', labelNames: ['peer'], registers });
    this.sentFiles = new Counter({ name: 'tdxfer_sent_files_total', help: 'Files delivered and acknowledged, by peer.', labelNames: ['peer'], registers });
    this.receivedBytes = new Counter({ name: 'tdxfer_received_bytes_total', help: 'Bytes of files landed in inboxes, by sending peer.', labelNames: ['peer'], registers });
    this.receivedFiles = new Counter({ name: 'tdxfer_received_files_total', help: 'Files landed in inboxes, by sending peer.', labelNames: ['peer'], registers });
    this.failures = new Counter({ name: 'tdxfer_failures_total', help: 'Failures by stable reason code (CONNECT_FAILED, HASH_MISMATCH, NO_SPACE, ...).', labelNames: ['reason'], registers });
    this.refused = new Counter({ name: 'tdxfer_status_refused_total', help: 'State-changing status API requests refused by the cross-site rule (CROSS_SITE_REFUSED): a web page on another site tried to queue, limit or stop.', labelNames: ['code'], registers });
    this.duration = new Histogram({
      name: 'tdxfer_transfer_duration_seconds',
      help: 'Duration of successful outgoing transfers, from start of sending to acknowledgement.',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    const snapshotOf = (): ReturnType<AgentView['snapshot']> => this.view.snapshot();
    new Gauge({
      name: 'tdxfer_queue_depth',
      help: 'Jobs not yet delivered (queued + sending + waiting) per destination "peer/inbox".',
      labelNames: ['destination'],
      registers,
      collect() {
        this.reset();
        for (const q of snapshotOf().queues) this.set({ destination: q.destination }, q.queued + q.sending + q.waiting);
      },
    });
    const incomingBy = (): Map<string, { files: number; done: number; size: number }> => {
      const m = new Map<string, { files: number; done: number; size: number }>();
      for (const i of snapshotOf().incoming ?? []) {
        const e = m.get(i.inbox) ?? { files: 0, done: 0, size: 0 };
        e.files++;
        e.done += i.bytesDone;
        e.size += i.bytesTotal ?? i.bytesDone;
        m.set(i.inbox, e);
      }
      return m;
    };
    const incomingGauges: Array<[name: string, help: string, key: 'files' | 'done' | 'size']> = [
      ['tdxfer_incoming_files', 'Files being received right now, per inbox.', 'files'],
      ['tdxfer_incoming_bytes_done', 'Bytes already on disk of the files being received (resumed bytes included), per inbox.', 'done'],
      ['tdxfer_incoming_bytes_size', 'Total size of the files being received, per inbox.', 'size'],
    ];
    for (const [name, help, key] of incomingGauges) {
      new Gauge({
        name,
        help,
        labelNames: ['inbox'],
        registers,
        collect() {
          this.reset();
          for (const [inbox, e] of incomingBy()) this.set({ inbox }, e[key]);
        },
      });
    }
    new Gauge({
      name: 'tdxfer_limit_bytes_per_second',
      help: 'Bandwidth limits in force, bytes/s (0 = unlimited): direction "outgoing" (agent-wide, peer "") or "incoming", and per peer.',
      labelNames: ['direction', 'peer'],
      registers,
      collect() {
        this.reset();
        const l = snapshotOf().limits;
        if (!l) return;
        this.set({ direction: 'outgoing', peer: '' }, l.outgoing.maxBytesPerSecond);
        this.set({ direction: 'incoming', peer: '' }, l.incoming.maxBytesPerSecond);
        for (const p of l.peers) this.set({ direction: 'outgoing', peer: p.name }, p.maxBytesPerSecond);
      },
    });
    new Gauge({
      name: 'tdxfer_rate_bytes_per_second',
      help: 'Measured transfer rate over the last second, bytes/s: outgoing (all, peer "") and per peer, incoming.',
      labelNames: ['direction', 'peer'],
      registers,
      collect() {
        this.reset();
        const l = snapshotOf().limits;
        if (!l) return;
        this.set({ direction: 'outgoing', peer: '' }, l.outgoing.bytesPerSecond);
        this.set({ direction: 'incoming', peer: '' }, l.incoming.bytesPerSecond);
        for (const p of l.peers) this.set({ direction: 'outgoing', peer: p.name }, p.bytesPerSecond);
      },
    });
    new Counter({
      name: 'tdxfer_wire_bytes_total',
      help: 'Bytes of file data written to (outgoing) or read from (incoming, with framing) peer connections.',
      labelNames: ['direction'],
      registers,
      collect() {
        this.reset();
        const l = snapshotOf().limits;
        if (!l) return;
        this.inc({ direction: 'outgoing' }, l.outgoing.bytesTotal);
        this.inc({ direction: 'incoming' }, l.incoming.bytesTotal);
      },
    });
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  start(): void {
    this.view.on('job', this.onJob);
    this.view.on('received', this.onReceived);
    this.view.on('failure', this.onFailure);
  }

  stop(): void {
    this.view.off('job', this.onJob);
    this.view.off('received', this.onReceived);
    this.view.off('failure', this.onFailure);
  }

  /** A state-changing request refused by the cross-site rule (csrf.ts), by its code. */
  countRefusal(code: string): void {
    this.refused.inc({ code });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  private countJob(job: JobInfo): void {
    if (job.state !== 'done' || this.finished.has(job.id)) return;
    this.finished.add(job.id);
    if (this.finished.size > FINISHED_MEMORY) {
      const oldest = this.finished.values().next();
      if (!oldest.done) this.finished.delete(oldest.value);
    }
    this.sentBytes.inc({ peer: job.peer }, job.bytesTotal);
    this.sentFiles.inc({ peer: job.peer });
    if (job.startedAt !== null && job.finishedAt !== null && job.finishedAt >= job.startedAt) {
      this.duration.observe((job.finishedAt - job.startedAt) / 1000);
    }
  }
}
