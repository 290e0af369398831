// Redis over TLS with an ACL user: a real redis-server with --tls-port and a
// self-signed CA made here with openssl, in the underlay namespace of a
// one-node cluster. The daemon and the CLI connect with rediss:// and
// --redis-ca-file (or its environment twin); a wrong password or a CA that
// did not sign the server's certificate is one line and exit 1; and the
// password appears in no log, output or message.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UNDERLAY_GATEWAY, type SandboxNode } from '../../lab/cluster.js';
import { HEALTHZ_PORT, httpGetIn } from '../../lab/daemon.js';
import { cliBin } from '../../lab/paths.js';
import { run, type Outcome } from '../../lab/exec.js';
import { redisServerArgs } from '../../lab/redis.js';
import { daemonBin } from '../../lab/paths.js';
import { lineFrom, TestCluster } from './harness.js';

const PASSWORD = 'Sw0rdf1sh-7c1e9a';
const WRONG_PASSWORD = 'Tr0ub4dor-52b7d0';
const USER = 'flannel';
const URL = `rediss://${USER}:${PASSWORD}@${UNDERLAY_GATEWAY}:6379`;
const MASKED = `rediss://${USER}:***@${UNDERLAY_GATEWAY}:6379`;

let cluster: TestCluster;
let pki: { ca: string; otherCa: string; dir: string };
/** Everything any command or daemon printed, searched for the password at the end. */
const captured: string[] = [];

async function openssl(...args: string[]): Promise<void> {
  await run(['openssl', ...args]);
}

/** A CA, a server certificate it signs for the underlay address, and a second CA that signed nothing. */
async function makePki(dir: string): Promise<typeof pki> {
  await mkdir(dir, { recursive: true });
  const file = (name: string) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl('req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2', '-subj', '/CN=miniflannel test CA');
  await openssl('req', '-x509', ...ec, '-keyout', file('other-ca.key'), '-out', file('other-ca.pem'), '-days', '2', '-subj', '/CN=miniflannel other CA');
  await openssl('req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=redis');
  await writeFile(file('server.ext'), `subjectAltName=IP:${UNDERLAY_GATEWAY}\n`);
  await openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file('server.pem'), '-days', '2', '-extfile', file('server.ext'));
  return { ca: file('ca.pem'), otherCa: file('other-ca.pem'), dir };
}

/** The CLI in the underlay namespace; what it printed is kept for the secrets check. */
async function cli(args: readonly string[], env: Record<string, string> = {}): Promise<Outcome> {
  const outcome = await cluster.sandbox.underlay.execForOutcome([process.execPath, cliBin, ...args], { env: { ...process.env, ...env } });
  captured.push(outcome.stdout, outcome.stderr);
  return outcome;
}

/** A daemon start on node 1 that is expected to fail before it touches the node (its own TUN name and files, just in case). */
async function failingDaemon(node: SandboxNode, args: readonly string[], env: Record<string, string> = {}): Promise<Outcome> {
  const dir = path.join(node.workDir, 'failing');
  const outcome = await node.ns.execForOutcome(
    [
      process.execPath, daemonBin, '--iface', 'eth0', '--tun-name', 'mfbad0', '--subnet-file', path.join(dir, 'subnet.env'), '--cni-conf-dir', dir,
      '--healthz-ip', node.underlayIp, '--healthz-port', '0', '--log-level', 'debug', ...args,
    ],
    { env: { ...process.env, ...env }, timeoutMs: 60_000 },
  );
  captured.push(outcome.stdout, outcome.stderr);
  return outcome;
}

function oneLine(outcome: Outcome): string {
  const lines = outcome.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr:\n${outcome.stderr}`);
  return lines[0]!;
}

before(async () => {
  assert.ok(existsSync('/usr/bin/openssl'), 'openssl is missing: apt-get install openssl (.ci/run and dev.sh do)');
  cluster = await TestCluster.create(1, URL);
  pki = await makePki(path.join(cluster.sandbox.options.workDir, 'pki'));
  const tls = [
    '--tls-port', '6379',
    '--tls-cert-file', path.join(pki.dir, 'server.pem'), '--tls-key-file', path.join(pki.dir, 'server.key'), '--tls-ca-cert-file', pki.ca,
    // Clients prove nothing with certificates here; they authenticate as an ACL user.
    '--tls-auth-clients', 'no',
    '--user', USER, 'on', `>${PASSWORD}`, '~*', '&*', '+@all', '--user', 'default', 'off',
  ];
  const redis = cluster.spawn(cluster.sandbox.underlay, ['redis-server', ...redisServerArgs({ host: UNDERLAY_GATEWAY, port: 0, dir: cluster.sandbox.options.workDir, args: tls })]);
  await lineFrom(redis, 'Ready to accept connections', 'redis-server with TLS');
  const init = await cli(['config', 'init', '--network', '10.244.0.0/16', '--redis-url', URL, '--redis-ca-file', pki.ca]);
  assert.equal(init.exitCode, 0, init.stderr);
  await cluster.startDaemon(cluster.node(1), ['--redis-ca-file', pki.ca, '--log-level', 'debug']);
});

after(async () => {
  await cluster?.destroy();
});

test('rediss:// with the CA file and an ACL user: the daemon gets a lease and the CLI lists it (CA from the environment twin)', async () => {
  const status = await cluster.daemon(1).status();
  assert.equal(status.store!.address, MASKED);
  assert.equal(status.store!.connected, true);
  const listed = await cli(['lease', 'list', '--json', '--redis-url', URL], { MINIFLANNEL_REDIS_CA_FILE: pki.ca });
  assert.equal(listed.exitCode, 0, listed.stderr);
  assert.deepEqual(JSON.parse(listed.stdout).leases.map((l: { subnet: string }) => l.subnet), [status.lease!.subnet]);
});

test('a wrong password: one line naming the user, not the password, and exit 1 (daemon and CLI)', async () => {
  const url = `rediss://${USER}:${WRONG_PASSWORD}@${UNDERLAY_GATEWAY}:6379`;
  const daemon = await failingDaemon(cluster.node(1), ['--redis-url', url, '--redis-ca-file', pki.ca]);
  assert.equal(daemon.exitCode, 1);
  assert.match(oneLine(daemon), /^miniflanneld: Redis at rediss:\/\/flannel:\*\*\*@198\.18\.0\.254:6379 refused the credentials: WRONGPASS .*check the user and password in the URL$/);
  const cliOutcome = await cli(['lease', 'list', '--redis-url', url, '--redis-ca-file', pki.ca]);
  assert.equal(cliOutcome.exitCode, 1);
  assert.match(oneLine(cliOutcome), /^miniflannel: Redis at rediss:\/\/flannel:\*\*\*@198\.18\.0\.254:6379 refused the credentials: WRONGPASS/);
  const noPassword = await cli(['lease', 'list', '--redis-url', `rediss://${UNDERLAY_GATEWAY}:6379`, '--redis-ca-file', pki.ca]);
  assert.equal(noPassword.exitCode, 1);
  assert.match(oneLine(noPassword), /refused the credentials: NOAUTH .*put the user and password in the URL/);
});

