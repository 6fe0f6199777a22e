/** QueryPlan / QueryBackoff / PeerCache: when queries go out and what they list (RFC 6762), on a fake clock. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ANSWER_HOLDOFF_MS,
  EXPIRY_GRACE_MS,
  POOF_WINDOW_MS,
  PeerCache,
  QueryBackoff,
  QueryPlan,
  REFRESH_JITTER,
  jitter,
  shortDelay,
} from '../../src/discovery/mdns-schedule.js';

/** Deterministic randomness: a fixed value, or a sequence. */
const fixed = (v: number) => () => v;
const seq = (...vs: number[]) => {
  let i = 0;
  return () => vs[i++ % vs.length]!;
};

/** Runs a plan on a fake clock for `ms`, returning the times queries went out. */
function run(plan: QueryPlan, from: number, ms: number, onSend?: (t: number) => void): number[] {
  const sent: number[] = [];
  let t = from;
  while (t <= from + ms) {
    plan.cache.expire(t);
    const p = plan.poll(t);
    if (p.send) {
      sent.push(t);
      onSend?.(t);
      plan.sent(t);
      continue;
    }
    t = Math.max(t + 1, Math.min(p.wakeAt, from + ms + 1));
  }
  return sent;
}

describe('jitter', () => {
  test('jitter scales within [1-f, 1+f), shortDelay is 20-120 ms', () => {
    assert.equal(jitter(1000, 0.1, fixed(0)), 900);
    assert.ok(Math.abs(jitter(1000, 0.1, fixed(0.999999)) - 1100) < 0.01);
    assert.equal(jitter(1000, 0.1, fixed(0.5)), 1000);
    assert.equal(shortDelay(fixed(0)), 20);
    assert.ok(Math.abs(shortDelay(fixed(0.999999)) - 120) < 0.01);
  });
});

describe('QueryBackoff (§5.2 continuous querying)', () => {
  test('due at once, then 1 s, 2 s, 4 s … doubling up to the cap, each interval jittered', () => {
    const b = new QueryBackoff(0, fixed(0.5), 1000, 8000);
    assert.ok(b.due(0));
    const gaps: number[] = [];
    let t = 0;
    for (let i = 0; i < 7; i++) {
      b.sent(t);
      gaps.push(b.nextAt - t);
      t = b.nextAt;
    }
    assert.deepEqual(gaps, [1000, 2000, 4000, 8000, 8000, 8000, 8000]);
  });

  test('jitter spreads two agents started together: their intervals differ', () => {
    const a = new QueryBackoff(0, fixed(0.1), 1000, 60_000);
    const b = new QueryBackoff(0, fixed(0.9), 1000, 60_000);
    for (let i = 0; i < 6; i++) {
      a.sent(a.nextAt);
      b.sent(b.nextAt);
    }
    assert.ok(Math.abs(a.nextAt - b.nextAt) > 5000, `${a.nextAt} vs ${b.nextAt}`);
    assert.ok(a.lastIntervalMs >= 0.9 * 32_000 && a.lastIntervalMs < 1.1 * 32_000);
  });

  test('reset() starts over: due now, then 1 s again', () => {
    const b = new QueryBackoff(0, fixed(0.5), 1000, 60_000);
    for (let i = 0; i < 8; i++) b.sent(b.nextAt);
    assert.equal(b.interval, 60_000);
    b.reset(500_000);
    assert.ok(b.due(500_000));
    b.sent(500_000);
    assert.equal(b.nextAt - 500_000, 1000);
  });
});

