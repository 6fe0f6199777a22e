/**
 * What the status API adds to the model for display: percent and ETA per job, computed
 * at read time so the model stays a plain record of bytes and rates.
 */
import type { AgentSnapshot, IncomingInfo, JobInfo } from '../types.js';

export interface JobView extends JobInfo {
  /** 0–100 with one decimal; 100 once done, 0 when the size is unknown. */
  percent: number;
  /** Seconds left at the current rate, null when idle or unknown. */
  etaSeconds: number | null;
}

export interface IncomingView extends IncomingInfo {
  /** 0–100 with one decimal; 0 when the size is unknown. */
  percent: number;
  /** Seconds left at the current rate, null when idle or unknown. */
  etaSeconds: number | null;
}

export type SnapshotView = Omit<AgentSnapshot, 'active' | 'recent' | 'incoming'> & { active: JobView[]; recent: JobView[]; incoming: IncomingView[] };

export function presentIncoming(i: IncomingInfo): IncomingView {
  const total = i.bytesTotal;
  let percent = 0;
  if (i.state === 'done') percent = 100;
  else if (total !== null && total > 0) percent = Math.min(100, Math.floor((i.bytesDone / total) * 1000) / 10);
  const etaSeconds = i.state === 'receiving' && total !== null && i.rate > 0 && total >= i.bytesDone ? Math.ceil((total - i.bytesDone) / i.rate) : null;
  return { ...i, percent, etaSeconds };
}

export function presentJob(job: JobInfo): JobView {
  let percent: number;
  if (job.state === 'done') percent = 100;
  else if (job.bytesTotal > 0) percent = Math.min(100, Math.floor((job.bytesDone / job.bytesTotal) * 1000) / 10);
  else percent = 0;
  const left = job.bytesTotal - job.bytesDone;
  const etaSeconds = job.state === 'sending' && job.rate > 0 && left >= 0 ? Math.ceil(left / job.rate) : null;
  return { ...job, percent, etaSeconds };
}

export function presentSnapshot(s: AgentSnapshot): SnapshotView {
  return { ...s, active: s.active.map(presentJob), recent: s.recent.map(presentJob), incoming: (s.incoming ?? []).map(presentIncoming) };
}
