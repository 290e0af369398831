// Garbage written into Redis by hand (redis-cli), under a running two-node
// cluster: a lease value that is not a lease, a change that is not one, and
// a network config that is not valid. Running daemons say what is wrong and
// carry on; a starting daemon with a bad config waits, saying why, until the
// config is fixed; `miniflannel lease list` shows the good leases and names
// the bad values.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SANDBOX_REDIS_URL, UNDERLAY_GATEWAY } from '../../lab/cluster.js';
import { HEALTHZ_PORT, httpGetIn, leaseModeArgs, waitFor } from '../../lab/daemon.js';
import { cliBin } from '../../lab/paths.js';
import { exited } from '../../lab/exec.js';
import { daemonBin } from '../../lab/paths.js';
import { daemonLog, twoFreeSubnets, NETWORK, redisCli, TestCluster, waitForPeers } from './harness.js';

const KEYS = { config: '{miniflannel}:config', leases: '{miniflannel}:leases', events: '{miniflannel}:events', seq: '{miniflannel}:seq', epoch: '{miniflannel}:epoch' };
const CHANNEL = '{miniflannel}:changes';
/** A lease value that is not JSON, on a subnet no node holds (picked once the nodes have theirs). */
const GARBAGE = { subnet: '', value: 'not json{' };
/** A subnet for a real change after the garbage. */
let spare = '';
const NOT_A_SUBNET = { field: 'garbage-subnet', value: '{"PublicIP":"198.18.0.77","NodeName":"x","BackendType":"udp","BackendData":{}}' };
/** Writes and pushes a change with the next sequence number, as the scripts would, but with a value that is not a lease. */
const PUSH_GARBAGE = `local n = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], '*', 'n', n, 't', 'added', 's', ARGV[1], 'l', ARGV[2], 'e', '')
redis.call('PUBLISH', ARGV[3], redis.call('GET', KEYS[3]) .. ' ' .. n .. ' added ' .. ARGV[1] .. ' - ' .. id .. ' ' .. ARGV[2])
return id`;

let cluster: TestCluster;
const redis = (...args: string[]) => redisCli(cluster.sandbox.underlay, UNDERLAY_GATEWAY, 6379, ...args);
const pingOnce = (from: number, to: number) => cluster.pod(from).ns.exec(['ping', '-c', '1', '-W', '2', cluster.pod(to).ip]);

before(async () => {
  cluster = await TestCluster.create(2, SANDBOX_REDIS_URL);
  await cluster.sandbox.startRedis({ persistence: false });
  await cluster.join();
  [GARBAGE.subnet, spare] = await twoFreeSubnets(cluster);
});

after(async () => {
  await cluster?.destroy();
});

test('a garbage lease value and change-stream entry: running daemons log what is wrong and keep following the leases', async () => {
  await redis('hset', KEYS.leases, GARBAGE.subnet, GARBAGE.value);
  await redis('hset', KEYS.leases, NOT_A_SUBNET.field, NOT_A_SUBNET.value);
  await redis('eval', PUSH_GARBAGE, '3', KEYS.events, KEYS.seq, KEYS.epoch, GARBAGE.subnet, GARBAGE.value, CHANNEL);
  // And a message on the change channel that is no change at all.
  await redis('publish', CHANNEL, 'garbage');
  for (let i = 1; i <= 2; i++) {
    const warning = await waitFor(`node ${i} to report the corrupt entry`, async () =>
      (await daemonLog(cluster.daemon(i))).find((l) => l.level === 40 && /corrupt/.test(l.msg) && l['subnet'] === GARBAGE.subnet));
    assert.match(String(warning['reason']), /not JSON/);
  }
  // The watch is still alive: a real change after the garbage reaches both daemons.
  await cluster.cli(['lease', 'reserve', spare, '--public-ip', '198.18.0.98']);
  for (let i = 1; i <= 2; i++) await waitForPeers(cluster, i, 2);
  await cluster.cli(['lease', 'revoke', spare, '--yes']);
  for (let i = 1; i <= 2; i++) await waitForPeers(cluster, i, 1);
  await pingOnce(1, 2);
  await pingOnce(2, 1);
  for (let i = 1; i <= 2; i++) assert.equal(cluster.daemon(i).process.exitCode, null);
});

test('a daemon starting over garbage leases skips them, says why, and works', async () => {
  const node = cluster.node(2);
  assert.equal(await cluster.daemon(2).stop(), 0);
  const daemon = await cluster.startDaemon(node);
  const skipped = (await daemonLog(daemon)).filter((l) => l.msg === 'skipping corrupt lease value');
  // Each listing (acquiring, then the watch's snapshot) says so.
  assert.deepEqual([...new Set(skipped.map((l) => l['subnet']))].sort(), [GARBAGE.subnet, NOT_A_SUBNET.field].sort());
  assert.ok(skipped.every((l) => typeof l['reason'] === 'string' && l['reason'] !== ''));
  assert.equal((await daemon.status()).peers.length, 1);
  await pingOnce(1, 2);
});