describe('PeerCache (§5.2 refresh, §7.1 Known-Answers, §10.5 POOF)', () => {
  test('Known-Answers list the records with more than half their TTL left, with the TTL left', () => {
    const c = new PeerCache(fixed(0));
    c.heard('a', 20, 0);
    c.heard('b', 20, 5000);
    assert.deepEqual(c.knownAnswers(6000), [{ instance: 'a', ttlS: 14 }, { instance: 'b', ttlS: 19 }]);
    assert.deepEqual(c.knownAnswers(10_001), [{ instance: 'b', ttlS: 14 }]);
    assert.deepEqual(c.knownAnswers(15_001), []);
  });

  test('refresh falls due at 80 %, then 85, 90, 95 % of the TTL (plus up to 3 % jitter); an answer starts over', () => {
    const c = new PeerCache(fixed(0));
    c.heard('a', 20, 0);
    assert.ok(!c.refreshDue(15_999));
    assert.ok(c.refreshDue(16_000));
    c.refreshed(16_000);
    assert.ok(!c.refreshDue(16_999));
    assert.ok(c.refreshDue(17_000));
    c.refreshed(17_000);
    assert.equal(c.nextAt(), 18_000);
    c.heard('a', 20, 17_100);
    assert.ok(!c.refreshDue(18_000));
    assert.equal(c.nextAt(), 17_100 + 16_000);
    const j = new PeerCache(fixed(0.999));
    j.heard('a', 20, 0);
    assert.ok(!j.refreshDue(16_000 + 20_000 * REFRESH_JITTER * 0.99));
  });

  test('a record expires at its TTL only after a query it should have answered went unanswered', () => {
    const c = new PeerCache(fixed(0));
    c.heard('a', 20, 0);
    c.queried(new Map(), 16_000); // our refresh at 80 %: unanswered
    c.queried(new Map(), 19_000); // and at 95 %
    assert.deepEqual(c.expire(20_999), [], 'the last query gets EXPIRY_GRACE_MS');
    assert.deepEqual(c.expire(21_000), ['a']);
    assert.ok(!c.has('a'));
  });

  test('a stalled querier does not expire a peer it never asked: a query falls due instead, then 2 s later it expires', () => {
    const c = new PeerCache(fixed(0));
    c.heard('a', 20, 0);
    c.refreshed(16_000); // steps passed, but nothing was heard asked
    c.refreshed(19_500);
    assert.deepEqual(c.expire(25_000), []);
    assert.ok(c.refreshDue(25_000), 'a last-chance query is due');
    c.refreshed(25_000);
    c.queried(new Map(), 25_000);
    assert.deepEqual(c.expire(25_000 + EXPIRY_GRACE_MS - 1), []);
    assert.equal(c.nextAt(), 25_000 + EXPIRY_GRACE_MS);
    assert.deepEqual(c.expire(25_000 + EXPIRY_GRACE_MS), ['a']);
  });

  test('§10.5: two unanswered queries that should have been answered flush the record 10 s after the first, before its TTL', () => {
    const c = new PeerCache(fixed(0));
    c.heard('a', 120, 0);
    c.queried(new Map(), 2000);
    c.queried(new Map(), 5000);
    assert.equal(c.nextAt(), 2000 + POOF_WINDOW_MS);
    assert.deepEqual(c.expire(2000 + POOF_WINDOW_MS - 1), []);
    assert.deepEqual(c.expire(2000 + POOF_WINDOW_MS), ['a']);
  });

  test('§10.5 does not count: queries that list the record, the asker itself, queries within 1 s of an answer; an answer clears the count', () => {
    const c = new PeerCache(fixed(0));
    c.heard('a', 120, 0);
    c.queried(new Map(), ANSWER_HOLDOFF_MS - 1); // it just answered: it may not repeat yet
    c.queried(new Map([['a', 100]]), 3000); // listed with > half its TTL: nobody expects an answer
    c.queried(new Map(), 4000, ['a']); // its own query
    c.queried(new Map([['a', 10]]), 5000); // listed with too little TTL left: counts
    assert.deepEqual(c.expire(60_000), [], 'only one query counted');
    c.queried(new Map(), 61_000);
    c.heard('a', 120, 61_050); // answered
    assert.deepEqual(c.expire(80_000), []);
  });

  test('§10.5: the last query gets a second to be answered, even past the 10 s window', () => {
    const c = new PeerCache(fixed(0));
    c.heard('a', 120, 0);
    c.queried(new Map(), 2000);
    c.queried(new Map(), 12_500);
    assert.deepEqual(c.expire(12_600), []);
    assert.deepEqual(c.expire(13_500), ['a']);
  });
});

