/**
 * Bounded concurrency, the one helper for it (issue #13 item 7): run `fn` over `items` with at
 * most `limit` calls in flight, in order of start. Pure apart from what `fn` does.
 */

/** Runs `fn` for every item, at most `limit` at a time. Rejects with the first error once the
 * calls in flight have settled; items not yet started are then not started. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}
