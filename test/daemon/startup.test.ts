// miniflanneld's start-up failures, run as a process. Each fails before it
// would create a device, so they run in the root namespace, on loopback only.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { runForOutcome } from '../../cli/sandbox/exec.js';
import { daemonBin } from '../harness/paths.js';
import { startRedis, type RedisServer } from '../harness/redis.js';

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(() => redis?.stop());

const loopback = ['--iface', 'lo', '--public-ip', '127.0.0.1', '--healthz-ip', '127.0.0.1', '--healthz-port', '0'];

test('a missing network config is one clear line that says how to set it, and exit 1', async () => {
  const outcome = await runForOutcome([process.execPath, daemonBin, '--redis-url', redis.url, ...loopback]);
  assert.equal(outcome.exitCode, 1);
  const lines = outcome.stderr.trim().split('\n');
  assert.equal(lines.length, 1, outcome.stderr);
  assert.match(lines[0]!, /^miniflanneld: no network config .*miniflannel config set/);
});

test('a corrupt network config names the field', async () => {
  redis.cli('SET', '{miniflannel}:config', '{"Network": "10.244.0.0/33"}');
  try {
    const outcome = await runForOutcome([process.execPath, daemonBin, '--redis-url', redis.url, ...loopback]);
    assert.equal(outcome.exitCode, 1);
    assert.match(outcome.stderr, /^miniflanneld: .*Network/);
  } finally {
    redis.cli('DEL', '{miniflannel}:config');
  }
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
