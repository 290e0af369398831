// `miniflannel lease ...` against a real redis-server, run as a subprocess.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { SubnetManager } from '../../daemon/lease/index.js';
import { cliBin } from '../../lab/paths.js';
import { startRedis, type RedisServer } from '../../lab/redis.js';
import { bindCli, cleanEnv, closeStores, oneLineError, outcomeOf, startCli, type BoundCli } from './helpers.js';

let redis: RedisServer;

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await closeStores();
  await redis?.stop();
});

/** A CLI on its own prefix with a 10.244.0.0/16 network, and a store on the same prefix for acting as nodes. */
async function cluster(name: string): Promise<{ cli: BoundCli; store: SubnetManager }> {
  const cli = bindCli(redis, name);
  await cli.setConfig({ Network: '10.244.0.0/16' });
  return { cli, store: await cli.store() };
}

describe('lease list', () => {
  it('says there are no leases on stderr and prints an empty list as JSON', async () => {
    const { cli } = await cluster('empty');
    const table = await cli.run(['lease', 'list']);
    assert.equal(table.code, 0);
    assert.equal(table.stdout, '');
    assert.match(table.stderr, /no leases/);
    const json = JSON.parse(await cli.ok(['lease', 'list', '--json']));
    assert.deepEqual(json.leases, []);
    assert.ok(!Number.isNaN(Date.parse(json.time)), json.time);
  });

  it('shows subnet, public IP, node, backend and time to expiry, sorted by subnet address', async () => {
    const { cli, store } = await cluster('table');
    // Acquired out of order; "10.244.100.0" sorts before "10.244.20.0" as text, after it as an address.
    await store.acquireLease({ publicIP: '198.18.0.20', nodeName: 'node-t', previousSubnet: '10.244.20.0/24' });
    await store.acquireLease({ publicIP: '198.18.0.100', nodeName: 'node-h', previousSubnet: '10.244.100.0/24' });
    await store.reserve('10.244.3.0/24', '198.18.0.3');

    const lines = (await cli.ok(['lease', 'list'])).trimEnd().split('\n');
    assert.deepEqual(lines[0]!.split(/\s{2,}/), ['SUBNET', 'PUBLIC IP', 'NODE', 'BACKEND', 'EXPIRES IN']);
    const rows = lines.slice(1).map((line) => line.split(/\s{2,}/));
    assert.deepEqual(rows.map((r) => r[0]), ['10.244.3.0/24', '10.244.20.0/24', '10.244.100.0/24']);
    assert.deepEqual(rows[0], ['10.244.3.0/24', '198.18.0.3', '-', 'udp:8285', 'reserved']);
    assert.deepEqual(rows[1]!.slice(0, 4), ['10.244.20.0/24', '198.18.0.20', 'node-t', 'udp:8285']);
    // A fresh 24 h lease, by the Redis clock, rounded down.
    assert.match(rows[1]![4]!, /^23h5\dm$/);
    // Columns line up: every row starts its public IP where the header does.
    const column = lines[0]!.indexOf('PUBLIC IP');
    for (const line of lines.slice(1)) assert.equal(line.indexOf('198.18.'), column, line);
    assert.doesNotMatch(lines.join('\n'), /\x1b\[/, 'no colour without a terminal');
  });

  it('prints JSON with the raw fields, ISO expiries and stable key order', async () => {
    const { cli, store } = await cluster('json');
    const { lease } = await store.acquireLease({ publicIP: '198.18.0.7', nodeName: 'node-g', previousSubnet: '10.244.7.0/24' });
    await store.reserve('10.244.9.0/24', '198.18.0.9');
    const doc = JSON.parse(await cli.ok(['lease', 'list', '--json']));
    assert.deepEqual(Object.keys(doc), ['time', 'leases']);
    const [leased, reserved] = doc.leases;
    assert.deepEqual(Object.keys(leased), ['subnet', 'publicIP', 'nodeName', 'backendType', 'backendData', 'reserved', 'expiresAt', 'expires', 'expiresInMs']);
    assert.deepEqual(
      { ...leased, expiresInMs: undefined },
      {
        subnet: '10.244.7.0/24',
        publicIP: '198.18.0.7',
        nodeName: 'node-g',
        backendType: 'udp',
        backendData: { Port: 8285 },
        reserved: false,
        expiresAt: lease.expiresAt,
        expires: new Date(lease.expiresAt!).toISOString(),
        expiresInMs: undefined,
      },
    );
    assert.ok(leased.expiresInMs > 23 * 3600_000 && leased.expiresInMs <= 24 * 3600_000, String(leased.expiresInMs));
    assert.equal(lease.expiresAt! - Date.parse(doc.time), leased.expiresInMs, 'time to expiry is measured from the reported (Redis) time');
    assert.deepEqual([reserved.subnet, reserved.reserved, reserved.expiresAt, reserved.expires, reserved.expiresInMs], ['10.244.9.0/24', true, null, null, null]);
  });
});

describe('reserve, list, show, revoke', () => {
  it('goes through a reservation from start to end, in text and in JSON', async () => {
    const { cli } = await cluster('cycle');
    assert.equal((await cli.ok(['lease', 'reserve', '10.244.42.0/24', '--public-ip', '198.18.0.42', '--node', 'node-q'])).trim(), 'reserved 10.244.42.0/24 for node-q (198.18.0.42)');

    const [listed, shown, shownJsonText, againText] = await Promise.all([
      cli.ok(['lease', 'list']),
      cli.ok(['lease', 'show', '10.244.42.0/24']),
      cli.ok(['lease', 'show', '10.244.42.0/24', '--json']),
      cli.ok(['lease', 'reserve', '10.244.42.0/24', '--public-ip', '198.18.0.42', '--json']),
    ]);
    const row = listed.trimEnd().split('\n')[1]!.split(/\s{2,}/);
    assert.deepEqual(row, ['10.244.42.0/24', '198.18.0.42', 'node-q', 'udp:8285', 'reserved']);

    assert.match(shown, /^Subnet:\s+10\.244\.42\.0\/24$/m);
    assert.match(shown, /^Public IP:\s+198\.18\.0\.42$/m);
    assert.match(shown, /^Node:\s+node-q$/m);
    assert.match(shown, /^Backend data:\s+\{"Port":8285\}$/m);
    assert.match(shown, /^Expires:\s+never \(reserved\)$/m);
    const shownJson = JSON.parse(shownJsonText);
    assert.equal(shownJson.nodeName, 'node-q');
    assert.equal(shownJson.reserved, true);

    const again = JSON.parse(againText);
    assert.equal(again.outcome, 'unchanged');
    assert.equal(again.lease.nodeName, 'node-q');

    const revoked = await cli.ok(['lease', 'revoke', '10.244.42.0/24', '--yes']);
    assert.match(revoked, /10\.244\.42\.0\/24/);
    assert.match(revoked, /node-q \(198\.18\.0\.42\)/, 'names the node that loses it');

    const gone = await cli.run(['lease', 'show', '10.244.42.0/24']);
    assert.equal(gone.code, 1);
    assert.equal(oneLineError(gone), 'miniflannel: no lease on subnet 10.244.42.0/24');
  });

  it('revoke names the node whose live lease it removes, in text and JSON, and the node sees it', async () => {
    const { cli, store } = await cluster('revoke');
    const { lease } = await store.acquireLease({ publicIP: '198.18.0.2', nodeName: 'node-b', previousSubnet: '10.244.3.0/24' });
    const out = await cli.ok(['lease', 'revoke', '10.244.3.0/24', '--yes']);
    assert.equal(out.trim(), 'revoked 10.244.3.0/24: node node-b (198.18.0.2) loses this lease');
    await assert.rejects(store.renewLease(lease), { name: 'LeaseLostError' });

    const { lease: second } = await store.acquireLease({ publicIP: '198.18.0.4', nodeName: 'node-d', previousSubnet: '10.244.4.0/24' });
    const doc = JSON.parse(await cli.ok(['lease', 'revoke', '10.244.4.0/24', '--yes', '--json']));
    assert.deepEqual([doc.revoked.subnet, doc.revoked.nodeName, doc.revoked.expiresAt], ['10.244.4.0/24', 'node-d', second.expiresAt]);
    assert.deepEqual((await store.listLeases()).leases, []);
  });

  it('reserve turns a live lease of the same public IP into a reservation', async () => {
    const { cli, store } = await cluster('convert');
    await store.acquireLease({ publicIP: '198.18.0.5', nodeName: 'node-e', previousSubnet: '10.244.5.0/24' });
    const doc = JSON.parse(await cli.ok(['lease', 'reserve', '10.244.5.0/24', '--public-ip', '198.18.0.5', '--json']));
    assert.equal(doc.outcome, 'converted');
    assert.equal(doc.lease.nodeName, 'node-e');
    assert.equal((await store.listLeases()).leases[0]!.expiresAt, null);
  });

  it('renames the node of a reservation in one write, and says so', async () => {
    const { cli, store } = await cluster('rename');
    await store.reserve('10.244.6.0/24', '198.18.0.6');
    const events = store.watchLeases();
    try {
      assert.equal((await events.next()).value?.type, 'snapshot');
      const out = await cli.ok(['lease', 'reserve', '10.244.6.0/24', '--public-ip', '198.18.0.6', '--node', 'node-f']);
      assert.equal(out.trim(), '10.244.6.0/24 was already reserved for 198.18.0.6; its node is now node-f');
      const added = (await events.next()).value;
      assert.ok(added?.type === 'added' && added.lease.nodeName === 'node-f' && added.lease.expiresAt === null, JSON.stringify(added));
      const doc = JSON.parse(await cli.ok(['lease', 'reserve', '10.244.6.0/24', '--public-ip', '198.18.0.6', '--node', 'node-f', '--json']));
      assert.deepEqual([doc.outcome, doc.lease.nodeName], ['unchanged', 'node-f']);
      const taken = await cli.run(['lease', 'reserve', '10.244.6.0/24', '--public-ip', '198.18.0.9']);
      assert.equal(taken.code, 1);
      assert.equal(oneLineError(taken), 'miniflannel: subnet 10.244.6.0/24 is already taken: it is reserved for node-f (198.18.0.6); revoke it first');
    } finally {
      await events.close();
    }
  });

  it('refuses to reserve a taken subnet, naming who holds it', async () => {
    const { cli, store } = await cluster('taken');
    await store.acquireLease({ publicIP: '198.18.0.2', nodeName: 'node-b', previousSubnet: '10.244.3.0/24' });
    const result = await cli.run(['lease', 'reserve', '10.244.3.0/24', '--public-ip', '198.18.0.9']);
    assert.equal(result.code, 1);
    assert.equal(oneLineError(result), 'miniflannel: subnet 10.244.3.0/24 is already taken: it is leased to node-b (198.18.0.2); revoke it first');
    assert.equal((await store.listLeases()).leases[0]!.publicIP, '198.18.0.2', 'the lease is untouched');
  });

  it('says a revoked subnet has no lease', async () => {
    const { cli } = await cluster('missing');
    const result = await cli.run(['lease', 'revoke', '10.244.77.0/24', '--yes']);
    assert.equal(result.code, 1);
    assert.equal(oneLineError(result), 'miniflannel: no lease on subnet 10.244.77.0/24');
  });

  it('refuses to revoke without --yes when stdin is not a terminal (exit 2), and keeps the lease', async () => {
    const { cli, store } = await cluster('noyes');
    await store.reserve('10.244.8.0/24', '198.18.0.8');
    const result = await cli.run(['lease', 'revoke', '10.244.8.0/24']);
    assert.equal(result.code, 2);
    assert.match(oneLineError(result), /stdin is not a terminal: pass --yes/);
    assert.equal((await store.listLeases()).leases.length, 1);
  });

  it('asks on a terminal and revokes only after "y"', async () => {
    const { cli, store } = await cluster('prompt');
    await store.acquireLease({ publicIP: '198.18.0.2', nodeName: 'node-b', previousSubnet: '10.244.3.0/24' });
    // script(1) gives the CLI a terminal; what is piped into script is typed into it.
    const command = [process.execPath, cliBin, 'lease', 'revoke', '10.244.3.0/24', '--redis-url', cli.url, '--prefix', cli.prefix].join(' ');
    const typed = async (answer: string) => {
      const child = spawn('script', ['-qec', command, '/dev/null'], { env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
      child.stdin.end(`${answer}\n`);
      return outcomeOf(child, 15_000, 'miniflannel lease revoke on a terminal');
    };

    const declined = await typed('n');
    assert.match(declined.stdout, /Revoke 10\.244\.3\.0\/24 held by node-b \(198\.18\.0\.2\)\? \[y\/N\]/);
    assert.equal(declined.code, 1);
    assert.match(declined.stdout, /not revoked/);
    assert.equal((await store.listLeases()).leases.length, 1);

    const accepted = await typed('y');
    assert.equal(accepted.code, 0, accepted.stdout);
    assert.match(accepted.stdout, /revoked 10\.244\.3\.0\/24: node node-b/);
    assert.equal((await store.listLeases()).leases.length, 0);
  });
});

describe('subnet arguments', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['a bad CIDR', ['lease', 'show', '10.244.3/24'], /"10\.244\.3\/24" is not an IPv4 CIDR block/],
    ['host bits set', ['lease', 'show', '10.244.3.128/24'], /not aligned to a \/24 boundary; did you mean 10\.244\.3\.0\/24\?/],
    ['a length other than SubnetLen', ['lease', 'revoke', '10.244.3.0/25', '--yes'], /is a \/25, but the network config gives each node a \/24 \(SubnetLen\)/],
    ['a subnet outside the network', ['lease', 'reserve', '10.99.3.0/24', '--public-ip', '198.18.0.3'], /lies outside the Network 10\.244\.0\.0\/16/],
    ['a bad --public-ip', ['lease', 'reserve', '10.244.3.0/24', '--public-ip', '198.18.0'], /--public-ip "198\.18\.0" is not an IPv4 address/],
    ['a missing --public-ip', ['lease', 'reserve', '10.244.3.0/24'], /required option '--public-ip <ip>' not specified/],
  ];
  it('refuses each with exit 2 and one line naming the rule', async () => {
    const { cli } = await cluster('usage');
    const results = await Promise.all(cases.map(([, args]) => cli.run(args)));
    results.forEach((result, i) => {
      const [what, , rule] = cases[i]!;
      assert.equal(result.code, 2, `${what}: ${result.stderr}`);
      assert.match(oneLineError(result), rule, what);
    });
  });
});

describe('lease list --watch', () => {
  it('prints the snapshot, then a lease another process acquires and revokes, as NDJSON; exits 0 on SIGINT', async () => {
    const { cli, store } = await cluster('watch-json');
    await store.reserve('10.244.9.0/24', '198.18.0.9');
    for (const n of [100, 20, 50, 1]) await store.acquireLease({ publicIP: `198.18.1.${n}`, nodeName: `node-${n}`, previousSubnet: `10.244.${n}.0/24` });
    const watch = startCli(['lease', 'list', '--watch', '--json', '--redis-url', cli.url, '--prefix', cli.prefix]);
    try {
      const snapshot = JSON.parse(await watch.nextLine());
      assert.equal(snapshot.type, 'snapshot');
      assert.deepEqual(snapshot.leases.map((l: { subnet: string }) => l.subnet), ['10.244.1.0/24', '10.244.9.0/24', '10.244.20.0/24', '10.244.50.0/24', '10.244.100.0/24'], 'sorted by subnet');

      const { lease } = await store.acquireLease({ publicIP: '198.18.0.2', nodeName: 'node-b', previousSubnet: '10.244.3.0/24' });
      const added = JSON.parse(await watch.nextLine());
      assert.deepEqual([added.type, added.lease.subnet, added.lease.publicIP, added.lease.nodeName, added.lease.expiresAt], ['added', '10.244.3.0/24', '198.18.0.2', 'node-b', lease.expiresAt]);
      assert.ok(typeof added.seq === 'string' && added.seq !== snapshot.seq);

      await store.revokeLease('10.244.3.0/24');
      const removed = JSON.parse(await watch.nextLine());
      assert.deepEqual([removed.type, removed.lease.subnet], ['removed', '10.244.3.0/24']);
    } finally {
      const { code, stderr } = await watch.stop('SIGINT');
      assert.equal(code, 0, stderr);
    }
  });

  it('prints rows under the same columns in text mode; exits 0 on SIGTERM', async () => {
    const { cli, store } = await cluster('watch-text');
    const watch = startCli(['lease', 'list', '--watch', '--redis-url', cli.url, '--prefix', cli.prefix]);
    try {
      const header = await watch.nextLine();
      assert.deepEqual(header.split(/\s{2,}/), ['EVENT', 'SUBNET', 'PUBLIC IP', 'NODE', 'BACKEND', 'EXPIRES IN']);
      await store.acquireLease({ publicIP: '198.18.0.2', nodeName: 'node-b', previousSubnet: '10.244.3.0/24' });
      const row = await watch.nextLine();
      const cells = row.split(/\s{2,}/);
      assert.deepEqual(cells.slice(0, 5), ['added', '10.244.3.0/24', '198.18.0.2', 'node-b', 'udp:8285']);
      // 24 h less the moment since the write, on the CLI's estimate of the Redis clock: a few ms behind it reads as 1d00h.
      assert.match(cells[5]!, /^(23h5\dm|1d00h)$/);
      assert.equal(row.indexOf('198.18.0.2'), header.indexOf('PUBLIC IP'), 'the row lines up with the header');
    } finally {
      const { code, stderr } = await watch.stop('SIGTERM');
      assert.equal(code, 0, stderr);
    }
  });

  it('writes nothing to Redis, and says when the store lost its data', async () => {
    const own = await startRedis();
    try {
      const cli = bindCli(own, 'watch-reset');
      await cli.setConfig({ Network: '10.244.0.0/16' });
      const store = await cli.store();
      await store.acquireLease({ publicIP: '198.18.0.2', nodeName: 'node-b' });
      const changes = () => Number(/rdb_changes_since_last_save:(\d+)/.exec(own.cli('info', 'persistence'))![1]);
      const before = changes();
      const watch = startCli(['lease', 'list', '--watch', '--json', '--redis-url', cli.url, '--prefix', cli.prefix]);
      try {
        assert.equal(JSON.parse(await watch.nextLine()).type, 'snapshot');
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.equal(changes(), before, 'listing and subscribing changed nothing in Redis');
        own.cli('flushall');
        const records = [JSON.parse(await watch.nextLine()), JSON.parse(await watch.nextLine())];
        assert.deepEqual(records.map((r) => r.type).sort(), ['config', 'reset']);
      } finally {
        const { code, stderr } = await watch.stop('SIGINT');
        assert.equal(code, 0, stderr);
      }
    } finally {
      await own.stop();
    }
  });

  it('exits 1 with one line when Redis goes away under it', async () => {
    const own = await startRedis();
    try {
      const cli = bindCli(own, 'watch-loss');
      const watch = startCli(['lease', 'list', '--watch', '--json', '--redis-url', cli.url, '--prefix', cli.prefix]);
      assert.equal(JSON.parse(await watch.nextLine()).type, 'snapshot');
      await own.kill();
      const exited = await watch.exited;
      const { stderr } = await watch.stop();
      assert.equal(exited, 1);
      assert.equal(oneLineError({ code: exited, stdout: '', stderr }), `miniflannel: Redis unreachable at ${own.url}: ECONNREFUSED`);
    } finally {
      await own.stop();
    }
  });
});
