import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closest, describeSchema, formatPath, formatValue, levenshtein } from '../../src/config/messages.js';

test('levenshtein distances', () => {
  assert.equal(levenshtein('settleMs', 'settleMs'), 0);
  assert.equal(levenshtein('setleMs', 'settleMs'), 1);
  assert.equal(levenshtein('kitten', 'sitting'), 3);
  assert.equal(levenshtein('', 'abc'), 3);
});

test('closest: within 2 edits, case slips preferred, nothing when far', () => {
  assert.equal(closest('settleMS', ['path', 'settleMs', 'after']), 'settleMs');
  assert.equal(closest('inbxo', ['inbox', 'peer']), 'inbox');
  assert.equal(closest('Peers', ['peers', 'peer']), 'peers');
  assert.equal(closest('zzzzzz', ['peers', 'inbox']), undefined);
  assert.equal(closest('x', ['vm']), undefined);
});

test('formatPath writes paths the way users write them', () => {
  assert.equal(formatPath(['outboxes', 0, 'to', 1, 'peer']), 'outboxes[0].to[1].peer');
  assert.equal(formatPath(['security', 'key']), 'security.key');
  assert.equal(formatPath(['inboxes', 2, 'odd key']), 'inboxes[2]["odd key"]');
  assert.equal(formatPath([]), '');
});

test('formatValue shows the value and its JSON type, shortened', () => {
  assert.equal(formatValue('abc'), '"abc" (string)');
  assert.equal(formatValue(null), 'null (null)');
  assert.equal(formatValue([1]), '[1] (array)');
  assert.equal(formatValue({ a: 1 }), '{"a":1} (object)');
  assert.match(formatValue('x'.repeat(100)), /^"x{56}\.\.\. \(string\)$/);
});

test('describeSchema: description first, else from the structure', () => {
  assert.equal(describeSchema({ type: 'integer', minimum: 1, maximum: 65535 }), 'an integer from 1 to 65535');
  assert.equal(describeSchema({ type: 'number', minimum: 0 }), 'a number of at least 0');
  assert.equal(describeSchema({ enum: ['a', 'b'] }), 'one of "a", "b"');
  assert.equal(describeSchema({ type: ['string', 'null'], minLength: 1 }), 'a non-empty string or null');
  assert.equal(describeSchema({ type: 'boolean' }), 'true or false');
  assert.equal(describeSchema({ type: 'integer', description: 'a port' }), 'a port');
});
