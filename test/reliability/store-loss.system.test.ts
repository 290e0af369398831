// The lease store is soft state: the daemons rebuild it. One namespace
// cluster, real daemons, real CNI pods and a real redis-server without
// persistence, through every way the store can lose its data while pods
// talk: Redis restarted empty, FLUSHALL, Redis gone for 30 s and back empty.
// Each time no daemon exits, pod traffic goes on, and the config and every
// lease (on its old subnet) are back within seconds. An operator's revoke
// still stops its node, a node that never re-asserts is dropped after
// --peer-grace, and a daemon that starts with no usable store waits and
// says why instead of crash-looping.
//
// Leases live 120 s and are renewed 110 s before they expire, so renewals
// also land on the emptied store. The tests share the cluster and run in
// order: nodes 4 and 5 join in tests 1 and 2, are revoked in test 3, and are
// started again, against a store that is down or empty, in test 6.
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { SANDBOX_REDIS_URL, UNDERLAY_GATEWAY } from '../../lab/cluster.js';
import { waitFor } from '../../lab/daemon.js';
import { exited } from '../../lab/exec.js';
import {
  daemonLog,
  describePing,
  leftoversIn,
  longestGap,
  lostPings,
  NETWORK,
  pacedTcpTransfer,
  pingRing,
  redisCli,
  repliesBetween,
  sleep,
  statusLease,
  TestCluster,
  type PingRecord,
} from './harness.js';

const DAEMON_ARGS = ['--lease-ttl', '120s', '--lease-renew-margin', '110s'];
const KEYS = { leases: '{miniflannel}:leases', config: '{miniflannel}:config', epoch: '{miniflannel}:epoch' };
/** Pings every 200 ms between pods do not go through Redis: a store loss may cost at most this many per stream. */
const MAX_LOST_PINGS = 1;
/** From Redis back (restart) to the config and every lease back: reconnection (backoff from 100 ms) plus the 3 s re-assertion spread. */
const BACK_AFTER_RESTART_MS = 8_000;
/** From FLUSHALL to the config and every lease back: the flush is pushed at once, then the 3 s spread. */
const BACK_AFTER_FLUSH_MS = 6_000;
/** From Redis back after 30 s to everything back: the watch reconnects within its backoff cap (10 s ±25 %), then the spread. */
const BACK_AFTER_OUTAGE_MS = 20_000;
/** Long enough for the watch's reconnection backoff (from 100 ms, doubling) to reach its 10 s cap. */
const OUTAGE_MS = 30_000;
const PEER_GRACE_MS = 8_000;
const LOST_MESSAGES = {
  watch: 'the lease store lost its data or was replaced; its leases must be re-asserted',
  feed: 'the lease store lost its data: forwarding to every known peer until it re-asserts its lease',
  keeper: 'lease was missing from the store, not revoked: put it back',
  config: 'the network config was missing from the store: stored the one this node runs with',
};

let cluster: TestCluster;
/** The network config as `config get --json` showed it at the start. */
let initialConfig: unknown;
/** Each running node's subnet, as its /status showed it when it started: /status costs a process in the namespace, so it is asked once. */
const subnet = new Map<number, string>();

async function learnSubnet(index: number): Promise<string> {
  const held = (await statusLease(cluster.daemon(index))).subnet;
  subnet.set(index, held);
  return held;
}

before(async () => {
  cluster = await TestCluster.create(3, SANDBOX_REDIS_URL, DAEMON_ARGS);
  await cluster.sandbox.startRedis({ persistence: false });
  await cluster.join();
  for (const i of [1, 2, 3]) await learnSubnet(i);
  for (const i of [1, 2, 3]) await waitForConfirmedPeers(i, [1, 2, 3], 30_000);
  initialConfig = JSON.parse(await cluster.cli(['config', 'get', '--json']));
});

