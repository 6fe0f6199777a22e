/** Shared bits for the status API tests: a started server on port 0 and a raw HTTP client. */
import { memoryLogger } from '../../src/log.js';
import { StatusServer, type StatusServerOptions } from '../../src/status/server.js';
import { FakeView } from '../helpers/fake-view.js';

export interface Started {
  view: FakeView;
  server: StatusServer;
  base: string;
  port: number;
  log: ReturnType<typeof memoryLogger>;
}

export async function startStatus(opts: Partial<StatusServerOptions> = {}, view = new FakeView()): Promise<Started> {
  const log = memoryLogger();
  const server = new StatusServer(view, { host: '127.0.0.1', port: 0, token: null, log, version: '9.9.9-test', ...opts });
  const { port } = await server.start();
  return { view, server, base: `http://127.0.0.1:${port}`, port, log };
}

export { httpRequest as request, type HttpReply as RawResponse } from '../helpers/http.js';
