/**
 * Landing: the pure planner (which name, what to replace) and the Lander's batches
 * (one listing, one journal append and one fsync per folder for files finishing
 * together), checked on real files.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { applyPlan, planLanding, Lander, Listing, type LandOutcome } from '../../src/inbox/land.js';
import { Journal } from '../../src/inbox/journal.js';
import { HeldTargets } from '../../src/inbox/held.js';
import { memoryLogger } from '../../src/log.js';
import { fixture, listFiles, sha, send } from './util.js';

describe('planLanding (pure)', () => {
  test('free name: new, in the incoming spelling', () => {
    assert.deepEqual(planLanding(['b.png'], 'a.png', 'overwrite', false), { kind: 'new', name: 'a.png' });
    assert.deepEqual(planLanding([], 'a.png', 'rename', true), { kind: 'new', name: 'a.png' });
    assert.deepEqual(planLanding([], 'a.png', 'skip', true), { kind: 'new', name: 'a.png' });
  });

  test('skip names the existing entry, case-insensitively', () => {
    assert.deepEqual(planLanding(['A.PNG'], 'a.png', 'skip', false), { kind: 'skip', existing: 'A.PNG' });
  });

  test('rename picks the first free "(n)" candidate, case-insensitively, never the staging folder name', () => {
    assert.deepEqual(planLanding(['a.png', 'A (1).PNG'], 'a.png', 'rename', false), { kind: 'new', name: 'a (2).png' });
    assert.deepEqual(planLanding(['.tdxfer-staging'], '.tdxfer-staging', 'rename', false), { kind: 'new', name: '.tdxfer-staging (1)' });
  });

  test('overwrite replaces the exact spelling first and removes the other case variants', () => {
    assert.deepEqual(planLanding(['A.png', 'a.png', 'A.PNG'], 'a.png', 'overwrite', false), { kind: 'overwrite', target: 'a.png', name: 'a.png', variants: ['A.png', 'A.PNG'] });
    assert.deepEqual(planLanding(['A.PNG'], 'a.png', 'overwrite', false), { kind: 'overwrite', target: 'A.PNG', name: 'a.png', variants: [] });
  });

  test('at the inbox root the fallback staging folder is never a collision', () => {
    assert.deepEqual(planLanding(['.tdxfer-staging'], '.TDXFER-staging', 'overwrite', true), { kind: 'new', name: '.TDXFER-staging' });
  });

  test('applyPlan keeps the listing true for the rest of a batch', () => {
    const names = (l: Listing) => l.names().sort();
    assert.deepEqual(names(applyPlan(new Listing(['x']), { kind: 'new', name: 'a.png' })), ['a.png', 'x']);
    assert.deepEqual(names(applyPlan(new Listing(['A.PNG', 'A.png', 'x']), { kind: 'overwrite', target: 'A.PNG', name: 'a.png', variants: ['A.png'] })), ['a.png', 'x']);
    assert.deepEqual(names(applyPlan(new Listing(['a.png']), { kind: 'skip', existing: 'a.png' })), ['a.png']);
    // a batch: two files asking for the same name under rename get distinct names
    const l = new Listing(['f.png']);
    const p1 = planLanding(l, 'f.png', 'rename', false);
    applyPlan(l, p1);
    const p2 = planLanding(l, 'F.PNG', 'rename', false);
    assert.deepEqual([p1, p2], [{ kind: 'new', name: 'f (1).png' }, { kind: 'new', name: 'F (2).PNG' }]);
  });
});

async function staged(dir: string, name: string, body: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const p = path.join(dir, name);
  await fs.writeFile(p, body);
  return p;
}

describe('Lander (real files)', () => {
  test('a target held past heldMaxSeconds (on the injected clock): the new version lands beside it as "name (1).ext", journalled, the hold released; before the bound it replaces the file', async () => {
    const fx = await fixture('overwrite');
    try {
      const target = path.join(fx.inboxDir, 'clip.mov');
      await fs.mkdir(fx.inboxDir, { recursive: true });
      await fs.writeFile(target, 'old version');
      const inboxReal = await fs.realpath(fx.inboxDir);
      const journal = await Journal.open(fx.stateDir, memoryLogger());
      const held = new HeldTargets();
      const changes: string[] = [];
      held.onChange = (c) => changes.push(`${c.state}@${c.atMs}`);
      // As a failed replacement on Windows records it: held since t = 1000 s.
      held.hold({ inbox: 'main', rel: 'clip.mov', path: path.join(inboxReal, 'clip.mov'), code: 'EBUSY' }, 1_000_000);
      let now = 1_000_000 + 600_000;
      const log = memoryLogger();
      const lander = new Lander({ inboxName: 'main', inboxPath: fx.inboxDir, inboxReal, policy: 'overwrite', log, journal, held, heldMaxSeconds: 600, now: () => now });
      const from = await staged(fx.stagingDir, 'part-1', 'new version');
      const record = (landedRel: string) => ({ source: 'src', rel: 'clip.mov', landedRel, size: 11, mtimeMs: 1, sha256: sha(Buffer.from('new version')), at: 0 });
      const o = await lander.land({ parts: ['clip.mov'], from, record });
      assert.deepEqual([o.status, o.rel], ['landed', 'clip (1).mov']);
      assert.equal(await fs.readFile(target, 'utf8'), 'old version', 'the held file is unchanged');
      assert.equal(await fs.readFile(path.join(fx.inboxDir, 'clip (1).mov'), 'utf8'), 'new version');
      assert.equal(journal.get('src', 'clip.mov')?.landedRel, 'clip (1).mov', 'a re-offer is recognised as landed');
      assert.deepEqual(held.list(), []);
      assert.deepEqual(changes, ['held@1000000', 'released@1600000']);
      assert.match(log.records.find((r) => r.level === 'warn')?.msg ?? '', /held open by another program for 600 s \(heldMaxSeconds\)/);

      // Held again, one millisecond short of the bound: no landing beside, the file is replaced (POSIX has no locks).
      held.hold({ inbox: 'main', rel: 'clip.mov', path: path.join(inboxReal, 'clip.mov'), code: 'EBUSY' }, 2_000_000);
      now = 2_000_000 + 599_999;
      const o2 = await lander.land({ parts: ['clip.mov'], from: await staged(fx.stagingDir, 'part-2', 'newer version') });
      assert.deepEqual([o2.status, o2.rel], ['landed', 'clip.mov']);
      assert.equal(await fs.readFile(target, 'utf8'), 'newer version');
      assert.deepEqual(held.list(), []);
      assert.equal(changes.at(-1), `released@${now}`);
      await journal.flush();
    } finally {
      await fx.cleanup();
    }
  });

  test('200 files landing at once into one folder with onCollision=rename: every one lands under its own name, in fewer batches than files, journalled', async () => {
    const fx = await fixture('rename');
    try {
      await fs.mkdir(path.join(fx.inboxDir, 'shot'), { recursive: true });
      await fs.writeFile(path.join(fx.inboxDir, 'shot', 'f.png'), 'already there');
      const journal = await Journal.open(fx.stateDir, memoryLogger());
      const inboxReal = await fs.realpath(fx.inboxDir);
      const lander = new Lander({ inboxName: 'main', inboxPath: fx.inboxDir, inboxReal, policy: 'rename', log: memoryLogger(), journal });
      let appends = 0;
      const recordMany = journal.recordMany.bind(journal);
      journal.recordMany = (recs) => {
        appends++;
        return recordMany(recs);
      };
      const jobs: Array<Promise<LandOutcome>> = [];
      for (let i = 0; i < 200; i++) {
        // every second file asks for the same name: the rename policy must number them
        const name = i % 2 === 0 ? 'f.png' : `g${i}.png`;
        const from = await staged(fx.stagingDir, `part-${i}`, `body ${i}`);
        jobs.push(lander.land({ parts: ['shot', name], from, record: (landedRel) => ({ source: 'src', rel: `shot/${name}#${i}`, landedRel, size: 1, mtimeMs: 1, sha256: sha(Buffer.from(String(i))), at: 0 }) }));
      }
      const outcomes = await Promise.all(jobs);
      const rels = outcomes.map((o) => o.rel);
      assert.equal(new Set(rels).size, 200, 'no two files landed under the same name');
      const files = await listFiles(fx.inboxDir);
      assert.equal(files.length, 201);
      for (let i = 0; i < 200; i++) {
        const o = outcomes[i]!;
        assert.equal(o.status, 'landed');
        assert.equal(await fs.readFile(o.abs, 'utf8'), `body ${i}`);
        if (i % 2 === 0) assert.match(o.rel, /^shot\/f \(\d+\)\.png$/);
      }
      assert.equal(await fs.readFile(path.join(fx.inboxDir, 'shot', 'f.png'), 'utf8'), 'already there');
      assert.ok(appends < 200, `journal appended in batches (${appends} appends for 200 files)`);
      await journal.flush();
      const lines = (await fs.readFile(journal.file, 'utf8')).trim().split('\n');
      assert.equal(lines.length, 200);
      assert.equal(journal.get('src', 'shot/f.png#0')?.landedRel, outcomes[0]!.rel);
      assert.deepEqual(await listFiles(fx.stagingDir), [], 'every staged file was moved');
    } finally {
      await fx.cleanup();
    }
  });

  test('one bad file in a batch fails alone: the others land', async () => {
    const fx = await fixture('overwrite');
    try {
      await fs.mkdir(path.join(fx.inboxDir, 'dir.png'), { recursive: true });
      const inboxReal = await fs.realpath(fx.inboxDir);
      const lander = new Lander({ inboxName: 'main', inboxPath: fx.inboxDir, inboxReal, policy: 'overwrite', log: memoryLogger() });
      const [fa, fb, fd] = [await staged(fx.stagingDir, 'a', 'A'), await staged(fx.stagingDir, 'b', 'B'), await staged(fx.stagingDir, 'd', 'D')];
      const [ra, rbad, rgone, rd] = await Promise.allSettled([
        lander.land({ parts: ['a.png'], from: fa }),
        lander.land({ parts: ['dir.png'], from: fb }),
        lander.land({ parts: ['c.png'], from: path.join(fx.stagingDir, 'missing') }),
        lander.land({ parts: ['sub', 'd.png'], from: fd }),
      ]);
      assert.equal(ra.status, 'fulfilled');
      assert.equal(rd.status, 'fulfilled');
      assert.equal(rbad.status, 'rejected');
      assert.match(String((rbad as PromiseRejectedResult).reason), /is a folder/);
      assert.equal(rgone.status, 'rejected');
      assert.deepEqual(await listFiles(fx.inboxDir), ['a.png', 'sub/d.png']);
    } finally {
      await fx.cleanup();
    }
  });

  test('through the Inbox: 300 concurrent commits into nested folders land byte-identical and the inbox holds nothing else', async () => {
    const fx = await fixture('overwrite');
    try {
      const ib = await fx.open();
      const bodies = Array.from({ length: 300 }, (_, i) => Buffer.from(`file ${i} `.repeat(i + 1)));
      const files = await Promise.all(bodies.map((b, i) => send(ib, `s${i % 3}/frame.${String(i).padStart(4, '0')}.png`, b)));
      const landed = await Promise.all(files.map((f, i) => f.commit(sha(bodies[i]!))));
      assert.equal(landed.length, 300);
      const list = await listFiles(fx.inboxDir);
      assert.equal(list.length, 300);
      for (const [i, l] of landed.entries()) assert.deepEqual(await fs.readFile(l.abs), bodies[i]);
    } finally {
      await fx.cleanup();
    }
  });
});
