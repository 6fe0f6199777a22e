/**
 * Friendly config error messages: field paths as users write them (`outboxes[0].to[1].peer`),
 * the offending value with its JSON type, what is allowed, and a did-you-mean for typos.
 * `translateSchemaErrors` turns ajv error objects into such messages, table-driven by keyword.
 */
import type { ErrorObject } from 'ajv/dist/2020.js';
import { ConfigError } from '../errors.js';
import type { SchemaNode } from './schema.js';

export type PathSegment = string | number;

/** `["outboxes", 0, "to", 1, "peer"]` → `outboxes[0].to[1].peer`. */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** `"abc" (string)`, `1.5 (number)`, `[] (array)`; long values are shortened. */
export function formatValue(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  if (text.length > 60) text = `${text.slice(0, 57)}...`;
  return `${text} (${jsonType(value)})`;
}

export function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = prev[j]!;
      prev[j] = Math.min(above + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = above;
    }
  }
  return prev[b.length]!;
}

/**
 * The closest candidate within edit distance 2 (a case-only difference counts as half),
 * or undefined. Short words need fewer edits: "x" is not a typo of "vm".
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    if (c === word) continue;
    const score = c.toLowerCase() === word.toLowerCase() ? 0.5 : levenshtein(word, c);
    if (score <= 2 && score < Math.max(word.length, c.length) / 2 && score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

const quoteList = (xs: readonly unknown[]): string => xs.map((x) => JSON.stringify(x)).join(', ');
const article = (word: string): string => (/^[aeiou]/i.test(word) ? `an ${word}` : `a ${word}`);

/** The phrase after "must be": from `description`, else from the node's structure. */
export function describeSchema(node: SchemaNode | undefined): string {
  if (!node) return 'valid';
  if (typeof node.description === 'string') return node.description;
  if (Array.isArray(node.enum)) return `one of ${quoteList(node.enum)}`;
  if ('const' in node) return JSON.stringify(node.const);
  const types = Array.isArray(node.type) ? (node.type as string[]) : typeof node.type === 'string' ? [node.type] : [];
  const parts = types.map((t) => describeType(t, node));
  if (parts.length > 0) return parts.join(' or ');
  if (typeof node.pattern === 'string') return `a string matching /${node.pattern}/`;
  return 'valid';
}

function describeType(type: string, node: SchemaNode): string {
  const min = typeof node.minimum === 'number' ? node.minimum : undefined;
  const max = typeof node.maximum === 'number' ? node.maximum : undefined;
  const range = (noun: string): string =>
    min !== undefined && max !== undefined
      ? `${article(noun)} from ${min} to ${max}`
      : min !== undefined
        ? `${article(noun)} of at least ${min}`
        : max !== undefined
          ? `${article(noun)} of at most ${max}`
          : article(noun);
  switch (type) {
    case 'integer':
      return range('integer');
    case 'number':
      return range('number');
    case 'boolean':
      return 'true or false';
    case 'string':
      return node.minLength === 1 ? 'a non-empty string' : 'a string';
    case 'array':
      return typeof node.minItems === 'number' && node.minItems > 0 ? `a list of at least ${node.minItems} entries` : 'a list';
    case 'object':
      return 'an object';
    case 'null':
      return 'null';
    default:
      return type;
  }
}

/** Builds ConfigErrors that all start the same way. */
export class ConfigErrors {
  constructor(readonly where: string) {}

  /** `` Config error in FILE: `field` <text> `` */
  error(field: string, text: string, cause?: unknown): ConfigError {
    return new ConfigError(field, `Config error in ${this.where}: \`${field}\` ${text}`, cause === undefined ? undefined : { cause });
  }

  /** An error not tied to one field (unreadable file, syntax error). */
  fileError(text: string, cause?: unknown): ConfigError {
    return new ConfigError('', `Config error in ${this.where}: ${text}`, cause === undefined ? undefined : { cause });
  }

