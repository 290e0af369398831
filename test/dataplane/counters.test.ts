// The one table of packet counters: it covers the snapshot, and the metrics
// endpoint exports it (the CLI's status reads it too: test/cli/status.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { egressDropReasons, emptyCounters, ingressDropReasons, packetCounters, type CountersSnapshot } from '../../daemon/dataplane/index.js';
import { createMetrics } from '../../daemon/http/metrics.js';

test('the table lists every packet counter of the snapshot once, in the order of the packet path', () => {
  const keys = Object.keys(emptyCounters()).filter((k) => k !== 'egressDrops' && k !== 'ingressDrops');
  assert.deepEqual(packetCounters.map((c) => c.key), keys);
  assert.equal(new Set(packetCounters.map((c) => c.metric)).size, packetCounters.length);
  for (const c of packetCounters) assert.match(c.metric, /^miniflannel_[a-z_]+_total$/);
});

/** What /metrics serves for these counters, with nothing else of the node's to report. */
function scrape(counters: CountersSnapshot): Promise<string> {
  return createMetrics({
    version: '0.0.0',
    ready: () => true,
    leaseRenewalFailing: () => undefined,
    leases: () => undefined,
    peerTraffic: () => [],
    counters: () => counters,
    peers: () => 0,
    leaseExpiry: () => undefined,
    storeConnected: () => undefined,
    storeResets: () => undefined,
    peersUnconfirmed: () => 0,
    logLinesDropped: () => 0,
  }).scrape();
}

test('GET /metrics exports each counter of the table with the value of one snapshot', async () => {
  const counters: CountersSnapshot = { ...emptyCounters(), ...Object.fromEntries(packetCounters.map((c, i) => [c.key, 1000 + i])) };
  const text = await scrape(counters);
  for (const [i, c] of packetCounters.entries()) {
    assert.match(text, new RegExp(`^# HELP ${c.metric} ${c.help.replace(/[()]/g, '\\$&')}$`, 'm'));
    assert.match(text, new RegExp(`^${c.metric} ${1000 + i}$`, 'm'), c.metric);
  }
});

test('the drop reasons: each once, the malformed and disabled ones of both families in both directions, and no not-ipv6, which no packet can reach', () => {
  for (const reasons of [egressDropReasons, ingressDropReasons]) {
    assert.equal(new Set(reasons).size, reasons.length, reasons.join());
    for (const reason of ['not-ipv4', 'truncated', 'bad-header-length', 'bad-total-length', 'bad-payload-length', 'bad-extension-header', 'ipv4-disabled', 'ipv6-disabled']) {
      assert.ok((reasons as readonly string[]).includes(reason), reason);
    }
    // IPv6 checks only see version-6 packets: a reason that could never count would be noise in /metrics.
    assert.ok(!(reasons as readonly string[]).includes('not-ipv6'));
  }
  assert.deepEqual(Object.keys(emptyCounters().egressDrops), egressDropReasons);
  assert.deepEqual(Object.keys(emptyCounters().ingressDrops), ingressDropReasons);
});

test('GET /metrics exports every drop reason of both directions, those of each family included', async () => {
  const base = emptyCounters();
  const counters: CountersSnapshot = {
    ...base,
    egressDrops: { ...base.egressDrops, 'ipv6-disabled': 3, 'bad-extension-header': 4 },
    ingressDrops: { ...base.ingressDrops, 'bad-payload-length': 5, 'ipv4-disabled': 6 },
  };
  const text = await scrape(counters);
  assert.match(text, /^miniflannel_dropped_packets_total\{direction="ingress",reason="ipv4-disabled"\} 6$/m);
  assert.match(text, /^miniflannel_dropped_packets_total\{direction="egress",reason="ipv6-disabled"\} 3$/m);
  assert.match(text, /^miniflannel_dropped_packets_total\{direction="egress",reason="bad-extension-header"\} 4$/m);
  assert.match(text, /^miniflannel_dropped_packets_total\{direction="ingress",reason="bad-payload-length"\} 5$/m);
  for (const reason of egressDropReasons) assert.match(text, new RegExp(`direction="egress",reason="${reason}"`), reason);
  for (const reason of ingressDropReasons) assert.match(text, new RegExp(`direction="ingress",reason="${reason}"`), reason);
});
