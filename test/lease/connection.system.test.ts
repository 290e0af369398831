import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { connectLeaseStore, OptionsError, StoreAccessError, StoreUnavailableError, type SubnetManager } from '../../daemon/lease/index.js';
import { freePort, startRedis, startRedisSentinel, type RedisServer } from '../../lab/redis.js';
import { openStore, pollUntil, silentLogger } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function track(s: SubnetManager): SubnetManager {
  cleanups.push(() => s.close());
  return s;
}

/** A TCP server that accepts connections and never says a word. */
async function silentServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(typeof address === 'object' && address !== null);
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('test harness', () => {
  it('fails loudly, naming the path, when redis-server is missing', async () => {
    await assert.rejects(startRedis({ binary: '/nonexistent/redis-server' }), /redis-server not found at \/nonexistent\/redis-server/);
  });
});

describe('connection errors', () => {
  it('fails fast with an error naming the address when nothing listens', async () => {
    const port = await freePort();
    const started = Date.now();
    await assert.rejects(
      connectLeaseStore({ url: `redis://127.0.0.1:${port}`, logger: silentLogger(), connectTimeoutMs: 2_000 }),
      (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError, String(err));
        assert.equal(err.message, `Redis unreachable at redis://127.0.0.1:${port}: ECONNREFUSED`);
        assert.equal(err.address, `redis://127.0.0.1:${port}`);
        assert.ok(err.cause instanceof Error);
        return true;
      },
    );
    assert.ok(Date.now() - started < 1_500, 'no retry loop for a one-shot caller');
  });

  it('gives up on a server that accepts but never answers, within connectTimeoutMs', async () => {
    const silent = await silentServer();
    cleanups.push(silent.close);
    const started = Date.now();
    await assert.rejects(
      connectLeaseStore({ url: `redis://127.0.0.1:${silent.port}`, logger: silentLogger(), connectTimeoutMs: 300 }),
      (err: unknown) => err instanceof StoreUnavailableError && err.message.startsWith(`Redis unreachable at redis://127.0.0.1:${silent.port}: `) && /300 ms/.test(err.message),
    );
    assert.ok(Date.now() - started < 3_000);
  });

  it('reports a wrong password without echoing any password, and does not retry it even with backoff', async () => {
    const server = await startRedis({ password: 'right-one' });
    cleanups.push(() => server.stop());
    const url = `redis://:wrong-one@127.0.0.1:${server.port}`;
    // fail-fast refuses at connect; backoff, which connects on first use, at the first operation.
    const attempts = [
      () => connectLeaseStore({ url, logger: silentLogger(), connectTimeoutMs: 2_000, retry: { mode: 'fail-fast' } }),
      async () => (await connectLeaseStore({ url, logger: silentLogger(), connectTimeoutMs: 2_000, retry: { mode: 'backoff' } })).getNetworkConfig(),
    ];
    for (const attempt of attempts) {
      await assert.rejects(attempt(), (err: unknown) => {
        assert.ok(err instanceof StoreAccessError, String(err));
        assert.ok(err.message.startsWith(`Redis at redis://:***@127.0.0.1:${server.port} refused the credentials: `), err.message);
        assert.match(err.message, /WRONGPASS|invalid password/i);
        // ioredis puts the AUTH arguments on its error; the cause is rebuilt without them.
        assert.ok(!JSON.stringify({ message: err.message, cause: err.cause, ...(err.cause as object) }).match(/wrong-one|right-one/));
        return true;
      });
    }
    const unauthenticated = `redis://127.0.0.1:${server.port}`;
    await assert.rejects(connectLeaseStore({ url: unauthenticated, logger: silentLogger(), connectTimeoutMs: 2_000 }), (err: unknown) => {
      assert.ok(err instanceof StoreAccessError, String(err));
      assert.match(err.message, /NOAUTH.*put the user and password in the URL/);
      return true;
    });
    const ok = track(await connectLeaseStore({ url: server.url, logger: silentLogger() }));
    assert.deepEqual((await ok.listLeases()).leases, []);
  });

  it('refuses a database the server does not have, in both modes, instead of writing to database 0', async () => {
    const server = await startRedis();
    cleanups.push(() => server.stop());
    const url = `${server.url}/99`;
    const attempts = [
      () => connectLeaseStore({ url, logger: silentLogger(), connectTimeoutMs: 2_000, retry: { mode: 'fail-fast' } }),
      async () => (await connectLeaseStore({ url, logger: silentLogger(), connectTimeoutMs: 2_000, retry: { mode: 'backoff' } })).setNetworkConfig('{"Network": "10.244.0.0/16"}'),
    ];
    for (const attempt of attempts) {
      await assert.rejects(attempt(), (err: unknown) => {
        assert.ok(err instanceof OptionsError, String(err));
        assert.equal(err.option, 'url');
        assert.match(err.message, /^Redis at redis:\/\/127\.0\.0\.1:\d+\/99 has no database 99 \(it answered "ERR DB index is out of range"\): use one below its 'databases' setting/);
        return true;
      });
    }
    assert.equal(server.cli('--raw', 'dbsize').trim(), '0', 'nothing was written to database 0');
    const fifteen = track(await connectLeaseStore({ url: `${server.url}/15`, logger: silentLogger() }));
    await fifteen.setNetworkConfig('{"Network": "10.244.0.0/16"}');
    assert.equal(server.cli('-n', '15', '--raw', 'dbsize').trim(), '1', 'the last database is one');
  });

  it('fails commands at once, naming the address, when a fail-fast store loses Redis', async () => {
    const server = await startRedis();
    cleanups.push(() => server.stop());
    const s = track(await connectLeaseStore({ url: server.url, logger: silentLogger(), commandTimeoutMs: 2_000 }));
    await s.setNetworkConfig({ Network: '10.50.0.0/16' });
    await server.kill();
    const started = Date.now();
    await assert.rejects(s.listLeases(), (err: unknown) => err instanceof StoreUnavailableError && err.message.includes(server.url));
    assert.ok(Date.now() - started < 1_000);
  });

  it('in backoff mode (the daemon) connects on first use, fails each use while Redis is away, and works once it is back', async () => {
    const port = await freePort();
    const s = track(await openStore(`redis://127.0.0.1:${port}`, { keyPrefix: 'late', retry: { mode: 'backoff', initialDelayMs: 50, maxDelayMs: 200 }, connectTimeoutMs: 500 }));
    await assert.rejects(s.getNetworkConfig(), (err: unknown) => err instanceof StoreUnavailableError && err.address === `redis://127.0.0.1:${port}` && /ECONNREFUSED/.test(err.message));
    const server: RedisServer = await startRedis({ port });
    cleanups.push(() => server.stop());
    await s.setNetworkConfig({ Network: '10.51.0.0/16' });
    assert.equal((await s.acquireLease({ publicIP: '192.168.0.1', nodeName: 'a' })).source, 'new');
  });

  it('never runs a command later that already failed: a renewal refused during an outage stays undone', async () => {
    const server = await startRedis();
    cleanups.push(() => server.stop());
    const s = track(await openStore(server.url, { keyPrefix: 'ghost', commandTimeoutMs: 1_000, connectTimeoutMs: 1_000 }));
    await s.setNetworkConfig({ Network: '10.58.0.0/16' });
    const { lease } = await s.acquireLease({ publicIP: '192.168.25.1', nodeName: 'a' });
    await server.kill();
    await assert.rejects(s.renewLease(lease), StoreUnavailableError);
    await server.restart(); // back empty: no persistence
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    assert.equal(server.cli('hlen', s.keys.leases).trim(), '0', 'the failed renewal did not run once Redis came back');
  });

  it('in backoff mode closes the command connection when idle, and opens it again for the next command', async () => {
    const server = await startRedis();
    cleanups.push(() => server.stop());
    const s = track(await openStore(server.url, { keyPrefix: 'idle', commandIdleMs: 300 }));
    await s.setNetworkConfig({ Network: '10.56.0.0/16' });
    const commandConnections = () => server.cli('client', 'list').split('\n').filter((line) => /\bname=miniflannel:\d+\b/.test(line)).length;
    assert.equal(commandConnections(), 1);
    await pollUntil('the idle connection to close', async () => commandConnections() === 0, 5_000);
    assert.equal((await s.getNetworkConfig()).ipv4!.subnetLen, 24);
    assert.equal(commandConnections(), 1);
  });
});

// Redis Cluster, with replicas and failovers, has a file of its own: cluster.test.ts.
describe('topologies', () => {
  it('works through Redis Sentinel', async () => {
    const sentinel = await startRedisSentinel('mymaster');
    cleanups.push(() => sentinel.stop());
    const s = track(await openStore(sentinel.url, { keyPrefix: 'sentinel' }));
    await s.setNetworkConfig({ Network: '10.53.0.0/16' });
    const { lease } = await s.acquireLease({ publicIP: '192.168.0.1', nodeName: 'a' });
    // The data really is on the master the sentinel points to.
    assert.match(sentinel.master.cli('hkeys', s.keys.leases), new RegExp(lease.subnet.replace(/\./g, '\\.')));
  });
});
