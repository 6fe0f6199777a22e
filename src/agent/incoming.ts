/**
 * Incoming transfers as the receiving machine sees them (issue #11: the technician at the
 * playback machine is the one waiting): file, sender, inbox, bytes done of total, rate,
 * ETA (derived in the status API), resumed-from. The receiver session reports through an
 * `IncomingHandle`; the board keeps the live ones for `snapshot()` and emits an `incoming`
 * event at the start, at most every `intervalMs` while bytes arrive, and at the end.
 */
import type { IncomingInfo } from '../types.js';
import { ProgressThrottle } from '../progress.js';

/** No bytes for this long: the transfer is stalled, its rate is 0. */
const STALE_MS = 2000;

export interface IncomingStart {
  inbox: string;
  file: string;
  from: string;
  via: IncomingInfo['via'];
  bytesTotal: number | null;
  resumedFrom: number;
}

export interface IncomingHandle {
  progress(bytesDone: number): void;
  /** All bytes are in: the inbox verifies the hash, fsyncs and lands it. */
  verifying(): void;
  end(state: 'done' | 'interrupted' | 'failed', error?: string | null, landedAs?: string): void;
}

export interface IncomingTracker {
  start(s: IncomingStart): IncomingHandle;
}

export class IncomingBoard implements IncomingTracker {
  private readonly live = new Map<string, IncomingInfo>();
  private readonly throttle: ProgressThrottle;
  private seq = 0;

  constructor(
    private readonly emit: (info: IncomingInfo) => void,
    intervalMs = 100,
    private readonly now: () => number = Date.now,
  ) {
    this.throttle = new ProgressThrottle(intervalMs);
  }

  /** Live transfers; one that got no bytes for STALE_MS shows rate 0 (no ETA), not its last rate. */
  list(): IncomingInfo[] {
    const t = this.now();
    return [...this.live.values()].map((i) => ({ ...i, rate: t - i.updatedAt > STALE_MS ? 0 : i.rate }));
  }

  start(s: IncomingStart): IncomingHandle {
    const t = this.now();
    const info: IncomingInfo = {
      id: `in${(++this.seq).toString(36)}-${t.toString(36)}`,
      inbox: s.inbox,
      file: s.file,
      from: s.from,
      via: s.via,
      state: 'receiving',
      bytesDone: s.resumedFrom,
      bytesTotal: s.bytesTotal,
      rate: 0,
      resumedFrom: s.resumedFrom,
      startedAt: t,
      updatedAt: t,
      error: null,
      landedAs: null,
    };
    this.live.set(info.id, info);
    this.throttle.rate(info.id, info.bytesDone, t);
    this.throttle.due(info.id, t);
    this.emit({ ...info });
    let ended = false;
    return {
      progress: (bytesDone) => {
        if (ended) return;
        const n = this.now();
        info.bytesDone = bytesDone;
        info.updatedAt = n;
        info.rate = this.throttle.rate(info.id, bytesDone, n);
        if (this.throttle.due(info.id, n)) this.emit({ ...info });
      },
      verifying: () => {
        if (ended) return;
        info.state = 'verifying';
        info.rate = 0;
        info.updatedAt = this.now();
        this.emit({ ...info });
      },
      end: (state, error = null, landedAs) => {
        if (ended) return;
        ended = true;
        info.state = state;
        info.error = error;
        info.rate = 0;
        info.updatedAt = this.now();
        if (landedAs !== undefined) info.landedAs = landedAs;
        this.live.delete(info.id);
        this.throttle.forget(info.id);
        this.emit({ ...info });
      },
    };
  }
}
