// deploy/redis/redis.yaml's Redis, run as kubelet would run its container
// (command, args with $(REDIS_PASSWORD), env from the Secret, working
// directory, its ConfigMap's redis.conf, the data hostPath) on a node
// namespace of the test: the password, the probes and persistence.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { waitFor } from '../../lab/daemon.js';
import { exited, stopProcess } from '../../lab/exec.js';
import { Netns, removeStaleNamespaces, runPrefix } from '../../lab/netns.js';
import { cliBin } from '../../lab/paths.js';
import { container, findObject, loadObjects, redisManifest, resolvePort, type ConfigMap, type Workload } from './manifests.js';
import { NODE_IMAGE_PATH } from './dockerfile.js';
import { containerProcess, type ContainerProcess } from './pod.js';

const objects = loadObjects(redisManifest);
const deployment = findObject<Workload>(objects, 'Deployment');
const config = findObject<ConfigMap>(objects, 'ConfigMap');
const podSpec = deployment.spec.template.spec;
const redis = container(podSpec, 'redis');
const NODE_IP = '198.18.9.1';
const PASSWORD = 'redis-manifest-test-0123456789';
/** The Secret's url, in the form the manifest's header tells operators to create. */
const URL = `redis://:${PASSWORD}@${NODE_IP}:6379`;

describe('the Redis of deploy/redis/redis.yaml', () => {
  let ns: Netns;
  let work: string;
  let dataDir: string;
  let proc: ContainerProcess;
  let server: ChildProcess | undefined;
  let log: string;

  const probeEnv = (password: string) => ({ ...proc.env, REDISCLI_AUTH: password });
  const readiness = (password = PASSWORD) => ns.execForOutcome(redis.readinessProbe!.exec!.command, { env: probeEnv(password) });

  async function start(): Promise<void> {
    server = ns.spawn(proc.argv, { env: proc.env, cwd: proc.cwd });
    const out = createWriteStream(log, { flags: 'a' });
    server.stdout!.pipe(out);
    server.stderr!.pipe(out);
    await waitFor('Redis to pass its readiness probe', async () => {
      if (server!.exitCode !== null) throw new Error(`redis-server exited with ${server!.exitCode}: ${await readFile(log, 'utf8')}`);
      return (await readiness()).exitCode === 0;
    });
  }

  before(async () => {
    await removeStaleNamespaces();
    ns = await Netns.create(`${runPrefix()}redis`);
    await ns.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
    await ns.ip('addr', 'add', `${NODE_IP}/24`, 'dev', 'eth0');
    await ns.ip('link', 'set', 'eth0', 'up');
    await ns.ip('link', 'set', 'eth1', 'up');
    work = await mkdtemp(path.join(tmpdir(), 'miniflannel-redis-manifest-'));
    log = path.join(work, 'redis.log');
    const configDir = path.join(work, 'config');
    await mkdir(configDir);
    for (const [key, value] of Object.entries(config.data)) await writeFile(path.join(configDir, key), value);
    const data = podSpec.volumes!.find((v) => v.name === 'data')!;
    assert.equal(data.hostPath?.type, 'DirectoryOrCreate');
    dataDir = path.join(work, 'node', data.hostPath.path);
    await mkdir(dataDir, { recursive: true });
    proc = containerProcess({
      pod: podSpec,
      container: redis,
      inputs: { fields: {}, secrets: { 'miniflannel-redis': { password: PASSWORD, url: URL } } },
      volumes: { config: configDir, data: dataDir },
      imageEnv: { PATH: NODE_IMAGE_PATH },
    });
    await start();
  });

  after(async () => {
    if (server) await stopProcess(server);
    if (ns) await ns.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('it answers only clients with the password, and the readiness probe tells the two apart', async () => {
    const anonymous = await ns.execForOutcome(['redis-cli', '-h', NODE_IP, 'ping']);
    assert.match(anonymous.stdout + anonymous.stderr, /NOAUTH/);
    assert.equal((await readiness()).exitCode, 0);
    assert.notEqual((await readiness('not-the-password')).exitCode, 0, 'the probe fails on a NOAUTH answer');
  });

  test('the liveness probe\'s port is the one Redis serves on the node\'s address', async () => {
    const port = resolvePort(redis, redis.livenessProbe!.tcpSocket!.port);
    const pong = await ns.exec(['redis-cli', '-h', NODE_IP, '-p', String(port), '--no-auth-warning', '-a', PASSWORD, 'ping']);
    assert.equal(pong.trim(), 'PONG');
  });

  test('maxclients is sized for 10,000 nodes, or as close as the file-descriptor limit allows, and Redis says when it is lowered', async () => {
    assert.match(config.data['redis.conf']!, /^\s*maxclients 25000$/m);
    const got = Number((await ns.exec(['redis-cli', '-h', NODE_IP, '--no-auth-warning', '-a', PASSWORD, 'config', 'get', 'maxclients'])).trim().split('\n')[1]);
    const fds = Number((await ns.exec(['sh', '-c', 'ulimit -n'])).trim());
    // Redis keeps 32 descriptors for itself.
    assert.equal(got, Math.min(25_000, fds - 32));
    if (got < 25_000) assert.match(await readFile(log, 'utf8'), /maxclients has been reduced to/);
  });

  test('miniflannel stores its config through the Secret\'s URL, and it survives a restart from the data hostPath', async () => {
    await ns.exec([process.execPath, cliBin, 'config', 'init', '--network', '10.245.0.0/16', '--redis-url', URL]);
    assert.ok(existsSync(path.join(dataDir, 'appendonlydir')), 'the append-only file is in the data volume');
    // The Deployment's Recreate strategy: the old pod stops before the new one starts on the same directory.
    server!.kill('SIGTERM');
    assert.equal(await exited(server!), 0);
    await start();
    const stored = JSON.parse(await ns.exec([process.execPath, cliBin, 'config', 'get', '--json', '--redis-url', URL]));
    assert.equal(stored.Network, '10.245.0.0/16');
  });
});
