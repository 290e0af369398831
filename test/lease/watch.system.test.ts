import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OutOfSubnetsError, type Lease, type LeaseStoreOptions, type SubnetManager, type WatchEvent } from '../../daemon/lease/index.js';
import { startRedis, type RedisServer } from '../../lab/redis.js';
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

/** Applies events to a map, as a consumer would: a listing replaces what was known. */
function applyAll(state: Map<string, Lease>, events: readonly WatchEvent[]): void {
  for (const e of events) {
    if (e.type === 'snapshot') {
      state.clear();
      for (const l of e.leases) state.set(l.subnet, l);
    } else if (e.type === 'removed' || e.type === 'expired') {
      state.delete(e.lease.subnet);
    } else if (e.type === 'added') {
      state.set(e.lease.subnet, e.lease);
    }
  }
}

/** calls of each command on the server (INFO commandstats), e.g. {evalsha: 3, publish: 1}. */
function commandCalls(srv: RedisServer): Map<string, number> {
  const calls = new Map<string, number>();
  for (const line of srv.cli('info', 'commandstats').split('\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (match) calls.set(match[1]!, Number(match[2]));
  }
  return calls;
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

/** Kills the watch's subscription connection(s) of this server, and only those. */
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
  it('starts with a snapshot, then delivers added, removed and expired in order; a renewal wakes nobody', async () => {
    const { s } = await configured(server, 'order', { leaseTtlMs: 500, renewMarginMs: 100 });
    const existing = await s.acquireLease({ publicIP: '192.168.0.1', nodeName: 'a' });
    const reader = new EventReader(s.watchLeases());
    const snapshot = await reader.next();
    assert.ok(snapshot.type === 'snapshot' && snapshot.cause === 'start');
    assert.deepEqual(snapshot.leases.map((l) => l.subnet), [existing.lease.subnet]);

    const b = await s.acquireLease({ publicIP: '192.168.0.2', nodeName: 'b' });
    await s.renewLease(b.lease);
    await s.revokeLease(b.lease.subnet);
    // Nobody renews `existing`: once it is past its expiry, a reap turns it into an event.
    await pollUntil('the unrenewed lease to be reaped', async () => (await s.reap()) > 0);
    const events = await reader.until((e) => e.type === 'expired');
    assert.deepEqual(events.map(change), [`added ${b.lease.subnet}`, `removed ${b.lease.subnet}`, `expired ${existing.lease.subnet}`]);
    const added = events[0]!;
    assert.ok(added.type === 'added' && added.lease.publicIP === '192.168.0.2' && added.lease.nodeName === 'b');
    const seqs = [snapshot.seq, ...events.map((e) => (e.type === 'added' || e.type === 'removed' || e.type === 'expired' ? e.seq : ''))];
    for (let i = 1; i < seqs.length; i++) {
      const [prevMs, prevSeq] = seqs[i - 1]!.split('-').map(Number) as [number, number];
      const [ms, seq] = seqs[i]!.split('-').map(Number) as [number, number];
      assert.ok(ms > prevMs || (ms === prevMs && seq > prevSeq), `seq ${seqs[i]} after ${seqs[i - 1]}`);
    }
    await reader.watch.close();
  });

  it('costs no command while idle, and a renewal publishes nothing', async () => {
    const quiet = await startRedis();
    servers.push(quiet);
    const { s } = await configured(quiet, 'idle', { leaseTtlMs: 60_000, renewMarginMs: 1_000 });
    const { lease } = await s.acquireLease({ publicIP: '192.168.0.9', nodeName: 'a' });
    await s.renewLease(lease); // loads the script into Redis's cache, so the measured one is a plain EVALSHA
    const reader = new EventReader(s.watchLeases());
    await reader.next();
    await pollUntil('the watch to subscribe', async () => watchConnections(quiet).length === 1 && reader.watch.connected);
    const before = commandCalls(quiet);
    await sleep(2_500);
    await s.renewLease(lease);
    const after = commandCalls(quiet);
    const grown = [...after].filter(([name, calls]) => calls > (before.get(name) ?? 0) && name !== 'info').map(([name, calls]) => `${name}+${calls - (before.get(name) ?? 0)}`);
    // The renewal is one script (its commands: TIME, the reap's range query, HGET, ZSCORE, ZADD, HLEN), and nothing else ran.
    assert.deepEqual(grown.map((g) => g.split('+')[0]).sort(), ['evalsha', 'hget', 'hlen', 'time', 'zadd', 'zrangebyscore', 'zscore']);
    assert.equal(after.get('publish') ?? 0, before.get('publish') ?? 0, 'the renewal woke no watcher');
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
    await pollUntil('the short lease to expire and be reaped', async () => (await s.reap()) > 0);

    const events = await reader.until((e) => e.type === 'expired' && e.lease.subnet === short.lease.subnet);
    assert.deepEqual(events.map(change), [`added ${fresh.lease.subnet}`, `removed ${gone.lease.subnet}`, `expired ${short.lease.subnet}`]);
    const stats = reader.watch.stats;
    assert.ok(stats.reconnects >= 1, `reconnects ${stats.reconnects}`);
    assert.equal(stats.resyncs, 0, 'caught up from the stream, no listing needed');
    assert.ok(!events.some((e) => 'lease' in e && e.lease.subnet === stay.lease.subnet));
    await reader.watch.close();
  });

  it('lists again, in chunks, when the capped stream was trimmed past its position, and ends with the right leases', async () => {
    // Tiny stream nodes make XADD MAXLEN ~ trim at once, as a long stream would in production.
    const small = await startRedis({ args: ['--stream-node-max-entries', '2'] });
    servers.push(small);
    const { prefix, s } = await configured(small, 'trim', { streamMaxLen: 4 });
    await s.setNetworkConfig({ Network: '10.40.0.0/14' });
    const a = await s.acquireLease({ publicIP: '192.168.2.1', nodeName: 'a' });
    const b = await s.acquireLease({ publicIP: '192.168.2.2', nodeName: 'b' });
    const watcher = await store(small, prefix, { retry: { mode: 'backoff', initialDelayMs: 1_500, maxDelayMs: 1_500 } });
    const reader = new EventReader(watcher.watchLeases());
    const snapshot = await reader.next();
    assert.equal(snapshot.type === 'snapshot' && snapshot.leases.length, 2);
    const state = new Map<string, Lease>();
    applyAll(state, [snapshot]);

    // While the watch is away: more leases than one listing chunk, a revocation, and changed attributes.
    assert.equal(killWatchConnections(small), 1);
    const added = await Promise.all(Array.from({ length: 600 }, (_, i) => s.acquireLease({ publicIP: `192.168.${3 + Math.floor(i / 200)}.${(i % 200) + 1}`, nodeName: `x${i}` })));
    await s.revokeLease(a.lease.subnet);
    await s.acquireLease({ publicIP: '192.168.2.2', nodeName: 'b-renamed' });
    const length = Number(small.cli('xlen', s.keys.events).trim());
    assert.ok(length < 20, `stream capped (length ${length})`);

    const events = await reader.until((e) => e.type === 'snapshot');
    applyAll(state, events);
    assert.ok(events.at(-1)!.type === 'snapshot' && (events.at(-1) as { cause: string }).cause === 'gap');
    assert.equal(reader.watch.stats.resyncs, 1);
    const listed = (await s.listLeases()).leases;
    assert.equal(listed.length, 601);
    assert.deepEqual([...state.keys()].sort(), listed.map((l) => l.subnet).sort(), 'consumer state equals the store');
    assert.equal(state.get(b.lease.subnet)?.nodeName, 'b-renamed');
    assert.ok(added.every((x) => state.has(x.lease.subnet)));

    // After the listing it follows the pushes again, with nothing extra in between.
    const d = await s.acquireLease({ publicIP: '192.168.2.4', nodeName: 'd' });
    assert.equal(change(await reader.next()), `added ${d.lease.subnet}`);
    await reader.watch.close();
  });

  it('lists again when the store lost the tail of the stream it had seen (a failover to a lagging replica)', async () => {
    const { prefix, s } = await configured(server, 'tail', { leaseTtlMs: 60_000, renewMarginMs: 1_000 });
    const watcher = await store(server, prefix, { retry: { mode: 'backoff', initialDelayMs: 500, maxDelayMs: 500 } });
    const kept = await s.acquireLease({ publicIP: '192.168.12.1', nodeName: 'kept' });
    const reader = new EventReader(watcher.watchLeases());
    await reader.next();
    const lostLater = await s.acquireLease({ publicIP: '192.168.12.2', nodeName: 'lost' });
    await reader.until((e) => e.type === 'added' && e.lease.subnet === lostLater.lease.subnet);
    // As if the promoted replica never received the last write: its lease, its stream entry and its sequence number are gone.
    const tag = `{${prefix}}`;
    const lastId = server.cli('xrevrange', `${tag}:events`, '+', '-', 'count', '1').split('\n')[0]!.trim();
    server.cli('xdel', `${tag}:events`, lastId);
    server.cli('decr', `${tag}:seq`);
    server.cli('hdel', `${tag}:leases`, lostLater.lease.subnet);
    server.cli('zrem', `${tag}:expiry`, lostLater.lease.subnet);
    server.cli('hdel', `${tag}:owners`, '192.168.12.2');
    assert.equal(killWatchConnections(server), 1);

    const events = await reader.until((e) => e.type === 'snapshot');
    const relisted = events.at(-1)!;
    assert.ok(relisted.type === 'snapshot' && relisted.cause === 'gap');
    assert.deepEqual(relisted.leases.map((l) => l.subnet), [kept.lease.subnet]);
    assert.equal(reader.watch.stats.resets, 0, 'same store, fewer changes: not a reset');
    await reader.watch.close();
  });

  it('survives a redis-server restart with persistence: no reset, no listing, and it goes on', async () => {
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
    await pollUntil('the watch to resubscribe', async () => reader.watch.connected, 15_000);
    await s.renewLease(held[0]!.lease);
    const added = await s.acquireLease({ publicIP: '192.168.4.9', nodeName: 'new' });
    const events = await reader.until((e) => e.type === 'added' && e.lease.subnet === added.lease.subnet);
    assert.deepEqual(events.map(change), [`added ${added.lease.subnet}`]);
    assert.ok(reader.watch.stats.reconnects >= 1);
    assert.equal(reader.watch.stats.resyncs, 0, 'position still valid after the restart');
    assert.equal(reader.watch.stats.resets, 0);
    await reader.watch.close();
  });

  it('says "reset" after a restart without persistence, then follows the leases as they are re-asserted', async () => {
    const volatile = await startRedis();
    servers.push(volatile);
    const { s } = await configured(volatile, 'volatile');
    const held = await Promise.all([1, 2].map((i) => s.acquireLease({ publicIP: `192.168.5.${i}`, nodeName: `n${i}` })));
    const reader = new EventReader(s.watchLeases());
    await reader.next();
    await volatile.restart();
    const events = await reader.until((e) => e.type === 'reset', 20_000);
    assert.ok(!events.some((e) => e.type === 'removed'), 'nothing reported removed: the store forgot, nobody revoked');
    assert.equal(reader.watch.stats.resets, 1);
    // The owners re-assert: the same subnets come back, as "added".
    for (const h of held) assert.equal((await s.renewLease(h.lease)).subnet, h.lease.subnet);
    const back = await reader.until(() => reader.seen.filter((e) => e.type === 'added').length === 2);
    assert.deepEqual(back.filter((e) => e.type === 'added').map(change).sort(), held.map((h) => `added ${h.lease.subnet}`).sort());
    await reader.watch.close();
  });

  it('sees a reset even when the store was rebuilt, before it reconnected, by the process that wrote it first', async () => {
    const volatile = await startRedis();
    servers.push(volatile);
    const { prefix, s } = await configured(volatile, 'reepoch');
    const { lease } = await s.acquireLease({ publicIP: '192.168.5.9', nodeName: 'n' });
    const watcher = await store(volatile, prefix, { retry: { mode: 'backoff', initialDelayMs: 1_500, maxDelayMs: 1_500 } });
    const reader = new EventReader(watcher.watchLeases());
    await reader.next();
    const epoch = () => volatile.cli('get', `{${prefix}}:epoch`).trim();
    const before = epoch();
    await volatile.restart();
    assert.equal((await s.renewLease(lease)).subnet, lease.subnet); // put back before the watcher is back
    assert.notEqual(epoch(), before, 'a new epoch for the new incarnation');
    await reader.until((e) => e.type === 'reset', 15_000);
    const back = await reader.until((e) => e.type === 'added' && e.lease.subnet === lease.subnet);
    assert.ok(back.length >= 1);
    await reader.watch.close();
  });

  it('notices a FLUSHALL at once, without a reconnection', async () => {
    const flushed = await startRedis();
    servers.push(flushed);
    const { s } = await configured(flushed, 'flush');
    await s.acquireLease({ publicIP: '192.168.5.7', nodeName: 'n' });
    const reader = new EventReader(s.watchLeases());
    await reader.next();
    await pollUntil('the watch to subscribe', async () => reader.watch.connected);
    flushed.cli('flushall');
    const events = await reader.until((e) => e.type === 'reset', 3_000);
    assert.ok(events.some((e) => e.type === 'config'), 'the config key went too');
    assert.equal(reader.watch.stats.reconnects, 0);
    await reader.watch.close();
  });

  it('works without CLIENT TRACKING (an ACL that denies it), saying once that a flush is noticed later', async () => {
    const limited = await startRedis({ args: ['--user', 'flannel', 'on', '>secret', '~*', '&*', '+@all', '-client', '--user', 'default', 'off'] });
    servers.push(limited);
    const { logger, lines } = captureLogger();
    const url = `redis://flannel:secret@127.0.0.1:${limited.port}`;
    const s = await openStore(url, { keyPrefix: uniquePrefix('acl'), logger });
    stores.push(s);
    await s.setNetworkConfig({ Network: '10.42.0.0/16' });
    const reader = new EventReader(s.watchLeases());
    await reader.next();
    const added = await s.acquireLease({ publicIP: '192.168.11.1', nodeName: 'a' });
    assert.equal(change(await reader.next()), `added ${added.lease.subnet}`);
    const refused = lines.filter((l) => l.level === 40 && /CLIENT TRACKING refused/.test(l.msg));
    assert.equal(refused.length, 1);
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
    await pollUntil('the watch to subscribe', async () => reader.watch.connected);
    // Garbage pushed on the channel, and well-sequenced stream entries with a garbage lease and an unknown type.
    server.cli('publish', s.keys.channel, 'garbage');
    for (const [type, value] of [['added', '{broken'], ['exploded', '{}']] as const) {
      const n = Number(server.cli('incr', `${tag}:seq`).trim());
      server.cli('xadd', `${tag}:events`, '*', 'n', String(n), 't', type, 's', '10.41.2.0/26', 'l', value, 'e', '');
    }
    const next = await s.acquireLease({ publicIP: '192.168.6.2', nodeName: 'next' });
    assert.equal(change(await reader.next()), `added ${next.lease.subnet}`);
    assert.equal(reader.watch.stats.corruptEvents, 3);
    assert.equal(reader.watch.stats.resyncs, 0);
    assert.ok(lines.some((l) => l.level === 40 && l.msg === 'skipping corrupt change'));

    // The corrupt subnets still count as taken: the other 11 go, then none is left.
    const rest = await Promise.all(Array.from({ length: 11 }, (_, i) => s.acquireLease({ publicIP: `192.168.7.${i + 1}`, nodeName: `m${i}` })));
    const handedOut = new Set([good.lease.subnet, next.lease.subnet, ...rest.map((r) => r.lease.subnet)]);
    assert.equal(handedOut.size, 13);
    assert.ok(!handedOut.has('10.41.1.0/26') && !handedOut.has('10.41.1.64/26'));
    await assert.rejects(s.acquireLease({ publicIP: '192.168.7.99', nodeName: 'late' }), OutOfSubnetsError);
    await reader.watch.close();
  });

  it('drops its subscription when the consumer falls behind, and catches up from the stream once it reads again', async () => {
    const { prefix, s } = await configured(server, 'slow');
    const watcher = await store(server, prefix, { watchBufferSize: 4 });
    const reader = new EventReader(watcher.watchLeases());
    await reader.next();
    await pollUntil('the watch to subscribe', async () => reader.watch.connected);
    const added = [];
    for (let i = 0; i < 40; i++) added.push((await s.acquireLease({ publicIP: `192.168.9.${i + 1}`, nodeName: `s${i}` })).lease.subnet);
    const events = await reader.until(() => reader.seen.filter((e) => e.type === 'added').length === 40);
    assert.deepEqual(events.filter((e) => e.type === 'added').map(change), added.map((x) => `added ${x}`), 'every change, once, in order');
    assert.equal(reader.watch.stats.resyncs, 0, 'the stream held the backlog');
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
