// The node's status: the GET /status document, /readyz and the metric
// sources, built from the parts the start-up steps hand over (plain fakes
// here), read when asked rather than copied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { emptyCounters, type CountersSnapshot, type Peer } from '../../daemon/dataplane/index.js';
import { createMetrics } from '../../daemon/http/metrics.js';
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

/** A data plane as the status sees it: its counters and its peer table. */
function fakePlane(peers: Peer[], counters: () => CountersSnapshot = () => countersWith(0)) {
  return { snapshot: counters, peerTable: { size: peers.length, peers: () => peers.values() } };
}

function clock(startMs = 1_000_000) {
  const c = { ms: startMs, now: () => c.ms };
  return c;
}

test('before start-up has made anything: starting, not ready, nothing to show', () => {
  const time = clock();
  const status = new NodeStatus({ now: time.now });
  time.ms += 2_400;
  assert.deepEqual(status.readiness(), { ready: false, reason: 'starting' });
  const doc: StatusDocument = status.status();
  assert.deepEqual(doc, { state: 'starting', node: null, lease: null, store: null, peers: [], counters: null, uptimeSeconds: 2 });
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
  const status = new NodeStatus({ now: time.now, logLinesDropped: () => 7 });
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

  const keeper = { lease: acquired };
  const views: PeerView[] = [{ subnet: '10.244.7.0/24', endpoint: '198.18.0.3:8285', node: 'node-c', unconfirmedSince: 4_000_000 }];
  const feed = { view: () => views, unconfirmedCount: 1 };
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
    state: 'running',
    node: INFO,
    lease: { subnet: '10.244.3.0/24', publicIP: '198.18.0.2', nodeName: 'node-b', expiresAt: 9_000_000 },
    store: { address: 'redis://10.0.0.5:6379', connected: true, resets: 1, leaseRestored: 2, resyncs: 2 },
    peers: views,
    counters: countersWith(42),
    uptimeSeconds: 61,
  });
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
  const status = new NodeStatus();
  status.dataPathOpened(INFO, fakePlane([PEER]));
  status.running();
  const doc = status.status();
  assert.equal(doc.lease, null);
  assert.equal(doc.store, null);
  assert.deepEqual(doc.peers, [{ subnet: '10.244.7.0/24', endpoint: '198.18.0.3:8285', node: '' }]);
  assert.deepEqual(doc.counters, countersWith(0));
  assert.equal(status.storeResets(), undefined);
  assert.equal(status.leaseExpiry(), undefined);
});

test('GET /status serves the document and /readyz the readiness of the same object', async () => {
  const status = new NodeStatus();
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
  const status = new NodeStatus();
  const lease: Lease = { ...leaseExpiringAt(5_000_000), publicIPv6: 'fd00:198:18::2' };
  status.leaseAcquired({ lease }, parseCidr6('fd00:10:244:3::/64'));
  const info: NodeInfo = { ...INFO, ipv6Subnet: 'fd00:10:244:3::/64', ipv6Network: 'fd00:10:244::/48' };
  status.dataPathOpened(info, fakePlane([{ ...PEER, subnet6: parseCidr6('fd00:10:244:7::/64') }]));
  const doc = status.status();
  assert.deepEqual(doc.node, info);
  assert.deepEqual(doc.lease, { subnet: '10.244.3.0/24', ipv6Subnet: 'fd00:10:244:3::/64', publicIP: '198.18.0.2', publicIPv6: 'fd00:198:18::2', nodeName: 'node-b', expiresAt: 5_000_000 });
  assert.deepEqual(doc.peers, [{ subnet: '10.244.7.0/24', ipv6Subnet: 'fd00:10:244:7::/64', endpoint: '198.18.0.3:8285', node: '' }]);
});
