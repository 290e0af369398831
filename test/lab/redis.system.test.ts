// The lab's one redis-server starter, as the tests and `bench control-plane`
// use it: what a restart keeps or loses, the fsync policy, the version and
// readiness it reports, and the check that Redis got the maxclients asked for.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { RedisMaxClientsError, startRedis, type RedisServer } from '../../lab/redis.js';

const servers: RedisServer[] = [];
after(async () => {
  for (const server of servers) await server.stop();
});

async function started(options: Parameters<typeof startRedis>[0]): Promise<RedisServer> {
  const server = await startRedis(options);
  servers.push(server);
  return server;
}

/** The redis-server processes this test process started and that still run. */
function redisChildren(): string[] {
  const tasks = readdirSync('/proc/self/task');
  const pids = tasks.flatMap((tid) => readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim().split(' ').filter((pid) => pid !== ''));
  return pids.filter((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'redis-server');
}

const config = (server: RedisServer, parameter: string): string => server.cli('config', 'get', parameter).split('\n')[1]!;

describe('startRedis', () => {
  it('with the AOF fsynced every second: a restart on the same port reloads the data', async () => {
    const server = await started({ persistence: true, fsync: 'everysec' });
    assert.equal(config(server, 'appendonly'), 'yes');
    assert.equal(config(server, 'appendfsync'), 'everysec');
    assert.equal(config(server, 'save'), '');
    server.cli('set', 'kept', 'yes');
    const { port, readyAt } = server;
    await server.restart();
    assert.equal(server.port, port);
    assert.ok(server.readyAt > readyAt, `ready again at ${server.readyAt}, after ${readyAt}`);
    assert.equal(server.cli('get', 'kept').trim(), 'yes');
  });

  it('restarted without persistence in an empty dir: back empty, though the AOF had the data', async () => {
    const server = await started({ persistence: true });
    assert.equal(config(server, 'appendfsync'), 'always');
    server.cli('set', 'lost', 'yes');
    assert.ok(readdirSync(server.dir).length > 0, 'the AOF is in the dir');
    await server.restart({ persistence: false, empty: true });
    assert.equal(config(server, 'appendonly'), 'no');
    assert.equal(server.cli('dbsize').trim(), '0');
    assert.deepEqual(readdirSync(server.dir), []);
  });

  it('reports the version and when it became ready', async () => {
    const before = Date.now();
    const server = await started({});
    assert.ok(server.readyAt >= before && server.readyAt <= Date.now(), `readyAt ${server.readyAt}`);
    assert.equal(server.version, /redis_version:([\d.]+)/.exec(server.cli('info', 'server'))?.[1]);
  });

  it('checks that Redis got the maxclients asked for, and stops it when not', async () => {
    const server = await started({ maxClients: 200 });
    assert.equal(config(server, 'maxclients'), '200');
    const running = redisChildren();
    // More than the kernel allows one process (fs.nr_open, 1048576 by default): Redis lowers it to fit.
    await assert.rejects(startRedis({ maxClients: 2_000_000 }), (err: unknown) => {
      assert.ok(err instanceof RedisMaxClientsError, String(err));
      assert.equal(err.wanted, 2_000_000);
      assert.ok(err.granted < 2_000_000);
      assert.match(err.message, /ulimit -Hn 2000032/);
      return true;
    });
    assert.deepEqual(redisChildren(), running);
  });
});
