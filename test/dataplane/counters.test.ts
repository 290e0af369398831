// The one table of packet counters: it covers the snapshot, and the metrics
// endpoint exports it (the CLI's status reads it too: test/cli/status.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyCounters, packetCounters, type CountersSnapshot } from '../../daemon/dataplane/index.js';
import { createMetrics } from '../../daemon/http/metrics.js';

test('the table lists every packet counter of the snapshot once, in the order of the packet path', () => {
  const keys = Object.keys(emptyCounters()).filter((k) => k !== 'egressDrops' && k !== 'ingressDrops');
  assert.deepEqual(packetCounters.map((c) => c.key), keys);
  assert.equal(new Set(packetCounters.map((c) => c.metric)).size, packetCounters.length);
  for (const c of packetCounters) assert.match(c.metric, /^miniflannel_[a-z_]+_total$/);
});

test('GET /metrics exports each counter of the table with the value of one snapshot', async () => {
  const counters: CountersSnapshot = { ...emptyCounters(), ...Object.fromEntries(packetCounters.map((c, i) => [c.key, 1000 + i])) };
  const metrics = createMetrics({
    counters: () => counters,
    peers: () => 0,
    leaseExpiry: () => undefined,
    storeConnected: () => undefined,
    storeResets: () => undefined,
    peersUnconfirmed: () => 0,
    logLinesDropped: () => 0,
  });
  const text = await metrics.scrape();
  for (const [i, c] of packetCounters.entries()) {
    assert.match(text, new RegExp(`^# HELP ${c.metric} ${c.help.replace(/[()]/g, '\\$&')}$`, 'm'));
    assert.match(text, new RegExp(`^${c.metric} ${1000 + i}$`, 'm'), c.metric);
  }
});
