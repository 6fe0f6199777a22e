/** QuickFs in tests: one on a volume taken as local, and what its call counts must show. */
import assert from 'node:assert/strict';
import { QuickFs } from '../../src/quickfs.js';

/** ext4's statfs type: the folders count as local whatever the test machine's temp folder is (tmpfs, overlay, ...). */
export const LOCAL_FS_TYPE = 0xef53;

export function localQuickFs(opts: { coolMs?: number; now?: () => number } = {}): QuickFs {
  return new QuickFs({ fsType: async () => LOCAL_FS_TYPE, ...opts });
}

/** With `networkDrive` no call was synchronous and some went through the thread pool; else some were synchronous. */
export function assertQuickCalls(quick: QuickFs, networkDrive: boolean): void {
  const counts = JSON.stringify(quick.counts);
  if (networkDrive) {
    assert.equal(quick.counts.sync, 0, counts);
    assert.ok(quick.counts.async > 0, counts);
  } else {
    assert.ok(quick.counts.sync > 0, counts);
  }
}
