/**
 * The daemon's HTTP endpoint: liveness, readiness, Prometheus metrics, and
 * a JSON status for `miniflannel status`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.js';

export interface StatusSource {
  /** Whether the node does its job; if not, why (shown on /readyz). */
  readiness(): { readonly ready: boolean; readonly reason?: string };
  status(): unknown;
}

export interface HttpServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpServer(
  source: StatusSource,
  options: { host: string; port: number; logger: Logger; metrics: Metrics },
): Promise<HttpServer> {
  const server = http.createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    const url = new URL(req.url ?? '/', 'http://localhost');
    switch (url.pathname) {
      case '/healthz':
        return send(200, 'ok\n');
      case '/readyz': {
        const { ready, reason } = source.readiness();
        return ready ? send(200, 'ready\n') : send(503, `not ready: ${reason ?? 'starting'}\n`);
      }
      case '/status':
        return send(200, `${JSON.stringify(source.status(), null, 2)}\n`, 'application/json');
      case '/metrics':
        return void options.metrics.scrape().then(
          (body) => send(200, body, options.metrics.contentType),
          (err: Error) => send(500, `${err.message}\n`),
        );
      default:
        return send(404, 'not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  options.logger.info({ host: options.host, port }, 'http server listening');
  return {
    port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
