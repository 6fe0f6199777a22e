/**
 * PURE  Which state-changing HTTP requests the status API accepts (`POST /send`, and every
 * endpoint added later that changes something: POST /limits, POST /stop, ...). One rule for
 * all of them, so a new endpoint cannot forget a case.
 *
 * The threat: any web page open in a browser on the agent's machine (or, with a token, on
 * an operator's machine) can make that browser send requests to the agent. Browsers send
 * such requests without asking the agent first ("simple" requests) only with a form-like
 * body (`application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`) or no
 * body type; anything else (e.g. `application/json`) needs a CORS preflight, which the
 * agent never grants. So a mutation is refused when:
 * - it carries `Origin` that is not this very server (`null` included: sandboxed frames,
 *   some redirects, `file://` pages send it);
 * - it carries `Sec-Fetch-Site` other than `same-origin` or `none` (modern browsers mark
 *   every cross-site and same-site request);
 * - its body type is one a browser can send cross-site without a preflight, and anything
 *   in the request says a browser sent it (`Origin`, `Referer`, any `Sec-Fetch-*`, a
 *   `Mozilla/` user agent).
 * TouchDesigner's own calls (Python urllib, the Web Client DAT) send none of these
 * headers, so JSON and form bodies from them keep working.
 */
import type { IncomingHttpHeaders } from 'node:http';

export interface MutationRequest {
  method?: string | undefined;
  headers: IncomingHttpHeaders;
}

export interface MutationRefusal {
  status: 403 | 415;
  code: 'CROSS_SITE_REFUSED';
  message: string;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Body types a browser sends cross-site without a CORS preflight. */
const SIMPLE_TYPES = new Set(['', 'application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain']);

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  try {
    const u = new URL(origin);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.host.toLowerCase() === host.toLowerCase();
  } catch {
    return false;
  }
}

/** Null when the request may change state, else why not (status, stable code, message). */
export function authorizeMutation(req: MutationRequest): MutationRefusal | null {
  const method = (req.method ?? 'GET').toUpperCase();
  if (SAFE_METHODS.has(method)) return null;
  const h = req.headers;
  const origin = one(h.origin);
  const fix = 'send it from a program (TouchDesigner, curl, Python) with a JSON body, not from a web page';
  if (origin !== undefined && !sameOrigin(origin, one(h.host))) {
    return { status: 403, code: 'CROSS_SITE_REFUSED', message: `cross-origin ${method} from Origin "${origin}" refused: ${fix}` };
  }
  const site = one(h['sec-fetch-site'])?.toLowerCase();
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    return { status: 403, code: 'CROSS_SITE_REFUSED', message: `${method} with Sec-Fetch-Site "${site}" refused (a web page on another site sent it): ${fix}` };
  }
  const type = (one(h['content-type']) ?? '').split(';')[0]!.trim().toLowerCase();
  if (SIMPLE_TYPES.has(type)) {
    const ua = one(h['user-agent']) ?? '';
    const browser = origin !== undefined || h.referer !== undefined || Object.keys(h).some((k) => k.startsWith('sec-fetch-')) || /^mozilla\//i.test(ua);
    if (browser) {
      return {
        status: 415,
        code: 'CROSS_SITE_REFUSED',
        message: `${method} from a browser with body type "${type || 'none'}" refused (web pages can send that type to any site): send Content-Type: application/json`,
      };
    }
  }
  return null;
}