describe('QueryPlan', () => {
  test('a lone agent: first query 20-120 ms after start, then backing off to the cap: a handful of queries an hour', () => {
    const plan = new QueryPlan({ now: 0, random: fixed(0.5), capMs: 60_000 });
    const sent = run(plan, 0, 3_600_000);
    assert.equal(sent[0], 70);
    assert.deepEqual(sent.slice(1, 5).map((t, i) => Math.round(t - sent[i]!)), [1070, 2070, 4070, 8070]);
    assert.ok(sent.length <= 3600 / 60 + 8, `${sent.length} queries in an hour`);
  });

  test('at rest the only queries are refreshes near the end of the TTL, and they list the peers still fresh', () => {
    const plan = new QueryPlan({ now: 0, random: fixed(0), capMs: 60_000 });
    const lists: string[][] = [];
    // Peers a and b answer every query that does not list them (as responders do, §7.1).
    const answer = (t: number): void => {
      const listed = new Set(plan.knownAnswers(t).map((k) => k.instance));
      for (const i of ['a', 'b']) if (!listed.has(i)) plan.cache.heard(i, 20, t + 50);
      lists.push([...listed].sort());
    };
    const sent = run(plan, 0, 600_000, answer);
    assert.deepEqual(lists[0], []);
    const late = sent.filter((t) => t > 120_000);
    assert.ok(late.length > 0);
    // One query per refresh round (~80 % of 20 s), continuous queries suppressed by nothing but still capped.
    assert.ok(late.length <= (480 / 16) * 1.2 + 480 / 60, `${late.length} queries in 480 s`);
    assert.ok(plan.cache.has('a') && plan.cache.has('b'), 'peers never expired while answering');
  });

  test('§7.3: a waiting refresh is dropped when another host asks without listing the records we were refreshing', () => {
    const plan = new QueryPlan({ now: 0, random: fixed(0.5), self: 'me' });
    plan.cache.heard('a', 20, 0);
    plan.cache.heard('b', 20, 0);
    // Take the continuous queries out of the way.
    for (let i = 0; i < 10; i++) plan.backoff.sent(plan.backoff.nextAt);
    const due = 16_000 + 20_000 * REFRESH_JITTER * 0.5 + 1; // the refresh step (80 % + half the jitter), rounded up
    assert.equal(plan.poll(due).send, false, 'held 20-120 ms first');
    // c asks, listing us (it knows us) and nothing else: a and b answer it.
    assert.equal(plan.heardQuery(new Map([['me', 19]]), due + 10, ['c']), true);
    assert.equal(plan.poll(due + 200).send, false, 'a and b are covered');
    // Had b asked, b would not be covered (nobody answers its own query): ours still goes out.
    const p2 = new QueryPlan({ now: 0, random: fixed(0.5), self: 'me' });
    p2.cache.heard('a', 20, 0);
    p2.cache.heard('b', 20, 0);
    for (let i = 0; i < 10; i++) p2.backoff.sent(p2.backoff.nextAt);
    p2.poll(due);
    assert.equal(p2.heardQuery(new Map([['me', 19]]), due + 10, ['b']), false);
    assert.equal(p2.poll(due + 200).send, true);
  });

  test('§7.3: a query listing the record we refresh (with half its TTL) does not cover it', () => {
    const plan = new QueryPlan({ now: 0, random: fixed(0.5), self: 'me' });
    plan.cache.heard('a', 20, 0);
    for (let i = 0; i < 10; i++) plan.backoff.sent(plan.backoff.nextAt);
    const due = 16_000 + 20_000 * REFRESH_JITTER * 0.5 + 1;
    plan.poll(due);
    assert.equal(plan.heardQuery(new Map([['a', 12]]), due + 10), false);
    assert.equal(plan.poll(due + 200).send, true);
  });

  test('§7.3: only a Known-Answer list that holds nothing ours lacks stands in for our continuous query', () => {
    const plan = new QueryPlan({ now: 0, random: fixed(0.5), self: 'me', capMs: 60_000 });
    plan.cache.heard('a', 20, 0);
    for (let i = 0; i < 10; i++) plan.backoff.sent(plan.backoff.nextAt);
    const next = plan.backoff.nextAt;
    const t = next - 1000;
    plan.cache.heard('a', 20, t - 100);
    assert.equal(plan.heardQuery(new Map([['a', 19], ['zz', 19]]), t), false, 'zz would not answer it: we still need ours');
    assert.equal(plan.backoff.nextAt, next);
    assert.equal(plan.heardQuery(new Map([['a', 19], ['me', 19]]), t), true);
    assert.ok(plan.backoff.nextAt > next);
  });

  test('§7.3: an equivalent query heard in the second half of our continuous interval pushes ours back', () => {
    const plan = new QueryPlan({ now: 0, random: fixed(0.5), self: 'me', capMs: 60_000 });
    for (let i = 0; i < 10; i++) plan.backoff.sent(plan.backoff.nextAt);
    const next = plan.backoff.nextAt;
    const half = plan.backoff.lastIntervalMs / 2;
    assert.equal(plan.heardQuery(new Map(), next - half - 1000), false, 'first half: ours stays');
    assert.equal(plan.backoff.nextAt, next);
    assert.equal(plan.heardQuery(new Map(), next - half + 1000), true);
    assert.ok(plan.backoff.nextAt > next);
  });

  test('reset() after an address change: querying starts over from 1 s', () => {
    const plan = new QueryPlan({ now: 0, random: fixed(0.5), capMs: 60_000 });
    run(plan, 0, 600_000);
    plan.reset(700_000);
    const sent = run(plan, 700_000, 10_000);
    assert.deepEqual(sent.map((t) => Math.round(t - 700_000)), [70, 1140, 3210, 7280]);
  });

  test('peers answering in one burst are refreshed in one query, not one query each', () => {
    const plan = new QueryPlan({ now: 0, random: seq(0.2, 0.7, 0.4, 0.9), capMs: 60_000 });
    const peers = Array.from({ length: 20 }, (_, i) => `p${i}`);
    let answers = 0;
    const sent = run(plan, 0, 300_000, (t) => {
      const listed = new Set(plan.knownAnswers(t).map((k) => k.instance));
      for (const p of peers) {
        if (listed.has(p)) continue;
        answers++;
        plan.cache.heard(p, 20, t + 60);
      }
    });
    const late = sent.filter((t) => t > 60_000).length;
    assert.ok(late <= (240 / 16) * 1.5 + 240 / 60, `${late} queries in 240 s for 20 peers`);
    assert.equal(plan.cache.instances().length, 20);
    assert.ok(answers > 0);
  });
});
