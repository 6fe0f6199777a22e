/**
 * Counts every directory read of this process (issue #20: "count reads, never time"):
 * fs.readdir/opendir in their callback, promise and sync forms, as called by our code and
 * by libraries (chokidar's readdirp imports them from node:fs/promises; the ESM bindings are
 * re-synced with syncBuiltinESMExports, so they go through the counter too).
 */
import fs from 'node:fs';
import path from 'node:path';
import { syncBuiltinESMExports } from 'node:module';

export interface DirReads {
  /** Absolute path of every folder read, in order. */
  readonly reads: string[];
  /** Reads of `dir` itself or of any folder below it. */
  under(dir: string): string[];
  /** Reads of exactly `dir`. */
  of(dir: string): number;
  restore(): void;
}

type AnyFn = (...a: unknown[]) => unknown;

export function countDirReads(): DirReads {
  const reads: string[] = [];
  const note = (p: unknown): void => {
    reads.push(path.resolve(p instanceof URL ? p.pathname : Buffer.isBuffer(p) ? p.toString() : String(p)));
  };
  const targets: Array<[Record<string, unknown>, string]> = [
    [fs as unknown as Record<string, unknown>, 'readdir'],
    [fs as unknown as Record<string, unknown>, 'readdirSync'],
    [fs as unknown as Record<string, unknown>, 'opendir'],
    [fs as unknown as Record<string, unknown>, 'opendirSync'],
    [fs.promises as unknown as Record<string, unknown>, 'readdir'],
    [fs.promises as unknown as Record<string, unknown>, 'opendir'],
  ];
  const saved = targets.map(([obj, name]) => obj[name] as AnyFn);
  targets.forEach(([obj, name], i) => {
    const orig = saved[i]!;
    obj[name] = function (this: unknown, ...a: unknown[]) {
      note(a[0]);
      return orig.apply(this, a);
    };
  });
  syncBuiltinESMExports();
  const inside = (dir: string, p: string): boolean => {
    const r = path.relative(path.resolve(dir), p);
    return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
  };
  return {
    reads,
    under: (dir) => reads.filter((p) => inside(dir, p)),
    of: (dir) => reads.filter((p) => p === path.resolve(dir)).length,
    restore: () => {
      targets.forEach(([obj, name], i) => {
        obj[name] = saved[i];
      });
      syncBuiltinESMExports();
    },
  };
}
