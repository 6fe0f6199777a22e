/**
 * Start parts in order, stop them in reverse, each stop bounded. A part that fails to
 * start stops the parts already started (in reverse) before the error is rethrown.
 */
import type { Logger } from '../log.js';
import { describeError } from '../errors.js';

export type Stop = () => Promise<void> | void;

export interface Part {
  name: string;
  /** Starts the part; resolves to how it is stopped. */
  start: () => Promise<Stop> | Stop;
}

export class Lifecycle {
  private readonly stops: Array<{ name: string; stop: Stop }> = [];
  private stopped: Promise<void> | null = null;

  constructor(private readonly log: Logger) {}

  /** Starts `part` now (after the ones before it). */
  async start(part: Part): Promise<void> {
    if (this.stopped) throw new Error(`lifecycle already stopped: not starting ${part.name}`);
    this.stops.push({ name: part.name, stop: await part.start() });
  }

  /** Starts every part in order; on a failure, stops those started and rethrows. */
  async startAll(parts: readonly Part[]): Promise<void> {
    try {
      for (const p of parts) await this.start(p);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Stops every started part in reverse; each gets at most `boundMs`, then the next one goes. Idempotent. */
  stop(boundMs = 15_000): Promise<void> {
    this.stopped ??= (async () => {
      for (const { name, stop } of this.stops.splice(0).reverse()) {
        let timer: NodeJS.Timeout | undefined;
        // Not unref'd: a hanging stop must not let the event loop end with this stop pending.
        const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), boundMs)));
        try {
          const r = await Promise.race([Promise.resolve().then(stop), late]);
          if (r === 'late') this.log.warn(`stopping ${name}: still busy after ${Math.round(boundMs / 1000)} s, going on`);
        } catch (err) {
          this.log.warn(`stopping ${name}: ${describeError(err)}`);
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return this.stopped;
  }
}
