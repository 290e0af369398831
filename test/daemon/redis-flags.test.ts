// The Redis flags shared by miniflanneld and the CLI, turned into the lease
// store's connection options by one function: each check and default here
// holds for both (the daemon's flags and the CLI's store call it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exitCodeOf, EXIT_USAGE, UsageError as CliUsageError } from '../../cli/errors.js';
import { Command } from 'commander';
import { addGlobalOptions } from '../../cli/conventions.js';
import { parseDaemonFlags } from '../../daemon/flags.js';
import { minReplicasArg, redisConnectionOptions } from '../../daemon/redis-flags.js';
import { UsageError } from '../../daemon/usage.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const dir = mkdtempSync(path.join(tmpdir(), 'miniflannel-redis-flags-'));
const caFile = path.join(dir, 'ca.pem');
writeFileSync(caFile, PEM);
const notPem = path.join(dir, 'not.pem');
writeFileSync(notPem, 'hello\n');

const usage = (pattern: RegExp) => (err: unknown) => err instanceof UsageError && pattern.test(err.message);

test('min replicas: auto (or unset) is derived from the URL, a number is kept', () => {
  assert.deepEqual(redisConnectionOptions({ redisUrl: 'redis://127.0.0.1:6379' }), { url: 'redis://127.0.0.1:6379', minReplicas: 0 });
  assert.equal(redisConnectionOptions({ redisUrl: 'redis://127.0.0.1:6379', redisMinReplicas: 'auto' }).minReplicas, 0);
  assert.equal(redisConnectionOptions({ redisUrl: 'redis+sentinel://127.0.0.1:26379/mymaster' }).minReplicas, 1);
  assert.equal(redisConnectionOptions({ redisUrl: 'redis+sentinel://127.0.0.1:26379/mymaster', redisMinReplicas: 'auto' }).minReplicas, 1);
  assert.equal(redisConnectionOptions({ redisUrl: 'redis+sentinel://127.0.0.1:26379/mymaster', redisMinReplicas: 0 }).minReplicas, 0);
  assert.equal(redisConnectionOptions({ redisUrl: 'redis://127.0.0.1:6379', redisMinReplicas: 2 }).minReplicas, 2);
});

test('the CA file is read for a TLS URL and handed over as tls.ca', () => {
  const options = redisConnectionOptions({ redisUrl: 'rediss://127.0.0.1:6380', redisCaFile: caFile });
  assert.equal(options.url, 'rediss://127.0.0.1:6380');
  assert.equal(String(options.tls?.ca), PEM);
  assert.equal(redisConnectionOptions({ redisUrl: 'rediss://127.0.0.1:6380' }).tls, undefined, 'no CA file: the system CAs');
});

test('every mistake is a UsageError naming the flag', () => {
  assert.throws(() => redisConnectionOptions({ redisUrl: 'redis://127.0.0.1', redisCaFile: caFile }), usage(/^--redis-ca-file is only used with TLS/));
  assert.throws(() => redisConnectionOptions({ redisUrl: 'rediss://127.0.0.1', redisCaFile: path.join(dir, 'missing.pem') }), usage(/^--redis-ca-file .*missing\.pem: cannot read it \(ENOENT\)$/));
  assert.throws(() => redisConnectionOptions({ redisUrl: 'rediss://127.0.0.1', redisCaFile: notPem }), usage(/^--redis-ca-file .*not\.pem: not a PEM certificate/));
  assert.throws(() => redisConnectionOptions({ redisUrl: 'http://127.0.0.1:6379' }), usage(/^--redis-url: /));
});

test("a bad URL's message masks the password", () => {
  assert.throws(
    () => redisConnectionOptions({ redisUrl: 'redis://u:hunter2@host:port' }),
    (err: unknown) => err instanceof UsageError && /^--redis-url: .*u:\*\*\*@/.test(err.message) && !err.message.includes('hunter2'),
  );
});

test('the CLI and the daemon share one UsageError class, so a mistake found by shared code exits 2 in both', () => {
  assert.equal(CliUsageError, UsageError);
  const err = (() => {
    try {
      redisConnectionOptions({ redisUrl: 'redis://127.0.0.1', redisCaFile: caFile });
    } catch (caught) {
      return caught;
    }
    return undefined;
  })();
  assert.equal(exitCodeOf(err), EXIT_USAGE);
});

test('--redis-min-replicas parses alike in the daemon and the CLI: a whole number or auto', () => {
  const daemon = (value: string) => parseDaemonFlags(['node', 'miniflanneld', '--redis-min-replicas', value]).redisMinReplicas;
  const cli = (value: string) => addGlobalOptions(new Command()).exitOverride().configureOutput({ writeErr: () => {} }).parse(['node', 'miniflannel', '--redis-min-replicas', value]).opts<{ redisMinReplicas: unknown }>().redisMinReplicas;
  assert.equal(daemon('auto'), undefined, 'the daemon derives it from the URL');
  assert.equal(daemon('2'), 2);
  assert.equal(cli('auto'), 'auto');
  assert.equal(cli('2'), 2);
  assert.throws(() => cli('two'), /not a whole number of replicas or 'auto'/);
  assert.throws(() => minReplicasArg('-1'), /not a whole number of replicas or 'auto'/);
});
