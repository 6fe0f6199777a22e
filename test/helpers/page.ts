/** Helpers for tests that drive the dashboard in headless Chromium (playwright-core). */
import type { Page } from 'playwright-core';
import { MIN_DEADLINE_MS } from './wait.js';
import { deadline } from './platform.js';

/** How long a page wait may take: a hang detector like waitUntil's (pages lag seconds on a loaded machine). */
export const PAGE_WAIT_MS = deadline(MIN_DEADLINE_MS);

/**
 * Polls a page-side expression with `page.evaluate` until it is truthy. CDP evaluation is
 * not subject to the page's Content-Security-Policy, which forbids the eval that string
 * predicates of `page.waitForFunction` need once they poll (they pass only when the
 * first check already succeeds, so they fail at random under load).
 */
export async function waitInPage(page: Page, expr: string, timeoutMs = PAGE_WAIT_MS): Promise<void> {
  // Raised to PAGE_WAIT_MS: a deadline detects a hang, it never checks a speed.
  timeoutMs = Math.max(timeoutMs, PAGE_WAIT_MS);
  const end = Date.now() + timeoutMs;
  while (!(await page.evaluate(expr))) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting in the page for: ${expr}`);
    await new Promise((r) => setTimeout(r, 40));
  }
}