after(async () => {
  // The workspace goes with the sandbox: MINIFLANNEL_TEST_LOG_DIR keeps the daemons' logs.
  const keep = process.env['MINIFLANNEL_TEST_LOG_DIR'];
  if (keep && cluster) {
    await mkdir(keep, { recursive: true });
    for (const node of cluster.sandbox.nodes) {
      for (const file of (await readdir(node.workDir)).filter((f) => f.endsWith('.log'))) await copyFile(path.join(node.workDir, file), path.join(keep, `n${node.index}-${file}`));
    }
  }
  await cluster?.destroy();
});

const redis = (...args: string[]) => redisCli(cluster.sandbox.underlay, UNDERLAY_GATEWAY, 6379, ...args);
/** FLUSHALL; resolves with the instant it was sent. */
const flush = async () => {
  const at = Date.now();
  await redis('FLUSHALL');
  return at;
};
const epoch = async () => (await redis('GET', KEYS.epoch)).trim();

const subnetsOf = (nodes: readonly number[]) => new Map(nodes.map((i) => [i, subnet.get(i)!] as const));

const pidsOf = (nodes: readonly number[]) => nodes.map((i) => cluster.daemon(i).process.pid);

/** Waits (polling Redis directly, for a precise time) until it holds a config and exactly these subnets; resolves when. */
async function waitForStore(subnets: Map<number, string>, timeoutMs: number): Promise<number> {
  const want = [...subnets.values()].sort().join(' ');
  await waitFor(`the store to hold the config and the leases ${want}`, async () => {
    const held = (await redis('HKEYS', KEYS.leases)).split('\n').filter(Boolean).sort().join(' ');
    return held === want && (await redis('EXISTS', KEYS.config)).trim() === '1';
  }, timeoutMs);
  return Date.now();
}

/** What the CLI shows: exactly these nodes' leases, each on its subnet with its address and name, and the original config. */
async function assertStoreShows(subnets: Map<number, string>): Promise<void> {
  const listed = (JSON.parse(await cluster.cli(['lease', 'list', '--json'])).leases as Array<{ subnet: string; publicIP: string; nodeName: string; reserved: boolean }>)
    .map((l) => `${l.subnet} ${l.publicIP} ${l.nodeName} reserved=${l.reserved}`)
    .sort();
  const expected = [...subnets].map(([i, subnet]) => `${subnet} ${cluster.node(i).underlayIp} ${cluster.node(i).ns.name} reserved=false`).sort();
  assert.deepEqual(listed, expected, '`lease list` shows every node on its old subnet');
  assert.deepEqual(JSON.parse(await cluster.cli(['config', 'get', '--json'])), initialConfig, '`config get` shows the original config');
}

/** The subnets `index` lists as peers, and which of them are unconfirmed. */
async function peersOf(index: number): Promise<{ subnets: string[]; unconfirmed: string[] }> {
  const peers = (await cluster.daemon(index).status()).peers;
  return { subnets: peers.map((p) => p.subnet).sort(), unconfirmed: peers.filter((p) => p.unconfirmedSince !== undefined).map((p) => p.subnet) };
}

/** Waits until node `index` lists exactly the other `nodes` as peers, all confirmed. */
async function waitForConfirmedPeers(index: number, nodes: readonly number[], timeoutMs: number): Promise<void> {
  const expected = nodes.filter((i) => i !== index).map((i) => subnet.get(i)!).sort();
  await waitFor(`node ${index} to list ${expected.join(', ')} as confirmed peers`, async () => {
    const { subnets, unconfirmed } = await peersOf(index);
    return unconfirmed.length === 0 && subnets.join(' ') === expected.join(' ');
  }, timeoutMs);
}

/** When node `index` logged `msg` about `about` (a subnet) after `since`; undefined if it did not. */
async function loggedAt(index: number, msg: string, about: string, since: number): Promise<number | undefined> {
  return (await daemonLog(cluster.daemon(index))).find((l) => l.msg === msg && l['subnet'] === about && l.time >= since)?.time;
}

/** Waits until each of `nodes` has logged `msg` after `since`; resolves with the latest of those times. */
async function waitForEach(nodes: readonly number[], msg: string, since: number, timeoutMs: number): Promise<number> {
  let last = since;
  for (const i of nodes) {
    const line = await waitFor(`node ${i} to log "${msg}"`, async () => (await linesSince(i, msg, since))[0], Math.max(0, since + timeoutMs - Date.now()));
    last = Math.max(last, line.time);
  }
  return last;
}