test('a CA that did not sign the server certificate: one line saying so, and exit 1 (daemon via MINIFLANNELD_REDIS_CA_FILE, and CLI)', async () => {
  const daemon = await failingDaemon(cluster.node(1), ['--redis-url', URL], { MINIFLANNELD_REDIS_CA_FILE: pki.otherCa });
  assert.equal(daemon.exitCode, 1);
  assert.match(oneLine(daemon), /^miniflanneld: the TLS certificate of Redis at rediss:\/\/flannel:\*\*\*@198\.18\.0\.254:6379 is not trusted: .*--redis-ca-file/);
  for (const caArgs of [['--redis-ca-file', pki.otherCa], []]) {
    const outcome = await cli(['lease', 'list', '--redis-url', URL, ...caArgs]);
    assert.equal(outcome.exitCode, 1, `CA ${caArgs.join(' ') || 'from the system store'}`);
    assert.match(oneLine(outcome), /^miniflannel: the TLS certificate of Redis at rediss:\/\/flannel:\*\*\*@198\.18\.0\.254:6379 is not trusted/);
  }
});

test('a CA file that cannot be used is a usage error naming the flag (exit 2)', async () => {
  const missing = path.join(pki.dir, 'missing.pem');
  const notPem = path.join(pki.dir, 'server.ext');
  for (const [args, problem] of [
    [['--redis-url', URL, '--redis-ca-file', missing], /--redis-ca-file .*missing\.pem: cannot read it \(ENOENT\)/],
    [['--redis-url', URL, '--redis-ca-file', notPem], /--redis-ca-file .*server\.ext: not a PEM certificate/],
    [['--redis-url', `redis://${UNDERLAY_GATEWAY}:6379`, '--redis-ca-file', pki.ca], /--redis-ca-file is only used with TLS/],
  ] as const) {
    const daemon = await failingDaemon(cluster.node(1), args);
    assert.equal(daemon.exitCode, 2, daemon.stderr);
    assert.match(oneLine(daemon), problem);
    const outcome = await cli(['lease', 'list', ...args]);
    assert.equal(outcome.exitCode, 2, outcome.stderr);
    assert.match(oneLine(outcome), problem);
  }
});

test('a malformed URL is a usage error (exit 2) that shows the URL with its password masked', async () => {
  const url = `rediss://${USER}:${PASSWORD}@${UNDERLAY_GATEWAY}:notaport`;
  const daemon = await failingDaemon(cluster.node(1), ['--redis-url', url, '--redis-ca-file', pki.ca]);
  assert.equal(daemon.exitCode, 2);
  assert.match(oneLine(daemon), /^miniflanneld: --redis-url: Redis URL "rediss:\/\/flannel:\*\*\*@198\.18\.0\.254:notaport" is invalid/);
  const outcome = await cli(['lease', 'list', '--redis-url', url]);
  assert.equal(outcome.exitCode, 2);
  assert.match(oneLine(outcome), /^miniflannel: --redis-url: Redis URL "rediss:\/\/flannel:\*\*\*@198\.18\.0\.254:notaport" is invalid/);
});

test('no password in any log, output, status or metrics', async () => {
  const node = cluster.node(1);
  const base = `http://${node.underlayIp}:${HEALTHZ_PORT}`;
  captured.push((await httpGetIn(node.ns, `${base}/status`)).body, (await httpGetIn(node.ns, `${base}/metrics`)).body);
  const status = await cli(['status', '--daemon', base]);
  assert.equal(status.exitCode, 0, status.stderr);
  const daemonLog = await readFile(cluster.daemon(1).logFile, 'utf8');
  assert.match(daemonLog, /rediss:\/\/flannel:\*\*\*@/, 'the log names the store, masked');
  const everything = [daemonLog, ...captured].join('\n');
  assert.ok(everything.length > 10_000, `enough was captured to mean something (${everything.length} bytes)`);
  for (const secret of [PASSWORD, WRONG_PASSWORD]) assert.ok(!everything.includes(secret), `${secret} appears in what was captured`);
});
