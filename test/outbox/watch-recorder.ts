/**
 * A started folder watch (chokidar.ts or dirwatch.ts: both have the same signature) on `root`,
 * recording what it reports as '/'-separated paths relative to `root`; closed when `t` ends.
 * Shared by the two watches' tests.
 */
import path from 'node:path';
import type { FolderWatch, FolderWatchEvents, FolderWatchOptions } from '../../src/outbox/chokidar.js';
import { waitUntil } from '../helpers/wait.js';

type T = { after: (fn: () => Promise<void>) => void };
type StartWatch = (root: string, opts: FolderWatchOptions, on: FolderWatchEvents) => FolderWatch;

export async function watching(t: T, start: StartWatch, root: string, opts: { sweepMs: number; ignored?: (p: string) => boolean }) {
  const files = new Set<string>();
  const missed: Array<{ dir: string; count: number }> = [];
  const errors: unknown[] = [];
  const rel = (p: string) => path.relative(root, p).split(path.sep).join('/');
  const fw = start(
    root,
    { followSymlinks: false, usePolling: false, ignored: opts.ignored ?? (() => false), sweepMs: opts.sweepMs },
    {
      file: (p) => files.add(rel(p)),
      unlink: (p) => files.delete(rel(p)),
      unlinkDir: () => undefined,
      addDir: () => undefined,
      error: (err) => errors.push(err),
      missed: (dir, count) => missed.push({ dir: rel(dir), count }),
    },
  );
  t.after(() => fw.close());
  await fw.ready;
  const seen = (r: string, what: string) =>
    waitUntil(() => files.has(r), undefined, () => `${what}: ${r} reported; seen ${files.size}: ${JSON.stringify([...files].slice(-20))} missed=${JSON.stringify(missed)} errors=${String(errors)}`);
  return { fw, files, missed, errors, seen };
}