/** The latest time any of `nodes` confirmed another of them after `since` ('peer re-asserted its lease'); throws naming a confirmation that is missing. */
async function lastConfirmation(nodes: readonly number[], since: number): Promise<number> {
  let last = since;
  for (const i of nodes) {
    for (const j of nodes) {
      if (i === j) continue;
      const at = await loggedAt(i, 'peer re-asserted its lease', subnet.get(j)!, since);
      assert.ok(at !== undefined, `node ${i} logged that node ${j}'s peer (${subnet.get(j)}) re-asserted its lease`);
      last = Math.max(last, at);
    }
  }
  return last;
}

const linesSince = async (index: number, msg: string, since: number) => (await daemonLog(cluster.daemon(index))).filter((l) => l.msg === msg && l.time >= since);

/**
 * What every store loss must leave behind, on `nodes`: each daemon noticed
 * it (watch and feed log it, /status counts a reset), put its own lease back,
 * and one of them put the config back.
 */
async function assertLossHandled(t: TestContext, nodes: readonly number[], since: number, before: Map<number, StoreCounts>): Promise<void> {
  let configStored = 0;
  for (const i of nodes) {
    const status = await cluster.daemon(i).status();
    t.diagnostic(`node ${i}: store ${JSON.stringify(status.store)}`);
    assert.ok((await linesSince(i, LOST_MESSAGES.watch, since)).length > 0, `node ${i}'s watch logged "${LOST_MESSAGES.watch}"`);
    assert.ok((await linesSince(i, LOST_MESSAGES.feed, since)).length > 0, `node ${i}'s feed logged "${LOST_MESSAGES.feed}"`);
    assert.ok(status.store!.resets > before.get(i)!.resets, `node ${i} counted the reset on /status (store.resets ${status.store!.resets})`);
    assert.ok(status.store!.leaseRestored > before.get(i)!.leaseRestored, `node ${i} counted putting its lease back on /status (store.leaseRestored ${status.store!.leaseRestored})`);
    assert.ok((await linesSince(i, LOST_MESSAGES.keeper, since)).length > 0, `node ${i}'s keeper logged "${LOST_MESSAGES.keeper}"`);
    assert.equal(status.state, 'running', `node ${i} is running`);
    assert.equal(status.store!.connected, true, `node ${i} is connected to the store`);
    configStored += (await linesSince(i, LOST_MESSAGES.config, since)).length;
  }
  assert.ok(configStored >= 1, `a node logged "${LOST_MESSAGES.config}"`);
}

interface StoreCounts {
  readonly resets: number;
  readonly leaseRestored: number;
}

async function storeCountsOf(nodes: readonly number[]): Promise<Map<number, StoreCounts>> {
  const counts = new Map<number, StoreCounts>();
  for (const i of nodes) counts.set(i, (await cluster.daemon(i).status()).store!);
  return counts;
}

function assertPingsHeld(t: TestContext, pings: readonly PingRecord[], what: string): void {
  for (const ping of pings) {
    t.diagnostic(`${what}: ${describePing(ping)}, ${lostPings(ping)} lost`);
    assert.ok(ping.transmitted > 0, describePing(ping));
    assert.ok(lostPings(ping) <= MAX_LOST_PINGS, `${what}: ${lostPings(ping)} pings lost (at most ${MAX_LOST_PINGS}): ${describePing(ping)}`);
    assert.ok(longestGap(ping) < 1_000, `${what}: a silence of ${longestGap(ping)} ms: ${describePing(ping)}`);
  }
}

const pingBothWays = async (a: number, b: number) => {
  for (const [from, to] of [[a, b], [b, a]] as const) {
    await cluster.pod(from).ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', cluster.pod(to).ip]);
  }
};

