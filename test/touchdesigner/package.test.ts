/**
 * Issue #16: tdxfer.py ships with the package and needs nothing but Python's standard
 * library (TouchDesigner's Python cannot pip install).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { PYTHON, repoRoot } from './harness.js';

test('tdxfer.py imports with site-packages disabled (python3 -I -S): standard library only', () => {
  const dir = path.join(repoRoot(), 'src', 'touchdesigner');
  const r = spawnSync(PYTHON, ['-I', '-S', '-B', '-c', `import sys; sys.path.insert(0, ${JSON.stringify(dir)}); import tdxfer; print(tdxfer.__version__, sorted(tdxfer.CALLBACKS))`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+ \['onAgentDown', 'onAgentUp', 'onFailed', 'onProgress', 'onReceived', 'onSent'\]/);
});

test('npm pack includes src/touchdesigner/tdxfer.py', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoRoot(), encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const files = (JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
  assert.ok(files.includes('src/touchdesigner/tdxfer.py'), files.filter((f) => !f.startsWith('dist/')).join('\n'));
});
