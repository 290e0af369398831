// `miniflannel config ...` against a real redis-server, run as a subprocess.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startRedis, type RedisServer } from '../../lab/redis.js';
import { bindCli, closeStores, oneLineError } from './helpers.js';

let redis: RedisServer;
let dir: string;

before(async () => {
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'miniflannel-cli-config-'));
});
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await closeStores();
  await redis?.stop();
});

let files = 0;
function netConf(content: unknown): string {
  const path = join(dir, `net-conf-${++files}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

const DEFAULTS_16 = { Network: '10.244.0.0/16', SubnetLen: 24, SubnetMin: '10.244.1.0', SubnetMax: '10.244.255.0', Backend: { Type: 'udp', Port: 8285 } };

describe('config init and get', () => {
  it('fails with exit 1 before a config exists, saying how to set one', async () => {
    const cli = bindCli(redis, 'none');
    const result = await cli.run(['config', 'get']);
    assert.equal(result.code, 1);
    assert.match(oneLineError(result), /no network config is stored at Redis key \{cli-\d+-none-\d+\}:config; run `miniflannel config set`/);
  });

  it("stores flannel's defaults for the network and prints them, in text and JSON", async () => {
    const cli = bindCli(redis, 'init');
    const out = await cli.ok(['config', 'init', '--network', '10.244.0.0/16']);
    assert.match(out, new RegExp(`stored at \\{${cli.prefix}\\}:config`));
    assert.match(out, /^ {2}Network:\s+10\.244\.0\.0\/16$/m);
    assert.match(out, /^ {2}SubnetLen:\s+24$/m);
    assert.match(out, /^ {2}Backend:\s+udp, port 8285$/m);
    // Stored as flannel writes it: the defaults stay implicit.
    assert.deepEqual(JSON.parse(redis.cli('GET', `{${cli.prefix}}:config`)), { Network: '10.244.0.0/16', Backend: { Type: 'udp' } });

    const got = await cli.ok(['config', 'get']);
    assert.match(got, /^SubnetMin:\s+10\.244\.1\.0$/m);
    assert.match(got, /^SubnetMax:\s+10\.244\.255\.0$/m);
    assert.deepEqual(JSON.parse(await cli.ok(['config', 'get', '--json'])), DEFAULTS_16);

    const small = bindCli(redis, 'init-small');
    assert.deepEqual(JSON.parse(await small.ok(['config', 'init', '--network', '10.5.0.0/28', '--json'])), {
      Network: '10.5.0.0/28', SubnetLen: 30, SubnetMin: '10.5.0.4', SubnetMax: '10.5.0.12', Backend: { Type: 'udp', Port: 8285 },
    });
  });

  it('refuses to replace an existing config without --force (exit 1), and replaces it with --force', async () => {
    const cli = bindCli(redis, 'init-twice');
    await cli.setConfig({ Network: '10.244.0.0/16' });
    const again = await cli.run(['config', 'init', '--network', '10.8.0.0/16']);
    assert.equal(again.code, 1);
    assert.match(oneLineError(again), /already exists .*Network 10\.244\.0\.0\/16.*--force/);
    assert.equal((await cli.storedConfig()).Network, '10.244.0.0/16');
    await cli.ok(['config', 'init', '--network', '10.8.0.0/16', '--force']);
    assert.equal((await cli.storedConfig()).Network, '10.8.0.0/16');
  });

  it('refuses a bad --network with exit 2, naming the flag', async () => {
    const cli = bindCli(redis, 'init-bad');
    const networks = ['10.244.0.0', '10.244.0.0/30', '10.244.1.0/16'];
    const results = await Promise.all(networks.map((network) => cli.run(['config', 'init', '--network', network])));
    results.forEach((result, i) => {
      assert.equal(result.code, 2, networks[i]);
      assert.match(oneLineError(result), /^miniflannel: --network: Network /, networks[i]);
    });
    await assert.rejects(cli.storedConfig(), { name: 'ConfigMissingError' }, 'nothing was stored');
  });
});

describe('config set', () => {
  it('stores a valid file and shows each changed field, old → new', async () => {
    const cli = bindCli(redis, 'set');
    await cli.setConfig({ Network: '10.244.0.0/16' });
    const out = await cli.ok(['config', 'set', '--file', netConf({ Network: '10.244.0.0/16', SubnetLen: 26, Backend: { Type: 'udp', Port: 9000 } })]);
    const lines = out.trimEnd().split('\n');
    assert.match(lines[0]!, /network config at \{cli-.*\}:config is updated:/);
    assert.deepEqual(lines.slice(1).map((l) => l.trim().split(/\s+/)), [
      ['SubnetLen', '24', '→', '26'],
      // The defaults follow SubnetLen: the second and the last /26.
      ['SubnetMin', '10.244.1.0', '→', '10.244.0.64'],
      ['SubnetMax', '10.244.255.0', '→', '10.244.255.192'],
      ['Backend.Port', '8285', '→', '9000'],
    ]);
    assert.equal((await cli.storedConfig()).SubnetLen, 26);
  });

  it('reads stdin, with --file - or without --file, and reports changes as JSON', async () => {
    const cli = bindCli(redis, 'stdin');
    const created = JSON.parse(await cli.ok(['config', 'set', '--json'], { input: '{"Network": "10.9.0.0/16"}' }));
    assert.deepEqual(Object.keys(created), ['key', 'stored', 'previous', 'config', 'changes']);
    assert.equal(created.stored, true);
    assert.equal(created.previous, null);
    assert.deepEqual(created.changes[0], { field: 'Network', from: null, to: '10.9.0.0/16' });
    assert.equal(created.changes.length, 6);

    const updated = JSON.parse(await cli.ok(['config', 'set', '--file', '-', '--json'], { input: '{"Network": "10.9.0.0/16", "SubnetMin": "10.9.10.0"}' }));
    assert.deepEqual(updated.changes, [{ field: 'SubnetMin', from: '10.9.1.0', to: '10.9.10.0' }]);
    assert.equal(updated.previous.SubnetMin, '10.9.1.0');
    assert.equal(updated.config.SubnetMin, '10.9.10.0');
  });

  it('round-trips config get --json, and says when nothing changed', async () => {
    const cli = bindCli(redis, 'roundtrip');
    await cli.setConfig({ Network: '10.244.0.0/16' });
    const exported = await cli.ok(['config', 'get', '--json']);
    const out = await cli.ok(['config', 'set'], { input: exported });
    assert.match(out, /is unchanged/);
    assert.deepEqual(await cli.storedConfig(), DEFAULTS_16);
  });

  it('validates without storing under --dry-run', async () => {
    const cli = bindCli(redis, 'dry');
    await cli.setConfig({ Network: '10.244.0.0/16' });
    const out = await cli.ok(['config', 'set', '--dry-run', '--file', netConf({ Network: '10.244.0.0/16', SubnetLen: 25 })]);
    assert.match(out, /would be updated/);
    assert.match(out, /SubnetLen\s+24 → 25/);
    assert.equal((await cli.storedConfig()).SubnetLen, 24);
  });

  it('refuses invalid files with exit 2 naming the field, and leaves the stored config alone', async () => {
    const cli = bindCli(redis, 'invalid');
    await cli.setConfig({ Network: '10.244.0.0/16' });
    const cases: Array<[string, unknown, RegExp]> = [
      ['not JSON', '{"Network": ', /not valid JSON/],
      ['an unknown field', { Network: '10.244.0.0/16', SubnetLength: 24 }, /SubnetLength is not a known field/],
      ['another backend', { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }, /Backend\.Type "vxlan" is not supported/],
      ['a SubnetMin outside the network', { Network: '10.244.0.0/16', SubnetMin: '10.245.1.0' }, /SubnetMin 10\.245\.1\.0 is not in the range of the Network/],
      ['a SubnetLen too large for the network', { Network: '10.244.0.0/16', SubnetLen: 17 }, /SubnetLen must be at least/],
    ];
    const results = await Promise.all(cases.map(([, content]) => cli.run(['config', 'set', '--file', netConf(content)])));
    results.forEach((result, i) => {
      const [what, , rule] = cases[i]!;
      assert.equal(result.code, 2, `${what}: ${result.stderr}`);
      assert.match(oneLineError(result), rule, what);
    });
    assert.deepEqual(await cli.storedConfig(), DEFAULTS_16);
  });

  it('fails with exit 1 when the file cannot be read', async () => {
    const cli = bindCli(redis, 'nofile');
    const missing = join(dir, 'absent.json');
    const result = await cli.run(['config', 'set', '--file', missing]);
    assert.equal(result.code, 1);
    assert.equal(oneLineError(result), `miniflannel: cannot read the network config from ${missing}: ENOENT`);
  });

  it('refuses to change Network or SubnetLen while leases exist, unless --force, which warns', async () => {
    const cli = bindCli(redis, 'guard');
    await cli.setConfig({ Network: '10.244.0.0/16' });
    await (await cli.store()).acquireLease({ publicIP: '198.18.0.2', nodeName: 'node-b' });
    const moved = netConf({ Network: '10.8.0.0/16' });
    const [refused, resized, other] = await Promise.all([
      cli.run(['config', 'set', '--file', moved]),
      cli.run(['config', 'set', '--file', netConf({ Network: '10.244.0.0/16', SubnetLen: 25 })]),
      // Fields other than Network and SubnetLen may change under leases.
      cli.run(['config', 'set', '--dry-run', '--file', netConf({ Network: '10.244.0.0/16', Backend: { Type: 'udp', Port: 9000 } })]),
    ]);
    assert.equal(refused.code, 1);
    assert.match(oneLineError(refused), /refusing to change Network while 1 lease exists: .*--force/);
    assert.equal(resized.code, 1);
    assert.match(oneLineError(resized), /refusing to change SubnetLen while 1 lease exists/);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(other.stderr, '');
    assert.equal((await cli.storedConfig()).Network, '10.244.0.0/16');

    const forced = await cli.run(['config', 'set', '--file', moved, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /^miniflannel: warning: changing Network while 1 lease exists/);
    assert.match(forced.stdout, /Network\s+10\.244\.0\.0\/16 → 10\.8\.0\.0\/16/);
    assert.equal((await cli.storedConfig()).Network, '10.8.0.0/16');
  });

  it('refuses an empty stdin as invalid JSON (exit 2)', async () => {
    const cli = bindCli(redis, 'empty-stdin');
    const result = await cli.run(['config', 'set']);
    assert.equal(result.code, 2);
    assert.match(oneLineError(result), /not valid JSON/);
  });
});