/** A node joins after the loss: it gets a subnet nobody holds, the others pick it up, and its pod talks to theirs both ways. */
async function joinAndTalk(t: TestContext, others: readonly number[]): Promise<number> {
  const joinedAt = Date.now();
  const node = await cluster.joinNode();
  const index = node.index;
  const held = await learnSubnet(index);
  assert.ok(!others.some((i) => subnet.get(i) === held), `node ${index} got ${held}, a subnet no other node holds`);
  const ready = Date.now();
  for (const i of others) {
    const at = await waitFor(`node ${i} to add node ${index}'s peer`, () => loggedAt(i, 'peer added', held, joinedAt), 10_000);
    assert.ok(at - ready < 1_000, `node ${i} added the new peer ${at - ready} ms after the new node was ready`);
  }
  for (const i of [...others, index]) await waitForConfirmedPeers(i, [...others, index], 10_000);
  for (const i of others) await pingBothWays(index, i);
  t.diagnostic(`node ${index} joined on ${held}: ready ${ready - joinedAt} ms after its start; its pod then talked to every other pod both ways`);
  return index;
}

/** What a watch logs when it catches up after a gap rather than a reset: evidence when a node missed a loss. */
const GAP_MESSAGES = ['the store is behind this watch (changes lost in a failover); listing again', 'the change stream no longer holds what this watch missed; listing again'];

/**
 * After a loss at `lostAt` (`since`: just before it began): the store holds
 * the config and every lease on its old subnet within `boundMs`; every node
 * noticed the loss, re-asserted its lease, and confirmed every other node;
 * `lease list` and `config get` show it all.
 */
async function assertRebuilt(t: TestContext, nodes: readonly number[], since: number, lostAt: number, boundMs: number, what: string, before: Map<number, StoreCounts>): Promise<void> {
  const subnets = subnetsOf(nodes);
  const backAt = await waitForStore(subnets, boundMs);
  t.diagnostic(`${what}: the config and all ${nodes.length} leases were back ${backAt - lostAt} ms later (bound ${boundMs} ms); epoch now ${await epoch()}`);
  const missed: number[] = [];
  for (const i of nodes) {
    const noticed = await waitForEach([i], LOST_MESSAGES.watch, since, lostAt + boundMs - since).catch(() => undefined);
    if (noticed !== undefined) {
      t.diagnostic(`${what}: node ${i} noticed the loss ${noticed - lostAt} ms later`);
      continue;
    }
    missed.push(i);
    const log = await daemonLog(cluster.daemon(i));
    const seen = log.filter((l) => l.time >= since && (GAP_MESSAGES.includes(l.msg) || l.msg === 'lease watch reconnected and caught up' || l.msg === LOST_MESSAGES.keeper));
    t.diagnostic(`${what}: node ${i} did NOT notice the loss within ${boundMs} ms; its watch and keeper logged: ${JSON.stringify(seen.map((l) => ({ msg: l.msg, seq: l['seq'], epoch: l['epoch'], reason: l['reason'] })))}`);
  }
  assert.deepEqual(missed, [], `${what}: every node noticed that the store lost its data (log "${LOST_MESSAGES.watch}")`);
  for (const i of nodes) await waitForConfirmedPeers(i, nodes, boundMs);
  const confirmedAt = await lastConfirmation(nodes, since);
  t.diagnostic(`${what}: every node had confirmed every other as a peer ${confirmedAt - lostAt} ms later`);
  assert.ok(confirmedAt - lostAt <= boundMs, `${what}: peers confirmed ${confirmedAt - lostAt} ms after the loss (bound ${boundMs} ms)`);
  await assertStoreShows(subnets);
  await assertLossHandled(t, nodes, since, before);
}

/**
 * A store loss under traffic: pings every 200 ms between neighbouring pods,
 * a paced TCP transfer, `lose` empties the store (resolving when it is
 * reachable again), and then everything must be as before within `boundMs`.
 * The traffic figures are reported whether or not the checks pass.
 */
