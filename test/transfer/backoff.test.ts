import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../../src/transfer/backoff.js';

// The retry spacing on the agent's own clock (the end-to-end legacy test checks only that
// retries happen: arrival gaps measured there are bunched by a loaded machine).
test('Backoff: delays double from retryInitialMs with ±20 % jitter, capped at retryMaxMs; a failure before the next attempt time does not double', () => {
  for (let round = 0; round < 50; round++) {
    const b = new Backoff(100, 1000);
    let now = 0;
    let nominal = 100;
    for (let i = 0; i < 8; i++) {
      const d = b.failed(now);
      assert.ok(d >= nominal * 0.8 - 1 && d <= nominal * 1.2 + 1, `attempt ${i + 1}: ${d} ms, nominal ${nominal}`);
      // Other jobs failing in the meantime share the same wait.
      assert.equal(b.failed(now + 1), d - 1);
      now += d;
      nominal = Math.min(nominal * 2, 1000);
    }
    b.succeeded();
    const d = b.failed(now);
    assert.ok(d >= 80 && d <= 120, `after a success the delay starts again at retryInitialMs: ${d}`);
  }
});
