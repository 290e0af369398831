import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OutOfSubnetsError, type Lease, type LeaseStoreOptions, type SubnetManager, type WatchEvent } from '../../daemon/lease/index.js';
import { startRedis, type RedisServer } from '../harness/redis.js';
import { captureLogger, describeEvent, EventReader, openStore, pollUntil, sleep, uniquePrefix } from './helpers.js';

const stores: SubnetManager[] = [];
const servers: RedisServer[] = [];
let server: RedisServer;

async function store(srv: RedisServer, prefix: string, overrides: Partial<LeaseStoreOptions> = {}): Promise<SubnetManager> {
  const s = await openStore(srv.url, { keyPrefix: prefix, ...overrides });
  stores.push(s);
  return s;
}

async function configured(srv: RedisServer, name: string, overrides: Partial<LeaseStoreOptions> = {}): Promise<{ prefix: string; s: SubnetManager }> {
  const prefix = uniquePrefix(name);
  const s = await store(srv, prefix, overrides);
  await s.setNetworkConfig({ Network: '10.40.0.0/16' });
  return { prefix, s };
}

function change(event: WatchEvent): string {
  return describeEvent(event);
}

/** Applies events to a map, as a consumer would. */
function applyAll(state: Map<string, Lease>, events: readonly WatchEvent[]): void {
  for (const e of events) {
    if (e.type === 'snapshot') {
      state.clear();
      for (const l of e.leases) state.set(l.subnet, l);
    } else if (e.type === 'removed' || e.type === 'expired') {
      state.delete(e.lease.subnet);
    } else {
      state.set(e.lease.subnet, e.lease);
    }
  }
}

/** Client IDs of the watch connections (named miniflannel:watch) on this server. */
function watchConnections(srv: RedisServer): string[] {
  return srv
    .cli('client', 'list')
    .split('\n')
    .filter((line) => /\bname=miniflannel:watch\b/.test(line))
    .map((line) => /\bid=(\d+)/.exec(line)?.[1])
    .filter((id): id is string => id !== undefined);
}

/** Kills the watch's blocking connection(s) of this server, and only those. */
function killWatchConnections(srv: RedisServer): number {
  const ids = watchConnections(srv);
  for (const id of ids) srv.cli('client', 'kill', 'id', id);
  return ids.length;
}

before(async () => {
  server = await startRedis();
  servers.push(server);
});

after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(servers.map((s) => s.stop()));
});