async function survivesLoss(
  t: TestContext,
  nodes: readonly number[],
  loss: {
    what: string;
    /** Empties the store; resolves with the instant it did (a flush) or was reachable again, empty (a restart). */
    lose: () => Promise<number>;
    boundMs: number;
    seconds: number;
    afterTraffic?: (pings: readonly PingRecord[]) => void;
  },
): Promise<void> {
  const { what, lose, boundMs, seconds } = loss;
  const pids = pidsOf(nodes);
  const counts = await storeCountsOf(nodes);
  t.diagnostic(`${what}: epoch before ${await epoch()}`);
  const pings = pingRing(cluster, nodes, seconds);
  const transfer = pacedTcpTransfer(cluster, cluster.pod(nodes[0]!), cluster.pod(nodes[1]!), 32 * 1024 * 1024, seconds - 6);
  await sleep(3_000);

  const since = Date.now();
  let failure: Error | undefined;
  try {
    const lostAt = await lose();
    await assertRebuilt(t, nodes, since, lostAt, boundMs, what, counts);
  } catch (err) {
    failure = err as Error;
  }

  const moved = await transfer;
  const done = await Promise.all(pings);
  t.diagnostic(`${what}: TCP ${moved.received.bytes} bytes in ${moved.ms} ms, longest stall ${moved.received.longestStallMs} ms, SHA-256 ${moved.received.sha256 === moved.sent.sha256 ? 'matches' : 'DIFFERS'}`);
  loss.afterTraffic?.(done);
  if (failure !== undefined) t.diagnostic(`${what}: FAILED: ${failure.message}`);
  assert.equal(moved.received.bytes, moved.sent.bytes, 'every byte arrived');
  assert.equal(moved.received.sha256, moved.sent.sha256, 'the SHA-256 matches');
  assertPingsHeld(t, done, what);
  assert.deepEqual(pidsOf(nodes), pids, 'no daemon restarted');
  for (const i of nodes) assert.equal(cluster.daemon(i).process.exitCode, null, `node ${i}'s daemon is running`);
  if (failure !== undefined) throw failure;
}

test('Redis restarted without persistence under traffic: no pod packet lost, no daemon exits, leases and config back within seconds, a new node joins', async (t) => {
  await survivesLoss(t, [1, 2, 3], {
    what: 'Redis restart',
    lose: async () => {
      await cluster.sandbox.stopRedis();
      await cluster.sandbox.startRedis({ persistence: false });
      return Date.now();
    },
    boundMs: BACK_AFTER_RESTART_MS,
    seconds: 16,
  });
  await joinAndTalk(t, [1, 2, 3]);
});

test('FLUSHALL under traffic: no pod packet lost, no daemon exits, leases and config back within seconds, a new node joins', async (t) => {
  await survivesLoss(t, [1, 2, 3, 4], { what: 'FLUSHALL', lose: flush, boundMs: BACK_AFTER_FLUSH_MS, seconds: 16 });
  await joinAndTalk(t, [1, 2, 3, 4]);
});

/** Revokes node `index`'s lease with the CLI: its daemon must exit non-zero, leave no TUN, and drop out of the others' tables at once. */
async function revokeStopsNode(t: TestContext, index: number, others: readonly number[], what: string): Promise<void> {
  const daemon = cluster.daemon(index);
  const revoked = subnet.get(index)!;
  const revokedAt = Date.now();
  await cluster.cli(['lease', 'revoke', revoked, '--yes']);
  const code = await Promise.race([exited(daemon.process), sleep(15_000).then(() => 'still running' as const)]);
  t.diagnostic(`${what}: node ${index}'s daemon ended with ${code} ${Date.now() - revokedAt} ms after the revoke`);
  assert.notEqual(code, 'still running', `node ${index}'s daemon stopped`);
  assert.notEqual(code, 0, `node ${index}'s daemon exited non-zero`);
  const log = await daemonLog(daemon);
  assert.ok(log.some((l) => l.msg === 'lease lost' && l.time >= revokedAt), `node ${index}'s keeper logged "lease lost"`);
  assert.ok(log.some((l) => l.msg === 'stopping' && String(l['reason']).startsWith(`lease ${revoked} lost`)), `node ${index} logged why it stops`);
  assert.equal((await leftoversIn(cluster.node(index))).tun, false, `node ${index} has no TUN left`);
  let dropped = revokedAt;
  for (const i of others) {
    const at = await waitFor(`node ${i} to drop the revoked ${revoked}`, () => loggedAt(i, 'peer removed', revoked, revokedAt), 5_000);
    dropped = Math.max(dropped, at);
    assert.ok(!(await peersOf(i)).subnets.includes(revoked), `node ${i} no longer lists ${revoked}`);
  }
  t.diagnostic(`${what}: every other node dropped ${revoked} at once: within ${dropped - revokedAt} ms of the revoke`);
  assert.ok(dropped - revokedAt < 2_000, `${what}: the revoked peer was dropped ${dropped - revokedAt} ms after the revoke, not at once`);
  const listed = JSON.parse(await cluster.cli(['lease', 'list', '--json'])).leases as Array<{ subnet: string }>;
  assert.ok(!listed.some((l) => l.subnet === revoked), `${revoked} is no longer listed`);
  subnet.delete(index);
}

