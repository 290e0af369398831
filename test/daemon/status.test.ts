// The node's status: the GET /status document, /readyz and the metric
// sources, built from the parts the start-up steps hand over (plain fakes
// here), read when asked rather than copied.
import { createRequire } from 'node:module';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { emptyCounters, PeerEntry, type CountersSnapshot, type Peer } from '../../daemon/dataplane/index.js';
import { createMetrics, EVENT_LOOP_SAMPLE_MS } from '../../daemon/http/metrics.js';
import { startHttpServer } from '../../daemon/http/server.js';
import type { Lease } from '../../daemon/lease/index.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { parseCidr6 } from '../../daemon/net/ipv6.js';
import type { PeerView } from '../../daemon/node/peers.js';
import { NodeStatus, type NodeInfo, type StatusDocument } from '../../daemon/node/status.js';

const INFO: NodeInfo = { name: 'node-b', publicIP: '198.18.0.2', iface: 'eth0', subnet: '10.244.3.0/24', network: '10.244.0.0/16', tun: 'flannel0', mtu: 1472, port: 8285 };

function leaseExpiringAt(expiresAt: number | null): Lease {
  return { subnet: '10.244.3.0/24', cidr: parseCidr('10.244.3.0/24'), publicIP: '198.18.0.2', nodeName: 'node-b', backendType: 'udp', backendData: {}, expiresAt };
}

function countersWith(tunPacketsRead: number): CountersSnapshot {
  return { ...emptyCounters(), tunPacketsRead };
}

const PEER: Peer = { subnet: parseCidr('10.244.7.0/24'), endpoint: { address: '198.18.0.3', ip: parseIPv4('198.18.0.3'), port: 8285 } };

/** A data plane as the status sees it: its counters and its peer table, whose entries carry their traffic. */
function fakePlane(peers: Peer[], counters: () => CountersSnapshot = () => countersWith(0)) {
  const entries = peers.map((peer) => new PeerEntry(peer));
  return { snapshot: counters, peerTable: { size: entries.length, peers: () => entries.values() } };
}

/** The version and the kernel's routes, fixed: the status reads both from outside (package.json, /proc). */
const VERSION = '9.8.7';
const ROUTES = ['10.244.0.0/16'];
const fixed = { version: VERSION, routesThrough: (device: string) => (device === INFO.tun ? ROUTES : []) };
const NO_TRAFFIC = { packetsSent: 0, bytesSent: 0, packetsReceived: 0, bytesReceived: 0, drops: 0, lastReceivedAt: null };

function clock(startMs = 1_000_000) {
  const c = { ms: startMs, now: () => c.ms };
  return c;
}

test('before start-up has made anything: starting, not ready, nothing to show', () => {
  const time = clock();
  const status = new NodeStatus({ ...fixed, now: time.now });
  time.ms += 2_400;
  assert.deepEqual(status.readiness(), { ready: false, reason: 'starting' });
  const doc: StatusDocument = status.status();
  assert.deepEqual(doc, { version: VERSION, state: 'starting', node: null, lease: null, store: null, peers: [], counters: null, uptimeSeconds: 2 });
  assert.deepEqual(status.counters(), emptyCounters());
  assert.equal(status.peers(), 0);
  assert.equal(status.leaseExpiry(), undefined);
  assert.equal(status.storeConnected(), undefined);
  assert.equal(status.storeResets(), undefined);
  assert.equal(status.peersUnconfirmed(), 0);
  assert.equal(status.logLinesDropped(), 0);
});