test('lease list shows the good leases and names each bad value and what is wrong with it', async () => {
  const text = await cluster.sandbox.underlay.execForOutcome([process.execPath, cliBin, 'lease', 'list', '--redis-url', SANDBOX_REDIS_URL]);
  assert.equal(text.exitCode, 0, text.stderr);
  for (const node of cluster.sandbox.nodes) assert.match(text.stdout, new RegExp(node.underlayIp.replace(/\./g, '\\.')));
  const warnings = text.stderr.trim().split('\n');
  assert.equal(warnings.length, 2, text.stderr);
  assert.ok(warnings.some((w) => w.startsWith(`miniflannel: warning: {miniflannel}:leases field "${GARBAGE.subnet}" is not a lease and is ignored: value is not JSON`)), text.stderr);
  assert.ok(warnings.some((w) => /field "garbage-subnet" is not a lease and is ignored: subnet "garbage-subnet" is not a CIDR block/.test(w)), text.stderr);

  const json = await cluster.sandbox.underlay.execForOutcome([process.execPath, cliBin, 'lease', 'list', '--json', '--redis-url', SANDBOX_REDIS_URL]);
  assert.equal(json.exitCode, 0);
  const doc = JSON.parse(json.stdout);
  assert.equal(doc.leases.length, 2);
  assert.deepEqual(doc.corrupt.map((c: { subnet: string }) => c.subnet).sort(), [GARBAGE.subnet, NOT_A_SUBNET.field].sort());
});

test('a garbage network config: running daemons carry on and say so once; a starting daemon waits, saying why, until it is fixed', async () => {
  const node = cluster.node(2);
  assert.equal(await cluster.daemon(2).stop(), 0);
  // The same flags a DaemonSet would give it.
  const args = [...leaseModeArgs(node, SANDBOX_REDIS_URL), '--healthz-ip', node.underlayIp, '--healthz-port', String(HEALTHZ_PORT)];
  const readyz = () => httpGetIn(node.ns, `http://${node.underlayIp}:${HEALTHZ_PORT}/readyz`);
  for (const [value, problem] of [
    ['garbage', /^not ready: the network config stored at \{miniflannel\}:config is invalid: the network config is not valid JSON: .*; fix it with `miniflannel config set`$/],
    ['{"Network": "10.244.0.0/33"}', /^not ready: the network config stored at \{miniflannel\}:config is invalid: Network /],
  ] as const) {
    await redis('set', KEYS.config, value);
    const waiting = cluster.spawn(node.ns, [process.execPath, daemonBin, ...args]);
    try {
      const answer = await waitFor('the starting daemon to say why it waits', async () => {
        if (waiting.exitCode !== null) throw new Error(`the daemon exited with ${waiting.exitCode}`);
        const r = await readyz();
        return r.status === 503 && /invalid/.test(r.body) ? r : undefined;
      });
      assert.match(answer.body.trim(), problem);
    } finally {
      waiting.kill('SIGTERM');
      assert.equal(await exited(waiting), 0, 'SIGTERM while waiting is a clean stop');
    }
  }
  assert.equal(cluster.daemon(1).process.exitCode, null, 'the running daemon is unaffected');
  const complaints = (await daemonLog(cluster.daemon(1))).filter((l) => l.level === 50 && /stored network config differs/.test(l.msg));
  assert.ok(complaints.length >= 1 && complaints.length <= 2, `the running daemon said so once per stored value: ${complaints.length}`);
  const get = await cluster.sandbox.underlay.execForOutcome([process.execPath, cliBin, 'config', 'get', '--redis-url', SANDBOX_REDIS_URL]);
  assert.notEqual(get.exitCode, 0);
  assert.equal(get.stderr.trim().split('\n').length, 1, get.stderr);
  assert.match(get.stderr, /config stored at \{miniflannel\}:config is invalid/);

  // A daemon waiting on it starts as soon as the config is repaired with the CLI, and its pod is reachable.
  const waiting = cluster.spawn(node.ns, [process.execPath, daemonBin, ...args]);
  await waitFor('the daemon to wait', async () => (await readyz()).status === 503);
  await cluster.cli(['config', 'init', '--network', NETWORK]);
  await waitFor('the daemon to become ready once the config is fixed', async () => (await readyz()).status === 200, 60_000);
  await pingOnce(1, 2);
  waiting.kill('SIGTERM');
  assert.equal(await exited(waiting), 0);
});
