// miniflanneld's start-up, run as a process, up to the point where it would
// create a device: failures, and waiting for a store it cannot use yet. Each
// stops before any device exists, so they run in the root namespace, on
// loopback only. (Waiting until the store becomes usable, and then working,
// is tested in namespaces: test/reliability/store-loss.system.test.ts.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { waitFor } from '../../lab/daemon.js';
import { exited, runForOutcome, start, stopProcess } from '../../lab/exec.js';
import { daemonBin } from '../../lab/paths.js';
import { freePort, startRedis, type RedisServer } from '../../lab/redis.js';

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(() => redis?.stop());

/**
 * Starts the daemon against `redisUrl`, waits until /readyz gives a reason
 * matching `why` and the log says it is waiting, then ends it with SIGTERM,
 * which must exit 0 at once. Returns the /readyz body.
 */
async function waitsSaying(redisUrl: string, why: RegExp): Promise<string> {
  const healthzPort = await freePort();
  const child: ChildProcess = start([process.execPath, daemonBin, '--redis-url', redisUrl, '--iface', 'lo', '--public-ip', '127.0.0.1', '--healthz-ip', '127.0.0.1', '--healthz-port', String(healthzPort)]);
  let log = '';
  child.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  try {
    const body = await waitFor('/readyz to say why the daemon waits', async () => {
      if (child.exitCode !== null) throw new Error(`the daemon exited with ${child.exitCode}: ${log}`);
      const response = await fetch(`http://127.0.0.1:${healthzPort}/readyz`).catch(() => undefined);
      if (response === undefined) return undefined;
      const text = await response.text();
      return response.status === 503 && why.test(text) ? text : undefined;
    });
    await waitFor('the log to say the same', async () => log.split('\n').some((line) => line.includes('"msg":"waiting for the lease store"') && why.test(line)));
    assert.equal((await fetch(`http://127.0.0.1:${healthzPort}/healthz`)).status, 200, 'alive while it waits');
    await waitFor('a second attempt (backoff)', async () => log.split('\n').filter((line) => line.includes('"msg":"waiting for the lease store"')).length >= 2, 10_000);
    const began = Date.now();
    child.kill('SIGTERM');
    assert.equal(await exited(child), 0);
    assert.ok(Date.now() - began < 3_000, `SIGTERM took ${Date.now() - began} ms`);
    return body.trim();
  } finally {
    await stopProcess(child, 1000);
  }
}

test('with no network config stored it waits, says how to set it on /readyz and in the log, and never exits on its own', async () => {
  const body = await waitsSaying(redis.url, /no network config is stored/);
  assert.match(body, /^not ready: no network config is stored at Redis key \{miniflannel\}:config; run `miniflannel config set`/);
});

test('with a corrupt network config it waits, naming the field', async () => {
  redis.cli('SET', '{miniflannel}:config', '{"Network": "10.244.0.0/33"}');
  try {
    const body = await waitsSaying(redis.url, /invalid.*Network/);
    assert.match(body, /^not ready: the network config stored at \{miniflannel\}:config is invalid: Network /);
  } finally {
    redis.cli('DEL', '{miniflannel}:config');
  }
});

test('with Redis unreachable it waits, naming the address', async () => {
  const port = await freePort();
  const body = await waitsSaying(`redis://127.0.0.1:${port}`, /Redis unreachable/);
  assert.equal(body, `not ready: Redis unreachable at redis://127.0.0.1:${port}: ECONNREFUSED`);
});

test('a bad flag is a usage error: exit 2, one line', async () => {
  const outcome = await runForOutcome([process.execPath, daemonBin, '--public-ip', 'not-an-ip']);
  assert.equal(outcome.exitCode, 2);
  assert.equal(outcome.stderr.trim().split('\n').length, 1, outcome.stderr);
  assert.match(outcome.stderr, /not-an-ip/);
});

test('an unknown interface says which flag to fix', async () => {
  const outcome = await runForOutcome([process.execPath, daemonBin, '--redis-url', redis.url, '--iface', 'nosuch0', '--healthz-ip', '127.0.0.1', '--healthz-port', '0']);
  assert.equal(outcome.exitCode, 1);
  assert.match(outcome.stderr, /nosuch0.*--iface/);
});