test('lease mode: each step adds its part, and the document reads their current state', () => {
  const time = clock();
  const status = new NodeStatus({ ...fixed, now: time.now, logLinesDropped: () => 7 });
  const store = { address: 'redis://10.0.0.5:6379', connected: false };
  status.storeOpened(store);
  status.waiting('Redis unreachable at redis://10.0.0.5:6379: ECONNREFUSED');
  assert.deepEqual(status.readiness(), { ready: false, reason: 'Redis unreachable at redis://10.0.0.5:6379: ECONNREFUSED' });
  assert.equal(status.status().reason, 'Redis unreachable at redis://10.0.0.5:6379: ECONNREFUSED');
  assert.equal(status.status().state, 'waiting');
  assert.equal(status.storeConnected(), false);

  store.connected = true;
  const acquired = leaseExpiringAt(5_000_000);
  status.leaseAcquired({ lease: acquired });
  assert.equal(status.status().lease?.expiresAt, 5_000_000);
  let read = 10;
  status.dataPathOpened(INFO, fakePlane([PEER], () => countersWith(read)));

  const keeper: { lease: Lease; renewMarginMs: number; renewalFailure?: { since: number; attempts: number; error: string } } = { lease: acquired, renewMarginMs: 3_600_000 };
  const views: PeerView[] = [{ subnet: '10.244.7.0/24', endpoint: '198.18.0.3:8285', node: 'node-c', unconfirmedSince: 4_000_000 }];
  const skipped = [{ subnet: '10.244.9.0/24', node: 'node-d', reason: 'backend vxlan is not udp' }];
  const feed = { view: () => views, unconfirmedCount: 1, leaseCount: 3, skippedLeases: () => skipped };
  const watch = { stats: { delivered: 3, resyncs: 2, resets: 1, reconnects: 0, corruptEvents: 0 } };
  status.following({ keeper, feed, watch });
  status.running();
  // A renewal replaces the keeper's lease; the status shows it without being told.
  keeper.lease = leaseExpiringAt(9_000_000);
  status.leaseRestored();
  status.leaseRestored();
  read = 42;
  time.ms += 61_000;

  assert.deepEqual(status.readiness(), { ready: true });
  assert.deepEqual(status.status(), {
    version: VERSION,
    state: 'running',
    node: { ...INFO, routes: ROUTES },
    lease: { subnet: '10.244.3.0/24', publicIP: '198.18.0.2', nodeName: 'node-b', expiresAt: 9_000_000, renewMarginMs: 3_600_000 },
    store: { address: 'redis://10.0.0.5:6379', connected: true, resets: 1, leaseRestored: 2, resyncs: 2, leases: 3 },
    peers: [{ ...views[0]!, traffic: NO_TRAFFIC }],
    skippedLeases: skipped,
    counters: countersWith(42),
    uptimeSeconds: 61,
  });
  assert.equal(status.ready(), true);
  assert.equal(status.leases(), 3);
  assert.equal(status.leaseRenewalFailing(), false);
  keeper.renewalFailure = { since: 8_000_000, attempts: 3, error: 'Redis unreachable' };
  assert.deepEqual(status.status().lease?.renewalFailure, keeper.renewalFailure);
  assert.equal(status.leaseRenewalFailing(), true);
  delete keeper.renewalFailure;
  assert.equal(status.leaseExpiry(), 9_000);
  assert.equal(status.storeConnected(), true);
  assert.equal(status.storeResets(), 1);
  assert.equal(status.peers(), 1);
  assert.equal(status.peersUnconfirmed(), 1);
  assert.equal(status.counters().tunPacketsRead, 42);
  assert.equal(status.logLinesDropped(), 7);

  keeper.lease = leaseExpiringAt(null);
  assert.equal(status.leaseExpiry(), 0, 'a reservation never expires');
});

test('static mode: no lease, no store, and the peers come from the peer table', () => {
  const status = new NodeStatus(fixed);
  status.dataPathOpened(INFO, fakePlane([PEER]));
  status.running();
  const doc = status.status();
  assert.equal(doc.lease, null);
  assert.equal(doc.store, null);
  assert.deepEqual(doc.peers, [{ subnet: '10.244.7.0/24', endpoint: '198.18.0.3:8285', node: '', traffic: NO_TRAFFIC }]);
  assert.deepEqual(doc.counters, countersWith(0));
  assert.equal(status.storeResets(), undefined);
  assert.equal(status.leaseExpiry(), undefined);
});

test('GET /status serves the document and /readyz the readiness of the same object', async () => {
  const status = new NodeStatus(fixed);
  const server = await startHttpServer(status, { host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), metrics: createMetrics(status) });
  try {
    const base = `http://127.0.0.1:${server.port}`;
    assert.equal((await fetch(`${base}/readyz`)).status, 503);
    status.dataPathOpened(INFO, fakePlane([PEER]));
    status.running();
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const response = await fetch(`${base}/status`);
    assert.equal(response.headers.get('content-type'), 'application/json');
    assert.deepEqual(await response.json(), JSON.parse(JSON.stringify(status.status())));
  } finally {
    await server.close();
  }
});

test('dual-stack: the node, its lease and its peers show their IPv6 subnets, and the lease its IPv6 underlay address', () => {
  const status = new NodeStatus(fixed);
  const lease: Lease = { ...leaseExpiringAt(5_000_000), publicIPv6: 'fd00:198:18::2' };
  status.leaseAcquired({ lease }, parseCidr6('fd00:10:244:3::/64'));
  const info: NodeInfo = { ...INFO, ipv6Subnet: 'fd00:10:244:3::/64', ipv6Network: 'fd00:10:244::/48' };
  status.dataPathOpened(info, fakePlane([{ ...PEER, subnet6: parseCidr6('fd00:10:244:7::/64') }]));
  const doc = status.status();
  assert.deepEqual(doc.node, { ...info, routes: ROUTES });
  assert.deepEqual(doc.lease, { subnet: '10.244.3.0/24', ipv6Subnet: 'fd00:10:244:3::/64', publicIP: '198.18.0.2', publicIPv6: 'fd00:198:18::2', nodeName: 'node-b', expiresAt: 5_000_000 });
  assert.deepEqual(doc.peers, [{ subnet: '10.244.7.0/24', ipv6Subnet: 'fd00:10:244:7::/64', endpoint: '198.18.0.3:8285', node: '', traffic: NO_TRAFFIC }]);
});