  /** Several problems in one error: `field` is the first one's. */
  combine(errors: ConfigError[]): ConfigError {
    if (errors.length === 1) return errors[0]!;
    const prefix = `Config error in ${this.where}: `;
    const lines = errors.slice(0, 10).map((e) => `  - ${e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message}`);
    if (errors.length > 10) lines.push(`  - ... and ${errors.length - 10} more`);
    return new ConfigError(errors[0]!.field, `Config errors in ${this.where} (${errors.length}):\n${lines.join('\n')}`);
  }
}

interface Issue {
  field: string;
  depth: number;
  text: string;
}

/** instancePath `/outboxes/0/to` → segments, using the data to tell array indices from keys. */
function segmentsOf(instancePath: string, data: unknown): PathSegment[] {
  if (instancePath === '') return [];
  const out: PathSegment[] = [];
  let cur: unknown = data;
  for (const raw of instancePath.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur) && /^\d+$/.test(key)) {
      out.push(Number(key));
      cur = cur[Number(key)];
    } else {
      out.push(key);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[key] : undefined;
    }
  }
  return out;
}

type Translate = (e: ErrorObject, path: PathSegment[]) => { path: PathSegment[]; text: string };

const mustBe: Translate = (e, path) => ({
  path,
  text: `must be ${describeSchema(e.parentSchema as SchemaNode | undefined)}, got ${formatValue(e.data)}.`,
});

function knownFields(parentSchema: SchemaNode | undefined): string[] {
  const props = parentSchema?.properties;
  return props && typeof props === 'object' ? Object.keys(props).filter((k) => !k.startsWith('$')) : [];
}

const TRANSLATORS: Record<string, Translate> = {
  type: mustBe,
  minimum: mustBe,
  maximum: mustBe,
  exclusiveMinimum: mustBe,
  exclusiveMaximum: mustBe,
  multipleOf: mustBe,
  enum: mustBe,
  const: mustBe,
  minLength: mustBe,
  maxLength: mustBe,
  pattern: mustBe,
  format: mustBe,
  minItems: mustBe,
  maxItems: mustBe,
  uniqueItems: mustBe,
  anyOf: mustBe,
  oneOf: mustBe,
  not: mustBe,
  additionalProperties: (e, path) => {
    const name = String((e.params as { additionalProperty?: unknown }).additionalProperty);
    const known = knownFields(e.parentSchema as SchemaNode | undefined);
    const hint = closest(name, known);
    const where = path.length === 0 ? 'at the top level' : `in \`${formatPath(path)}\``;
    return {
      path: [...path, name],
      text:
        `is not a known field${hint ? `; did you mean \`${hint}\`?` : '.'}` +
        ` Fields allowed ${where}: ${known.join(', ')}.`,
    };
  },
  required: (e, path) => {
    const name = String((e.params as { missingProperty?: unknown }).missingProperty);
    const props = (e.parentSchema as SchemaNode | undefined)?.properties as Record<string, SchemaNode> | undefined;
    return { path: [...path, name], text: `is missing: it must be ${describeSchema(props?.[name])}.` };
  },
};

/**
 * ajv errors (compiled with `verbose: true` so each carries `data` and `parentSchema`)
 * → one ConfigError. One message per field: the outermost schema's error wins, so an
 * `anyOf` reports its own description rather than each failed branch.
 */
export function translateSchemaErrors(errors: readonly ErrorObject[], data: unknown, make: ConfigErrors): ConfigError {
  const byField = new Map<string, Issue>();
  for (const e of errors) {
    const translate = TRANSLATORS[e.keyword] ?? mustBe;
    const { path, text } = translate(e, segmentsOf(e.instancePath, data));
    const field = formatPath(path) || '(top level)';
    const depth = e.schemaPath.split('/').length;
    const seen = byField.get(field);
    if (!seen || depth < seen.depth) byField.set(field, { field, depth, text });
  }
  const issues = [...byField.values()];
  if (issues.length === 0) return make.fileError('the file does not match the config schema.');
  return make.combine(issues.map((i) => make.error(i.field, i.text)));
}
