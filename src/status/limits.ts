/**
 * `POST /limits` body: `{ "rate": "20MB/s" }` or `{ "maxBytesPerSecond": 20000000 }`, with
 * optional `"peer": "<name>"` (that peer's outgoing cap) or `"direction": "incoming"`;
 * JSON or form-encoded (TouchDesigner's Web Client DAT). Rates as `parseRate` reads them.
 */
import type { LimitRequest } from '../types.js';
import { TdxError } from '../errors.js';
import { bodyFields } from './body.js';
import { RATE_EXAMPLES, parseRate } from '../limits/rate.js';

export function parseLimitRequest(body: string, contentType: string | undefined): LimitRequest {
  const fields = bodyFields(body, contentType, '{"rate": "20MB/s"} or {"rate": "off", "peer": "name"}', (m) => new TdxError('BAD_REQUEST', m));
  const rate = fields.rate ?? fields.maxBytesPerSecond;
  if (rate === undefined || rate === null || rate === '') throw new TdxError('BAD_REQUEST', `missing \`rate\`: ${RATE_EXAMPLES}`);
  let maxBytesPerSecond: number;
  if (typeof rate === 'number') {
    if (!Number.isSafeInteger(rate) || rate < 0) throw new TdxError('BAD_RATE', `\`rate\` ${rate} must be a whole number of bytes per second, 0 for unlimited`);
    maxBytesPerSecond = rate;
  } else if (typeof rate === 'string') {
    maxBytesPerSecond = parseRate(rate);
  } else {
    throw new TdxError('BAD_RATE', `\`rate\` must be a string like ${RATE_EXAMPLES}; got ${JSON.stringify(rate)}`);
  }
  const req: LimitRequest = { maxBytesPerSecond };
  const peer = fields.peer;
  if (peer !== undefined && peer !== null && peer !== '') {
    if (typeof peer !== 'string') throw new TdxError('BAD_REQUEST', `\`peer\` must be a peer name, got ${JSON.stringify(peer)}`);
    req.peer = peer;
  }
  const direction = fields.direction;
  if (direction !== undefined && direction !== null && direction !== '') {
    if (direction !== 'outgoing' && direction !== 'incoming') throw new TdxError('BAD_REQUEST', `\`direction\` must be "outgoing" or "incoming", got ${JSON.stringify(direction)}`);
    req.direction = direction;
  }
  return req;
}
