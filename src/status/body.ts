/**
 * The fields of a POST body: a JSON object, or the same fields form-encoded (what
 * TouchDesigner's Web Client DAT sends by default). A body that is neither gets
 * `fail(message)`, the message naming the parse error and `hint` (an example body).
 */
import { describeError } from '../errors.js';

export function bodyFields(body: string, contentType: string | undefined, hint: string, fail: (message: string) => Error): Record<string, unknown> {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded' || (type !== 'application/json' && !body.trimStart().startsWith('{'))) {
    return Object.fromEntries(new URLSearchParams(body));
  }
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw fail(`body is not a JSON object (${describeError(err)}); send ${hint}`);
  }
}
