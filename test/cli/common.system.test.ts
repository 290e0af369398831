// What every command shares: global options and their environment twins,
// exit codes and one-line errors, colour, help with examples, and `version`.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { packageRoot } from '../../lab/paths.js';
import { freePort, startRedis, type RedisServer } from '../../lab/redis.js';
import { bindCli, closeStores, oneLineError, runCli } from './helpers.js';

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await closeStores();
  await redis?.stop();
});

const version = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

describe('version', () => {
  it('prints the package version and the Node.js version, in text and JSON', async () => {
    const text = await runCli(['version']);
    assert.equal(text.code, 0);
    assert.equal(text.stdout, `miniflannel ${version} (node ${process.version}, ${process.platform}/${process.arch})\n`);
    const json = await runCli(['version', '--json']);
    assert.deepEqual(JSON.parse(json.stdout), { name: 'miniflannel', version, node: process.version, platform: `${process.platform}/${process.arch}` });
  });
});

describe('Redis unreachable', () => {
  it('is exit 1 and one line naming the address, for every command that needs the store', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const commands = [['lease', 'list'], ['lease', 'show', '10.244.3.0/24'], ['lease', 'revoke', '10.244.3.0/24', '--yes'], ['config', 'get'], ['config', 'init', '--network', '10.244.0.0/16']];
    const results = await Promise.all(commands.map((args) => runCli([...args, '--redis-url', url])));
    results.forEach((result, i) => {
      assert.equal(result.code, 1, commands[i]!.join(' '));
      assert.equal(oneLineError(result), `miniflannel: Redis unreachable at ${url}: ECONNREFUSED`);
    });
  });

  it('prints the stack and the cause chain only with --debug', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const result = await runCli(['lease', 'list', '--redis-url', url, '--debug']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^miniflannel: Redis unreachable at ${url}: ECONNREFUSED$`, 'm'));
    assert.match(result.stderr, /^StoreUnavailableError: Redis unreachable/m);
    assert.match(result.stderr, /^\s+at /m);
    assert.match(result.stderr, /^caused by: Error: connect ECONNREFUSED/m);
  });

  it('gives up within --timeout on a server that accepts but never answers', async () => {
    const silent: Server = createServer((socket: Socket) => socket.on('error', () => {}));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const sockets = new Set<Socket>();
    silent.on('connection', (s) => sockets.add(s));
    try {
      const port = (silent.address() as { port: number }).port;
      const started = Date.now();
      const result = await runCli(['lease', 'list', '--redis-url', `redis://127.0.0.1:${port}`], { env: { MINIFLANNEL_TIMEOUT: '400' } });
      const elapsed = Date.now() - started;
      assert.equal(result.code, 1);
      assert.match(oneLineError(result), new RegExp(`^miniflannel: Redis unreachable at redis://127\\.0\\.0\\.1:${port}`));
      assert.ok(elapsed < 2_900, `took ${elapsed} ms with a 400 ms timeout (the default is 3000 ms)`);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });
});

describe('usage errors: exit 2, one line', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['an unknown flag', ['lease', 'list', '--bogus'], /^miniflannel: unknown option '--bogus'; see 'miniflannel lease list --help'$/],
    ['an unknown command', ['lease', 'lst'], /^miniflannel: unknown command 'lst' \(Did you mean list\?\)/],
    ['a missing argument', ['lease', 'show'], /missing required argument 'subnet'/],
    ['a bad --timeout', ['lease', 'list', '--timeout', 'soon'], /--timeout <ms>' argument 'soon' is invalid/],
    ['a bad --redis-url', ['lease', 'list', '--redis-url', 'http://127.0.0.1:6379'], /^miniflannel: --redis-url: Redis URL "http:\/\/127\.0\.0\.1:6379" is invalid/],
    ['a bad --prefix', ['config', 'get', '--prefix', 'a{b}'], /^miniflannel: --prefix: keyPrefix must be/],
    // The daemon's checks of the Redis flags (daemon/redis-flags.ts), run by the CLI too.
    ['a --redis-ca-file without TLS', ['lease', 'list', '--redis-ca-file', '/etc/hostname'], /^miniflannel: --redis-ca-file is only used with TLS/],
    ['an unreadable --redis-ca-file', ['lease', 'list', '--redis-url', 'rediss://127.0.0.1:6379', '--redis-ca-file', '/nonexistent/ca.pem'], /^miniflannel: --redis-ca-file \/nonexistent\/ca\.pem: cannot read it \(ENOENT\)$/],
  ];
  it('for each kind of mistake', async () => {
    const results = await Promise.all(cases.map(([, args]) => runCli(args)));
    results.forEach((result, i) => {
      const [what, , rule] = cases[i]!;
      assert.equal(result.code, 2, `${what}: ${result.stderr}`);
      assert.match(oneLineError(result), rule, what);
      assert.equal(result.stdout, '', what);
    });
  });

  it('for a bad value from the environment too', async () => {
    const result = await runCli(['lease', 'list'], { env: { MINIFLANNEL_TIMEOUT: '-5' } });
    assert.equal(result.code, 2);
    assert.match(oneLineError(result), /from env 'MINIFLANNEL_TIMEOUT' is invalid/);
  });
});