test("an operator's lease revoke still stops the node: in normal times, and after a store loss", async (t) => {
  await revokeStopsNode(t, 4, [1, 2, 3, 5], 'normal times');

  const subnets = subnetsOf([1, 2, 3, 5]);
  const epochBefore = await epoch();
  const flushedAt = await flush();
  await waitForStore(subnets, BACK_AFTER_FLUSH_MS);
  t.diagnostic(`after FLUSHALL the leases were back in ${Date.now() - flushedAt} ms; epoch ${epochBefore} -> ${await epoch()}`);
  await revokeStopsNode(t, 5, [1, 2, 3], 'after a store loss');
  for (const i of [1, 2, 3]) assert.equal(cluster.daemon(i).process.exitCode, null, `node ${i}'s daemon is running`);
});

test('Redis down for 30 s and back empty: pods talk throughout, no daemon exits, leases and config back within seconds', async (t) => {
  const nodes = [1, 2, 3];
  let downAt = 0;
  let upAt = 0;
  await survivesLoss(t, nodes, {
    what: '30 s outage',
    lose: async () => {
      await cluster.sandbox.stopRedis();
      downAt = Date.now();
      await sleep(OUTAGE_MS / 2);
      for (const i of nodes) {
        const status = await cluster.daemon(i).status();
        assert.equal(status.store!.connected, false, `node ${i} sees Redis down`);
        assert.equal(status.peers.length, nodes.length - 1, `node ${i} forwards with its known peers`);
      }
      await sleep(downAt + OUTAGE_MS - Date.now());
      await cluster.sandbox.startRedis({ persistence: false });
      upAt = Date.now();
      t.diagnostic(`Redis was down for ${upAt - downAt} ms and came back empty`);
      return upAt;
    },
    boundMs: BACK_AFTER_OUTAGE_MS,
    seconds: OUTAGE_MS / 1000 + 25,
    afterTraffic: (pings) => {
      for (const ping of pings) t.diagnostic(`${ping.from} -> ${ping.to}: ${repliesBetween(ping, downAt, upAt)} replies while Redis was down (${Math.floor((upAt - downAt) / 200)} sent)`);
    },
  });
});