test('/metrics: the version, readiness, renewal failure and lease count; the per-peer series only with --peer-metrics', async () => {
  const status = new NodeStatus(fixed);
  const plane = fakePlane([PEER]);
  status.storeOpened({ address: 'redis://10.0.0.5:6379', connected: true });
  const keeper: { lease: Lease; renewalFailure?: { since: number; attempts: number; error: string } } = { lease: leaseExpiringAt(5_000_000) };
  status.leaseAcquired(keeper);
  status.dataPathOpened(INFO, plane);
  const views: PeerView[] = [{ subnet: '10.244.7.0/24', endpoint: '198.18.0.3:8285', node: 'node-c' }];
  status.following({ keeper, feed: { view: () => views, unconfirmedCount: 0, leaseCount: 2, skippedLeases: () => [] }, watch: { stats: { delivered: 0, resyncs: 0, resets: 0, reconnects: 0, corruptEvents: 0 } } });
  const traffic = [...plane.peerTable.peers()][0]!;
  Object.assign(traffic, { packetsSent: 11, bytesSent: 1100, packetsReceived: 7, bytesReceived: 700, drops: 2, lastReceivedAt: 1_700_000_000_500 });

  const plain = await createMetrics(status).scrape();
  assert.match(plain, /^miniflannel_build_info\{version="9\.8\.7"\} 1$/m);
  assert.match(plain, /^miniflannel_ready 0$/m, 'waiting for the first listing');
  assert.match(plain, /^miniflannel_lease_renewal_failing 0$/m);
  assert.match(plain, /^miniflannel_leases 2$/m);
  assert.doesNotMatch(plain, /miniflannel_peer_/, 'per-peer series cost six per peer: off unless asked for');

  status.running();
  keeper.renewalFailure = { since: 1, attempts: 1, error: 'Redis unreachable' };
  const withPeers = await createMetrics(status, { peerMetrics: true }).scrape();
  assert.match(withPeers, /^miniflannel_ready 1$/m);
  assert.match(withPeers, /^miniflannel_lease_renewal_failing 1$/m);
  const labels = '{peer_subnet="10.244.7.0/24",peer_node="node-c"}';
  for (const [name, value] of [
    ['miniflannel_peer_sent_packets_total', '11'],
    ['miniflannel_peer_sent_bytes_total', '1100'],
    ['miniflannel_peer_received_packets_total', '7'],
    ['miniflannel_peer_received_bytes_total', '700'],
    ['miniflannel_peer_dropped_packets_total', '2'],
    ['miniflannel_peer_last_received_timestamp_seconds', '1700000000.5'],
  ]) {
    assert.ok(withPeers.includes(`\n${name}${labels} ${value}\n`), `${name}${labels} ${value}`);
  }
});

test('/metrics in static mode: no lease or store series, which would read as a store that is down', async () => {
  const status = new NodeStatus(fixed);
  status.dataPathOpened(INFO, fakePlane([PEER]));
  const text = await createMetrics(status, { leaseStore: false }).scrape();
  for (const name of ['lease_expiry_timestamp_seconds', 'lease_renewal_failing', 'leases', 'store_connected', 'store_resets_total', 'peers_unconfirmed']) {
    assert.doesNotMatch(text, new RegExp(`^miniflannel_${name} `, 'm'));
  }
  assert.match(text, /^miniflannel_peers 1$/m);
});

test("/metrics samples the event loop's lag once a second, not prom-client's 100 times, so an idle daemon is not woken for it", () => {
  const hooks = createRequire(import.meta.url)('node:perf_hooks') as typeof import('node:perf_hooks');
  const original = hooks.monitorEventLoopDelay;
  const resolutions: number[] = [];
  hooks.monitorEventLoopDelay = (options) => {
    resolutions.push(options?.resolution ?? 10);
    return original(options);
  };
  try {
    createMetrics(new NodeStatus(fixed));
  } finally {
    hooks.monitorEventLoopDelay = original;
  }
  assert.deepEqual(resolutions, [EVENT_LOOP_SAMPLE_MS]);
  assert.equal(EVENT_LOOP_SAMPLE_MS, 1000);
});