describe('watch', () => {
  it('starts with a snapshot, then delivers added, renewed, removed and expired in order', async () => {
    const { s } = await configured(server, 'order', { leaseTtlMs: 500, renewMarginMs: 100 });
    const existing = await s.acquireLease({ publicIP: '192.168.0.1', nodeName: 'a' });
    const reader = new EventReader(s.watchLeases());
    const snapshot = await reader.next();
    assert.equal(snapshot.type, 'snapshot');
    assert.deepEqual(snapshot.type === 'snapshot' && snapshot.leases.map((l) => l.subnet), [existing.lease.subnet]);

    const b = await s.acquireLease({ publicIP: '192.168.0.2', nodeName: 'b' });
    await s.renewLease(b.lease);
    await s.revokeLease(b.lease.subnet);
    const events = await reader.until((e) => e.type === 'expired');
    assert.deepEqual(events.map(change), [
      `added ${b.lease.subnet}`,
      `renewed ${b.lease.subnet}`,
      `removed ${b.lease.subnet}`,
      `expired ${existing.lease.subnet}`,
    ]);
    const added = events[0]!;
    assert.ok(added.type === 'added' && added.lease.publicIP === '192.168.0.2' && added.lease.nodeName === 'b');
    const seqs = [snapshot, ...events].map((e) => e.seq);
    for (let i = 1; i < seqs.length; i++) {
      const [prevMs, prevSeq] = seqs[i - 1]!.split('-').map(Number) as [number, number];
      const [ms, seq] = seqs[i]!.split('-').map(Number) as [number, number];
      assert.ok(ms > prevMs || (ms === prevMs && seq > prevSeq), `seq ${seqs[i]} after ${seqs[i - 1]}`);
    }
    await reader.watch.close();
  });

  it('resumes after its connection is killed and sees every change made meanwhile, expiries included', async () => {
    const { prefix, s } = await configured(server, 'resume', { leaseTtlMs: 60_000, renewMarginMs: 1_000 });
    // The writer uses short leases; the watcher reconnects only after a pause, so the changes happen while it is away.
    const writer = await store(server, prefix, { leaseTtlMs: 300, renewMarginMs: 100 });
    const stay = await s.acquireLease({ publicIP: '192.168.1.1', nodeName: 'stay' });
    const gone = await s.acquireLease({ publicIP: '192.168.1.2', nodeName: 'gone' });
    const watcher = await store(server, prefix, { retry: { mode: 'backoff', initialDelayMs: 800, maxDelayMs: 800 } });
    const reader = new EventReader(watcher.watchLeases());
    await reader.next(); // snapshot
    const short = await writer.acquireLease({ publicIP: '192.168.1.3', nodeName: 'short' });
    await reader.until((e) => e.type === 'added' && e.lease.subnet === short.lease.subnet);

    assert.equal(killWatchConnections(server), 1);
    const fresh = await s.acquireLease({ publicIP: '192.168.1.4', nodeName: 'fresh' });
    await s.revokeLease(gone.lease.subnet);
    await pollUntil('the short lease to expire', async () => !(await s.listLeases()).leases.some((l) => l.subnet === short.lease.subnet));

    const events = await reader.until((e) => e.type === 'expired' && e.lease.subnet === short.lease.subnet);
    assert.deepEqual(events.map(change), [`added ${fresh.lease.subnet}`, `removed ${gone.lease.subnet}`, `expired ${short.lease.subnet}`]);
    const stats = reader.watch.stats;
    assert.ok(stats.reconnects >= 1, `reconnects ${stats.reconnects}`);
    assert.equal(stats.resyncs, 0, 'resumed from its position, no full resync needed');
    assert.ok(!events.some((e) => e.type !== 'snapshot' && e.lease.subnet === stay.lease.subnet));
    await reader.watch.close();
  });

  it('resyncs and emits the difference when the capped stream was trimmed past its position', async () => {
    // Tiny stream nodes make XADD MAXLEN ~ trim at once, as a long stream would in production.
    const small = await startRedis({ args: ['--stream-node-max-entries', '2'] });
    servers.push(small);
    const { s } = await configured(small, 'trim', { streamMaxLen: 4, watchBufferSize: 1 });
    const a = await s.acquireLease({ publicIP: '192.168.2.1', nodeName: 'a' });
    const b = await s.acquireLease({ publicIP: '192.168.2.2', nodeName: 'b' });
    const reader = new EventReader(s.watchLeases());
    const snapshot = await reader.next();
    assert.equal(snapshot.type === 'snapshot' && snapshot.leases.length, 2);
    const state = new Map<string, Lease>();
    applyAll(state, [snapshot]);

    // The watch buffers one event and then stops reading while we do not consume.
    const c = await s.acquireLease({ publicIP: '192.168.2.3', nodeName: 'c' });
    await sleep(300);
    const added: string[] = [];
    for (let i = 0; i < 30; i++) added.push((await s.acquireLease({ publicIP: `192.168.3.${i + 1}`, nodeName: `x${i}` })).lease.subnet);
    await s.revokeLease(a.lease.subnet);
    await s.acquireLease({ publicIP: '192.168.2.2', nodeName: 'b-renamed' }); // b's attributes change
    const length = Number(small.cli('xlen', s.keys.events).trim());
    assert.ok(length < 20, `stream capped (length ${length})`);

    // snapshot, c (buffered), then the difference: 30 added, b changed, a removed.
    const events = await reader.until(() => reader.seen.length === 1 + 1 + 30 + 2);
    applyAll(state, events);
    assert.equal(reader.watch.stats.resyncs, 1);
    assert.equal(events[0]!.type === 'added' && events[0]!.lease.subnet, c.lease.subnet, 'the buffered event comes first');
    const diff = events.slice(1).map(change).sort();
    assert.deepEqual(diff, [...added.map((x) => `added ${x}`), `added ${b.lease.subnet}`, `removed ${a.lease.subnet}`].sort());
    const listed = (await s.listLeases()).leases;
    assert.deepEqual([...state.keys()].sort(), listed.map((l) => l.subnet).sort(), 'consumer state equals the store');
    assert.equal(state.get(b.lease.subnet)?.nodeName, 'b-renamed');

    // After the resync it follows the stream again, with nothing extra in between.
    const d = await s.acquireLease({ publicIP: '192.168.2.4', nodeName: 'd' });
    assert.equal(change(await reader.next()), `added ${d.lease.subnet}`);
    await reader.watch.close();
  });

  it('survives a redis-server restart with persistence: leases and the watch position are kept', async () => {
    const durable = await startRedis({ persistence: true });
    servers.push(durable);
    const { s } = await configured(durable, 'restart');
    const held = await Promise.all([1, 2, 3].map((i) => s.acquireLease({ publicIP: `192.168.4.${i}`, nodeName: `n${i}` })));
    const reader = new EventReader(s.watchLeases());
    await reader.next();
    const before = (await s.listLeases()).leases;

    await durable.restart();

    const after = await pollUntil('the store to answer after the restart', async () => {
      try {
        return (await s.listLeases()).leases;
      } catch {
        return undefined;
      }
    });
    assert.deepEqual(after, before);
    const renewed = await s.renewLease(held[0]!.lease);
    const added = await s.acquireLease({ publicIP: '192.168.4.9', nodeName: 'new' });
    const events = await reader.until((e) => e.type === 'added' && e.lease.subnet === added.lease.subnet);
    assert.deepEqual(events.map(change), [`renewed ${renewed.subnet}`, `added ${added.lease.subnet}`]);
    assert.ok(reader.watch.stats.reconnects >= 1);
    assert.equal(reader.watch.stats.resyncs, 0, 'position still valid after the restart');
    await reader.watch.close();
  });

  it('resyncs after a restart without persistence and reports every lease removed', async () => {
    const volatile = await startRedis();
    servers.push(volatile);
    const { s } = await configured(volatile, 'volatile');
    const held = await Promise.all([1, 2].map((i) => s.acquireLease({ publicIP: `192.168.5.${i}`, nodeName: `n${i}` })));
    const reader = new EventReader(s.watchLeases());
    await reader.next();
    await volatile.restart();
    const events = await reader.until(() => reader.seen.filter((e) => e.type === 'removed').length === 2);
    assert.deepEqual(events.map(change).sort(), held.map((h) => `removed ${h.lease.subnet}`).sort());
    assert.equal(reader.watch.stats.resyncs, 1);
    await reader.watch.close();
  });

  it('replaces a connection that stops answering (no FIN) and misses nothing', async () => {
    const { prefix, s } = await configured(server, 'silent');
    const watcher = await store(server, prefix, { watchBlockMs: 200, commandTimeoutMs: 300 });
    const reader = new EventReader(watcher.watchLeases());
    await reader.next();
    await pollUntil('the watch connection to be open', async () => watchConnections(server).length === 1);
    // Paused clients get no replies, as behind a dead link; writes made meanwhile come in one batch after.
    server.cli('client', 'pause', '1200', 'all');
    await sleep(1_300);
    const added = await s.acquireLease({ publicIP: '192.168.8.1', nodeName: 'a' });
    assert.equal(change(await reader.next()), `added ${added.lease.subnet}`);
    assert.ok(reader.watch.stats.reconnects >= 1, `reconnects ${reader.watch.stats.reconnects}`);
    await reader.watch.close();
  });

  it('skips and counts corrupt values with a warning, and keeps going', async () => {
    const { logger, lines } = captureLogger();
    const { prefix, s } = await configured(server, 'corrupt', { logger });
    await s.setNetworkConfig({ Network: '10.41.0.0/22', SubnetLen: 26 }); // 15 allocatable /26s
    const tag = `{${prefix}}`;
    const good = await s.acquireLease({ publicIP: '192.168.6.1', nodeName: 'good', previousSubnet: '10.41.0.64/26' });
    assert.equal(good.lease.subnet, '10.41.0.64/26');
    server.cli('hset', `${tag}:leases`, '10.41.1.0/26', 'not json');
    server.cli('hset', `${tag}:leases`, '10.41.1.64/26', '{"PublicIP": "nope", "NodeName": "x", "BackendType": "udp", "BackendData": {}}');

    const listed = (await s.listLeases()).leases;
    assert.deepEqual(listed.map((l) => l.subnet), [good.lease.subnet]);
    assert.equal(s.stats.corruptLeases, 2);
    assert.ok(lines.some((l) => l.level === 40 && l.msg === 'skipping corrupt lease value' && l['subnet'] === '10.41.1.0/26'));

    const reader = new EventReader(s.watchLeases());
    const snapshot = await reader.next();
    assert.equal(snapshot.type === 'snapshot' && snapshot.leases.length, 1);
    // A well-sequenced entry with a garbage lease, then one with an unknown type.
    for (const [type, value] of [['added', '{broken'], ['exploded', '{}']] as const) {
      const n = Number(server.cli('incr', `${tag}:seq`).trim());
      server.cli('xadd', `${tag}:events`, '*', 'n', String(n), 't', type, 's', '10.41.2.0/26', 'l', value, 'e', '');
    }
    const next = await s.acquireLease({ publicIP: '192.168.6.2', nodeName: 'next' });
    assert.equal(change(await reader.next()), `added ${next.lease.subnet}`);
    assert.equal(reader.watch.stats.corruptEvents, 2);
    assert.equal(reader.watch.stats.resyncs, 0);
    assert.ok(lines.some((l) => l.level === 40 && l.msg === 'skipping corrupt change-stream entry'));

    // The corrupt subnets still count as taken: the other 11 go, then none is left.
    const rest = await Promise.all(Array.from({ length: 11 }, (_, i) => s.acquireLease({ publicIP: `192.168.7.${i + 1}`, nodeName: `m${i}` })));
    const handedOut = new Set([good.lease.subnet, next.lease.subnet, ...rest.map((r) => r.lease.subnet)]);
    assert.equal(handedOut.size, 13);
    assert.ok(!handedOut.has('10.41.1.0/26') && !handedOut.has('10.41.1.64/26'));
    await assert.rejects(s.acquireLease({ publicIP: '192.168.7.99', nodeName: 'late' }), OutOfSubnetsError);
    await reader.watch.close();
  });

  it('stops reading when closed, and ends the iteration', async () => {
    const { s } = await configured(server, 'close');
    const watch = s.watchLeases();
    const first = await watch.next();
    assert.equal(first.done, false);
    await pollUntil('the watch connection to be open', async () => watchConnections(server).length === 1);
    const pending = watch.next();
    await watch.close();
    assert.deepEqual(await pending, { value: undefined, done: true });
    assert.deepEqual(await watch.next(), { value: undefined, done: true });
    await pollUntil('the watch connection to be gone', async () => watchConnections(server).length === 0, 5_000);
  });
});