test('a peer that does not re-assert its lease is dropped after --peer-grace, the others stay confirmed', async (t) => {
  // Nodes 1 and 2 with an 8 s grace (a restart keeps the lease); node 3 stops (SIGTERM keeps its lease too).
  const subnets = subnetsOf([1, 2, 3]);
  for (const i of [1, 2]) {
    await cluster.daemon(i).stop();
    await cluster.startDaemon(cluster.node(i), ['--peer-grace', `${PEER_GRACE_MS / 1000}s`]);
  }
  for (const i of [1, 2]) assert.equal(await learnSubnet(i), subnets.get(i), `node ${i} kept its subnet over the restart`);
  for (const i of [1, 2]) await waitForConfirmedPeers(i, [1, 2, 3], 10_000);
  const gone = subnets.get(3)!;
  assert.equal(await cluster.daemon(3).stop(), 0, 'SIGTERM is a clean stop');
  const listed = JSON.parse(await cluster.cli(['lease', 'list', '--json'])).leases as Array<{ subnet: string }>;
  assert.ok(listed.some((l) => l.subnet === gone), 'the stopped node kept its lease');
  const pings = pingRing(cluster, [1, 2], PEER_GRACE_MS / 1000 + 8);
  await sleep(1_000);

  const flushedAt = await flush();
  await waitForStore(new Map([[1, subnets.get(1)!], [2, subnets.get(2)!]]), BACK_AFTER_FLUSH_MS);
  t.diagnostic(`nodes 1 and 2 re-asserted their leases ${Date.now() - flushedAt} ms after FLUSHALL`);
  for (const i of [1, 2]) {
    const other = subnets.get(i === 1 ? 2 : 1)!;
    await waitFor(`node ${i} to confirm ${other}`, async () => !(await peersOf(i)).unconfirmed.includes(other), BACK_AFTER_FLUSH_MS);
  }
  const checkedAt = Date.now();
  for (const i of [1, 2]) {
    const peers = (await cluster.daemon(i).status()).peers;
    const stopped = peers.find((p) => p.subnet === gone);
    assert.ok(checkedAt - flushedAt < PEER_GRACE_MS - 1_000, `checked before the grace period ran out (${checkedAt - flushedAt} ms)`);
    assert.ok(stopped !== undefined, `node ${i} still has the stopped node's peer ${checkedAt - flushedAt} ms after the flush`);
    assert.ok(stopped.unconfirmedSince !== undefined && stopped.unconfirmedSince >= flushedAt - 100, `node ${i} shows the stopped node's peer as unconfirmed since the flush: ${JSON.stringify(stopped)}`);
    for (const peer of peers.filter((p) => p.subnet !== gone)) assert.equal(peer.unconfirmedSince, undefined, `node ${i}: the running node's peer ${peer.subnet} is confirmed`);
  }

  for (const i of [1, 2]) {
    const droppedAt = await waitFor(`node ${i} to drop the stopped node`, () => loggedAt(i, 'peer dropped: its lease was not re-asserted within the grace period', gone, flushedAt), PEER_GRACE_MS + 5_000);
    assert.ok(!(await peersOf(i)).subnets.includes(gone), `node ${i} no longer lists ${gone}`);
    const after = droppedAt - flushedAt;
    t.diagnostic(`node ${i} dropped the stopped node's peer ${after} ms after FLUSHALL (grace ${PEER_GRACE_MS} ms)`);
    assert.ok(after >= PEER_GRACE_MS && after <= PEER_GRACE_MS + 1_000, `node ${i} dropped it after ${after} ms, not after the ${PEER_GRACE_MS} ms grace`);
    const dropped = await linesSince(i, 'peer dropped: its lease was not re-asserted within the grace period', flushedAt);
    assert.deepEqual(dropped.map((l) => l['subnet']), [gone], `node ${i} logged the drop of ${gone} only`);
    assert.deepEqual((await peersOf(i)).unconfirmed, [], `node ${i}'s remaining peers are confirmed`);
  }
  assertPingsHeld(t, await Promise.all(pings), 'pods on the running nodes');
  const after = (JSON.parse(await cluster.cli(['lease', 'list', '--json'])).leases as Array<{ subnet: string }>).map((l) => l.subnet).sort();
  assert.deepEqual(after, [subnets.get(1)!, subnets.get(2)!].sort(), 'only the running nodes hold leases');

  // The stopped node comes back on its previous subnet (subnet.env), and its pod works again.
  await cluster.startDaemon(cluster.node(3));
  assert.equal(await learnSubnet(3), gone, 'node 3 got its old subnet back');
  for (const i of [1, 2, 3]) await waitForConfirmedPeers(i, [1, 2, 3], 10_000);
  await pingBothWays(1, 3);
});

