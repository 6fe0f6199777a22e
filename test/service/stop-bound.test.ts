/**
 * The agent's own stop bounds (agent/compose.ts GRACE_MS, HARD_EXIT_MS) against the time each
 * service manager gives a stop before it kills (issue #13 item 1: a hard-exit timer equal to
 * systemd's TimeoutStopSec raced it). The agent must exit on its own, clearly first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GRACE_MS, HARD_EXIT_MS } from '../../src/agent/compose.js';
import { windowsPaths, winswXml } from '../../src/service/windows.js';
import { launchdPlist } from '../../src/service/macos.js';

/** What "clearly shorter" means here: a loaded machine's late timers and the process exit fit in it. */
const MARGIN_MS = 3000;

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'systemd', 'tdxfer.service'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('checkout root (systemd/tdxfer.service) not found');
    dir = up;
  }
  return dir;
}

function seconds(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  assert.ok(m, `${what} not found`);
  return Number(m[1]) * 1000;
}

test('the graceful budget ends before the hard exit, and the hard exit clearly before systemd, WinSW and launchd kill the agent', () => {
  assert.ok(GRACE_MS + 1000 <= HARD_EXIT_MS, `GRACE_MS ${GRACE_MS} leaves the hard exit (${HARD_EXIT_MS}) no room`);
  const unit = readFileSync(path.join(repoRoot(), 'systemd', 'tdxfer.service'), 'utf8');
  const winsw = winswXml({ program: ['C:\\tdxfer\\tdxfer.exe'], config: 'C:\\ProgramData\\tdxfer\\config.json', paths: windowsPaths({}), user: null, password: null });
  const plist = launchdPlist({ program: ['/usr/local/tdxfer/bin/tdxfer'], config: '/etc/tdxfer.json', user: null });
  const managers = {
    'systemd TimeoutStopSec': seconds(unit, /^TimeoutStopSec=(\d+)\s*$/m, 'TimeoutStopSec'),
    'WinSW stoptimeout': seconds(winsw, /<stoptimeout>(\d+) sec<\/stoptimeout>/, '<stoptimeout>'),
    'launchd ExitTimeOut': seconds(plist, /<key>ExitTimeOut<\/key>\s*<integer>(\d+)<\/integer>/, 'ExitTimeOut'),
  };
  for (const [what, ms] of Object.entries(managers)) {
    assert.ok(HARD_EXIT_MS + MARGIN_MS <= ms, `HARD_EXIT_MS ${HARD_EXIT_MS} is not clearly shorter than ${what} (${ms} ms)`);
  }
});