describe('global options', () => {
  it('take MINIFLANNEL_REDIS_URL and MINIFLANNEL_PREFIX, and flags win over them', async () => {
    const cli = bindCli(redis, 'env');
    await cli.setConfig({ Network: '10.244.0.0/16' });
    const viaEnv = await runCli(['config', 'get', '--json'], { env: { MINIFLANNEL_REDIS_URL: redis.url, MINIFLANNEL_PREFIX: cli.prefix } });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal(JSON.parse(viaEnv.stdout).Network, '10.244.0.0/16');
    const flagWins = await runCli(['config', 'get', '--prefix', `${cli.prefix}-other`], { env: { MINIFLANNEL_REDIS_URL: redis.url, MINIFLANNEL_PREFIX: cli.prefix } });
    assert.equal(flagWins.code, 1);
    assert.match(oneLineError(flagWins), new RegExp(`no network config is stored at Redis key \\{${cli.prefix}-other\\}:config`));
  });

  it('are accepted before the command name as well as after it', async () => {
    const cli = bindCli(redis, 'order');
    await cli.setConfig({ Network: '10.244.0.0/16' });
    const result = await runCli(['--json', '--redis-url', redis.url, '--prefix', cli.prefix, 'config', 'get']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).SubnetLen, 24);
  });
});

describe('colour', () => {
  it('is off without a terminal, on with FORCE_COLOR, and off again with --no-color or NO_COLOR', async () => {
    const cli = bindCli(redis, 'colour');
    await cli.setConfig({ Network: '10.244.0.0/16' });
    await (await cli.store()).reserve('10.244.9.0/24', '198.18.0.9');
    const ansi = /\x1b\[[0-9;]*m/;
    const plain = await cli.ok(['lease', 'list']);
    assert.doesNotMatch(plain, ansi);
    const forced = await cli.ok(['lease', 'list'], { env: { FORCE_COLOR: '1' } });
    assert.match(forced, /\x1b\[1mSUBNET/, 'a bold header');
    assert.match(forced, /\x1b\[36mreserved\x1b\[39m/, 'reservations in cyan');
    assert.equal(forced.replace(/\x1b\[[0-9;]*m/g, ''), plain, 'colour changes nothing else, alignment included');
    assert.equal(await cli.ok(['lease', 'list', '--no-color'], { env: { FORCE_COLOR: '1' } }), plain);
    assert.equal(await cli.ok(['lease', 'list'], { env: { FORCE_COLOR: '1', NO_COLOR: '1' } }), plain);
  });
});

describe('help', () => {
  it('on every command shows its usage, the global options and an example', async () => {
    // Walks the tree the binary itself reports, so a command added later is covered too.
    const seen: string[] = [];
    const visit = async (path: string[]): Promise<void> => {
      const result = await runCli([...path, '--help']);
      const name = ['miniflannel', ...path].join(' ');
      seen.push(name);
      assert.equal(result.code, 0, `${name} --help: ${result.stderr}`);
      assert.match(result.stdout, new RegExp(`^Usage: ${name} `), name);
      assert.match(result.stdout, /--redis-url <url>/, `${name} lists the global options`);
      assert.match(result.stdout, /\nExamples?:\n {2}(sudo )?miniflannel \S/, `${name} shows an example`);
      const commands = /\nCommands:\n([\s\S]*?)(?:\n\n|$)/.exec(result.stdout)?.[1] ?? '';
      const names = [...commands.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]!).filter((n) => n !== 'help');
      await Promise.all(names.map((sub) => visit([...path, sub])));
    };
    await visit([]);
    for (const name of ['miniflannel lease list', 'miniflannel lease show', 'miniflannel lease reserve', 'miniflannel lease revoke', 'miniflannel config get', 'miniflannel config set', 'miniflannel config init', 'miniflannel status', 'miniflannel version', 'miniflannel bench e2e', 'miniflannel sandbox up']) {
      assert.ok(seen.includes(name), `${name} was visited (${seen.join(', ')})`);
    }
  });
});