test('a daemon that starts while Redis is down, or holds no config, waits and says why, then becomes ready', async (t) => {
  // Redis down: node 4 (its lease was revoked in test 3) starts again.
  await cluster.sandbox.stopRedis();
  const startedAt = Date.now();
  const waiting = cluster.spawnDaemon(cluster.node(4));
  const said = await waitFor('/readyz to say why node 4 is not ready', async () => {
    const answer = await waiting.readyz();
    if (waiting.process.exitCode !== null) throw new Error(`node 4's daemon exited with ${waiting.process.exitCode}`);
    return answer.status === 503 && /Redis/.test(answer.body) ? answer.body.trim() : undefined;
  }, 15_000);
  t.diagnostic(`Redis down: /readyz answered 503 "${said}" ${Date.now() - startedAt} ms after the start`);
  assert.match(said, /^not ready: .*Redis.*198\.18\.0\.254:6379/);
  const status = await waiting.status();
  assert.equal(status.state, 'waiting');
  assert.match(status.reason ?? '', /Redis/);
  const logged = (await daemonLog(waiting)).filter((l) => l.msg === 'waiting for the lease store');
  assert.ok(logged.length > 0, 'it logged "waiting for the lease store"');
  assert.match(String(logged[0]!['err']), /Redis/, 'the log line says why');
  await sleep(2_000);
  assert.equal(waiting.process.exitCode, null, 'it did not exit');
  assert.equal((await waiting.readyz()).status, 503, 'still not ready');

  await cluster.sandbox.startRedis({ persistence: false });
  const upAt = Date.now();
  await waitFor('node 4 to become ready', async () => {
    if (waiting.process.exitCode !== null) throw new Error(`node 4's daemon exited with ${waiting.process.exitCode}`);
    return (await waiting.readyz()).status === 200;
  }, 30_000);
  t.diagnostic(`Redis back (empty): node 4 was ready ${Date.now() - upAt} ms later (${(await daemonLog(waiting)).filter((l) => l.msg === 'waiting for the lease store').length} waits logged)`);
  await waitFor('the store to hold the config again', async () => (await redis('EXISTS', KEYS.config)).trim() === '1', BACK_AFTER_RESTART_MS);
  await learnSubnet(4);
  for (const i of [1, 2, 3, 4]) await waitForConfirmedPeers(i, [1, 2, 3, 4], 20_000);
  await pingBothWays(4, 1);

  // An empty Redis with no config at all: every daemon stopped, the store flushed, node 5 starts.
  for (const i of [1, 2, 3, 4]) assert.equal(await cluster.daemon(i).stop(), 0);
  await flush();
  const emptyAt = Date.now();
  const configless = cluster.spawnDaemon(cluster.node(5));
  const reason = await waitFor('/readyz to say node 5 has no config', async () => {
    const answer = await configless.readyz();
    if (configless.process.exitCode !== null) throw new Error(`node 5's daemon exited with ${configless.process.exitCode}`);
    return answer.status === 503 && /config/.test(answer.body) ? answer.body.trim() : undefined;
  }, 15_000);
  t.diagnostic(`no config: /readyz answered 503 "${reason}" ${Date.now() - emptyAt} ms after the start`);
  assert.match(reason, /^not ready: no network config is stored/);
  const noConfigLog = (await daemonLog(configless)).filter((l) => l.msg === 'waiting for the lease store');
  assert.ok(noConfigLog.some((l) => /network config/.test(String(l['err']))), 'it logged why it waits');
  await sleep(2_000);
  assert.equal(configless.process.exitCode, null, 'it did not exit');
  assert.equal((await configless.status()).state, 'waiting');

  await cluster.cli(['config', 'init', '--network', NETWORK]);
  const initAt = Date.now();
  await waitFor('node 5 to become ready', async () => {
    if (configless.process.exitCode !== null) throw new Error(`node 5's daemon exited with ${configless.process.exitCode}`);
    return (await configless.readyz()).status === 200;
  }, 30_000);
  t.diagnostic(`config init: node 5 was ready ${Date.now() - initAt} ms later`);
  const listed = JSON.parse(await cluster.cli(['lease', 'list', '--json'])).leases as Array<{ publicIP: string }>;
  assert.deepEqual(listed.map((l) => l.publicIP), [cluster.node(5).underlayIp]);
});
