/** Progress bookkeeping per job (agent jobs, incoming transfers, OSC progress messages): an event at most every `intervalMs`, and a smoothed rate. */
export class ProgressThrottle {
  private readonly last = new Map<string, { emitAt: number; rateAt: number; bytes: number; rate: number }>();
  constructor(private readonly intervalMs: number) {}

  private entry(id: string, now: number) {
    let e = this.last.get(id);
    if (!e) {
      e = { emitAt: 0, rateAt: now, bytes: 0, rate: 0 };
      this.last.set(id, e);
    }
    return e;
  }

  /** Bytes per second, smoothed over roughly the last second. */
  rate(id: string, bytes: number, now: number): number {
    const e = this.entry(id, now);
    const dt = now - e.rateAt;
    if (dt >= 250) {
      const inst = ((bytes - e.bytes) * 1000) / dt;
      e.rate = e.rate === 0 ? inst : e.rate * 0.5 + inst * 0.5;
      e.rateAt = now;
      e.bytes = bytes;
    }
    return Math.max(0, Math.round(e.rate));
  }

  due(id: string, now: number): boolean {
    const e = this.entry(id, now);
    if (now - e.emitAt < this.intervalMs) return false;
    e.emitAt = now;
    return true;
  }

  forget(id: string): void {
    this.last.delete(id);
  }

  clear(): void {
    this.last.clear();
  }
}
