// The image's HEALTHCHECK script against a real listener on loopback, for
// each way the daemon's health server may be bound: the IPv4 wildcard (the
// default), an IPv4 address, the IPv6 wildcard and an IPv6 address, as an
// IPv6-only node binds it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { runForOutcome } from '../../lab/exec.js';
import { packageRoot } from '../../lab/paths.js';

const script = path.join(packageRoot, 'deploy', 'healthcheck.mjs');

async function listen(host: string): Promise<{ server: Server; port: number }> {
  const server = createServer((_request, response) => response.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { server, port: (server.address() as { port: number }).port };
}

for (const [bound, listenOn] of [['0.0.0.0', '127.0.0.1'], ['127.0.0.1', '127.0.0.1'], ['::', '::1'], ['::1', '::1']] as const) {
  test(`reaches a health server bound to ${bound}`, async () => {
    const { server, port } = await listen(listenOn);
    try {
      const outcome = await runForOutcome([process.execPath, script], { env: { ...process.env, MINIFLANNELD_HEALTHZ_IP: bound, MINIFLANNELD_HEALTHZ_PORT: String(port) } });
      assert.equal(outcome.exitCode, 0, outcome.stderr);
    } finally {
      server.close();
    }
  });
}

test('fails, in one line, where nothing answers', async () => {
  const { server, port } = await listen('::1');
  server.close();
  const outcome = await runForOutcome([process.execPath, script], { env: { ...process.env, MINIFLANNELD_HEALTHZ_IP: '::1', MINIFLANNELD_HEALTHZ_PORT: String(port) } });
  assert.equal(outcome.exitCode, 1);
  assert.match(outcome.stderr.trim(), /^miniflanneld does not answer at http:\/\/\[::1\]:\d+\/healthz: ECONNREFUSED$/);
});
