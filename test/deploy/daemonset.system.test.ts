// The DaemonSet contract: deploy/kubernetes/miniflannel.yaml's containers
// run as kubelet would run them, on two nodes of a sandbox cluster, with the
// Redis of deploy/redis/redis.yaml on the underlay (a host-network node).
// Each container's command, args and env come from the manifest; downward-API
// fields and the Secret resolve to the node's values; hostPaths and the
// ConfigMap become directories of the test; `miniflanneld` and `miniflannel`
// are the programs the Dockerfile links, here the repository's build. Pods
// are made by the real CNI plugins from the conflist the daemon wrote.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { UNDERLAY_GATEWAY, type Pod, type Sandbox, type SandboxNode } from '../../lab/cluster.js';
import { httpGetIn, waitFor } from '../../lab/daemon.js';
import { exited, stopProcess, type Outcome } from '../../lab/exec.js';
import type { Netns } from '../../lab/netns.js';
import { createTestSandbox, destroyTestSandbox } from '../harness/namespaces.js';
import { packageRoot } from '../../lab/paths.js';
import { imagePrograms, NODE_IMAGE_PATH, parseDockerfile } from './dockerfile.js';
import {
  container,
  daemonManifest,
  findObject,
  loadObjects,
  redisManifest,
  type ConfigMap,
  type Container,
  type Workload,
} from './manifests.js';
import { containerProcess, probeUrl, standInVolumes, type PodInputs } from './pod.js';
import { tcpTransfer } from '../harness/pod-traffic.js';

const objects = loadObjects(daemonManifest);
const daemonSet = findObject<Workload>(objects, 'DaemonSet');
const netConfMap = findObject<ConfigMap>(objects, 'ConfigMap');
const podSpec = daemonSet.spec.template.spec;
const daemonContainer = container(podSpec, 'miniflanneld');
const initContainer = container(podSpec, 'load-net-conf', true);
const redisObjects = loadObjects(redisManifest);
const redisDeployment = findObject<Workload>(redisObjects, 'Deployment');
const redisConfigMap = findObject<ConfigMap>(redisObjects, 'ConfigMap');

const REDIS_PASSWORD = 'c0ntract-test-pa55word';
const redisUrl = (db = 0, port = 6379) => `redis://:${REDIS_PASSWORD}@${UNDERLAY_GATEWAY}:${port}${db ? `/${db}` : ''}`;
const dockerfile = parseDockerfile(await readFile(path.join(packageRoot, 'deploy', 'Dockerfile'), 'utf8'));

let work: string;
let binDir: string;
let imageEnv: Record<string, string>;

/** `miniflanneld` and `miniflannel` as the image links them, pointing at this repository's build. */
async function linkImagePrograms(): Promise<void> {
  binDir = path.join(work, 'bin');
  await mkdir(binDir, { recursive: true });
  const programs = imagePrograms(dockerfile);
  assert.deepEqual(Object.keys(programs).sort(), ['miniflannel', 'miniflanneld'], 'the image links both programs');
  for (const [name, target] of Object.entries(programs)) await symlink(path.join(packageRoot, target), path.join(binDir, name));
  const runtimeEnv = Object.fromEntries(
    dockerfile.stages.at(-1)!.instructions.filter((i) => i.keyword === 'ENV').map((i) => i.text.split('=') as [string, string]),
  );
  imageEnv = { ...runtimeEnv, PATH: `${binDir}:${NODE_IMAGE_PATH}` };
}

interface NodeSetup {
  node: SandboxNode;
  root: string;
  inputs: PodInputs;
  volumes: Record<string, string>;
  nodePaths: Record<string, string>;
}

async function nodeSetup(node: SandboxNode, url = redisUrl()): Promise<NodeSetup> {
  const root = path.join(work, `node${node.index}`);
  await mkdir(root, { recursive: true, mode: 0o755 });
  return {
    node,
    root,
    inputs: {
      fields: { 'spec.nodeName': node.ns.name, 'status.hostIP': node.underlayIp, 'status.podIP': node.underlayIp, 'metadata.namespace': daemonSet.metadata.namespace! },
      secrets: { 'miniflannel-redis': { url, password: REDIS_PASSWORD } },
    },
    volumes: await standInVolumes(podSpec, root, [netConfMap]),
    // host-local runs on the node, outside the container: its data directory is the node's.
    nodePaths: { '/var/lib/cni/networks': path.join(root, 'var/lib/cni/networks') },
  };
}

const processFor = (setup: NodeSetup, c: Container) =>
  containerProcess({ pod: podSpec, container: c, inputs: setup.inputs, volumes: setup.volumes, nodePaths: setup.nodePaths, imageEnv });

/** Runs the init container to its end on the node, as kubelet does before the daemon starts. */
function runInitContainer(setup: NodeSetup): Promise<Outcome> {
  const p = processFor(setup, initContainer);
  return setup.node.ns.execForOutcome(p.argv, { env: p.env, timeoutMs: 30_000 });
}

interface RunningContainer {
  process: ChildProcess;
  log: string;
}

function startContainer(ns: Netns, p: ReturnType<typeof processFor>, log: string): RunningContainer {
  const child = ns.spawn(p.argv, { env: p.env, cwd: p.cwd });
  const out = createWriteStream(log);
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  return { process: child, log };
}

describe('the DaemonSet of deploy/kubernetes/miniflannel.yaml, run as kubelet would on two nodes', () => {
  let sandbox: Sandbox;
  let redis: RunningContainer | undefined;
  const nodes: NodeSetup[] = [];
  const daemons = new Map<NodeSetup, RunningContainer>();
  const initOutcomes: Outcome[] = [];
  const pods: Pod[] = [];

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'miniflannel-daemonset-'));
    // The init container runs as nobody: it must reach its ConfigMap and the programs.
    await chmod(work, 0o755);
    await linkImagePrograms();
    sandbox = await createTestSandbox(2);

    // Redis as deploy/redis/redis.yaml runs it, on the underlay namespace standing for its host-network node.
    const redisPod = redisDeployment.spec.template.spec;
    const redisContainer = container(redisPod, 'redis');
    const redisRoot = path.join(work, 'redis-node');
    const redisSetup = {
      pod: redisPod,
      container: redisContainer,
      inputs: { fields: {}, secrets: { 'miniflannel-redis': { password: REDIS_PASSWORD, url: redisUrl() } } },
      volumes: await standInVolumes(redisPod, redisRoot, [redisConfigMap]),
      imageEnv: { PATH: NODE_IMAGE_PATH },
    };
    redis = startContainer(sandbox.underlay, containerProcess(redisSetup), path.join(work, 'redis.log'));
    const readiness = redisContainer.readinessProbe!.exec!.command;
    const probeEnv = containerProcess(redisSetup).env;
    await waitFor('Redis to pass its readiness probe', async () => {
      if (redis!.process.exitCode !== null) throw new Error(`redis-server exited: ${await readFile(redis!.log, 'utf8')}`);
      return (await sandbox.underlay.execForOutcome(readiness, { env: probeEnv })).exitCode === 0;
    });

    for (const node of sandbox.nodes) nodes.push(await nodeSetup(node));
    for (const setup of nodes) {
      // kubelet runs the init container to completion, then the daemon.
      initOutcomes.push(await runInitContainer(setup));
      assert.equal(initOutcomes.at(-1)!.exitCode, 0, `init container on ${setup.node.ns.name}: ${initOutcomes.at(-1)!.stderr}`);
      daemons.set(setup, startContainer(setup.node.ns, processFor(setup, daemonContainer), path.join(setup.root, 'miniflanneld.log')));
    }
    for (const setup of nodes) {
      const daemon = daemons.get(setup)!;
      const url = probeUrl(daemonContainer, daemonContainer.readinessProbe, setup.node.underlayIp);
      await waitFor(`miniflanneld on ${setup.node.ns.name} to pass the readiness probe (${url})`, async () => {
        if (daemon.process.exitCode !== null) throw new Error(`miniflanneld exited with ${daemon.process.exitCode}: ${await readFile(daemon.log, 'utf8')}`);
        return (await httpGetIn(setup.node.ns, url)).status === 200;
      });
    }
    for (const setup of nodes) {
      const conflists = (await readdir(setup.volumes['cni-conf']!)).filter((f) => f.endsWith('.conflist'));
      assert.equal(conflists.length, 1, `one conflist in the node's CNI directory: ${conflists.join(', ')}`);
      const conflist = JSON.parse(await readFile(path.join(setup.volumes['cni-conf']!, conflists[0]!), 'utf8'));
      // host-local keeps its state where the manifest says, here the node's stand-in, never this machine's /var/lib/cni.
      assert.equal(conflist.plugins[0].ipam.dataDir, setup.nodePaths['/var/lib/cni/networks'], 'MINIFLANNELD_CNI_IPAM_DATA_DIR reached the conflist');
      pods.push(await sandbox.addPod(setup.node, conflist));
    }
  });

  after(async () => {
    for (const daemon of daemons.values()) await stopProcess(daemon.process);
    if (redis) await stopProcess(redis.process);
    if (sandbox) {
      await destroyTestSandbox(sandbox);
    }
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('the init container loads the ConfigMap\'s net-conf.json into an empty Redis, and the next node\'s leaves it', async () => {
    assert.match(initOutcomes[0]!.stdout, /holds no network config; loading/);
    assert.match(initOutcomes[1]!.stdout, /already holds a network config/);
    const stored = JSON.parse(await nodes[0]!.node.ns.exec([path.join(binDir, 'miniflannel'), 'config', 'get', '--json', '--redis-url', redisUrl()], { env: imageEnv }));
    const seeded = JSON.parse(netConfMap.data['net-conf.json']!);
    assert.equal(stored.Network, seeded.Network);
    assert.equal(stored.SubnetLen, seeded.SubnetLen);
    assert.equal(stored.Backend.Type, seeded.Backend.Type);
    assert.equal(stored.Backend.Port, seeded.Backend.Port);
  });

  test('the init container fails, for kubelet to retry, while Redis is unreachable', async () => {
    const setup = await nodeSetup(nodes[0]!.node, redisUrl(0, 6390));
    const outcome = await runInitContainer(setup);
    assert.notEqual(outcome.exitCode, 0, `no Redis, yet the init container succeeded: ${outcome.stdout}`);
  });

  test('the init container refuses to overwrite an invalid stored config', async () => {
    const setup = await nodeSetup(nodes[0]!.node, redisUrl(1));
    const cli = (...args: string[]) => sandbox.underlay.exec(['redis-cli', '-h', UNDERLAY_GATEWAY, '-n', '1', '--no-auth-warning', '-a', REDIS_PASSWORD, ...args]);
    await cli('set', '{miniflannel}:config', '{"Network": "not a network"}');
    const outcome = await runInitContainer(setup);
    assert.equal(outcome.exitCode, 1, outcome.stdout);
    assert.match(outcome.stderr, /invalid/);
    assert.equal((await cli('get', '{miniflannel}:config')).trim(), '{"Network": "not a network"}', 'the stored config is untouched');
    await cli('flushdb');
  });

  test('each node\'s daemon is ready on the readiness probe and alive on the liveness probe, at the probes\' ports and paths', async () => {
    for (const setup of nodes) {
      for (const probe of [daemonContainer.livenessProbe, daemonContainer.readinessProbe]) {
        const url = probeUrl(daemonContainer, probe, setup.node.underlayIp);
        const answer = await httpGetIn(setup.node.ns, url);
        assert.equal(answer.status, 200, `${url} on ${setup.node.ns.name}: ${answer.body}`);
      }
    }
  });

  test('each daemon holds a lease under the node\'s name and host IP, and wrote its files into the hostPaths', async () => {
    const subnets = new Set<string>();
    for (const setup of nodes) {
      const statusUrl = probeUrl(daemonContainer, daemonContainer.livenessProbe, setup.node.underlayIp).replace(/\/healthz$/, '/status');
      const status = JSON.parse((await httpGetIn(setup.node.ns, statusUrl)).body);
      assert.equal(status.lease.nodeName, setup.node.ns.name, 'MINIFLANNELD_NODE_NAME from spec.nodeName');
      assert.equal(status.lease.publicIP, setup.node.underlayIp, 'MINIFLANNELD_PUBLIC_IP from status.hostIP');
      assert.equal(status.node.port, JSON.parse(netConfMap.data['net-conf.json']!).Backend.Port);
      assert.equal(status.peers.length, 1);
      subnets.add(status.lease.subnet);
      const subnetEnv = await readFile(path.join(setup.volumes['run']!, 'subnet.env'), 'utf8');
      assert.match(subnetEnv, /^FLANNEL_NETWORK=10\.244\.0\.0\/16$/m);
      assert.match(subnetEnv, /^FLANNEL_IPMASQ=true$/m, '--ip-masq from the args');
      assert.match(await setup.node.ns.exec(['iptables', '-t', 'nat', '-S', 'POSTROUTING']), /MINIFLANNEL/, 'the masquerade rules are installed');
    }
    assert.equal(subnets.size, 2);
  });

  test('the overlay port the container declares is the one in net-conf.json', () => {
    const overlay = daemonContainer.ports?.find((p) => p.protocol === 'UDP');
    assert.equal(overlay?.containerPort, JSON.parse(netConfMap.data['net-conf.json']!).Backend.Port);
  });

  test('pods on the two nodes, made by the real CNI plugins from the conflist each daemon wrote, reach each other', async () => {
    const [a, b] = pods as [Pod, Pod];
    await a.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', b.ip]);
    await b.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', a.ip]);
    const { sent, received } = await tcpTransfer(a, b, 2 * 1024 * 1024, 5002);
    assert.equal(received.sha256, sent.sha256);
  });

  test('SIGTERM, as kubelet stops the pod, stops the daemon cleanly and removes the TUN', async () => {
    const setup = nodes[1]!;
    const daemon = daemons.get(setup)!;
    daemon.process.kill('SIGTERM');
    assert.equal(await exited(daemon.process), 0, await readFile(daemon.log, 'utf8'));
    assert.doesNotMatch(await setup.node.ns.ip('link', 'show'), /flannel0/, 'the TUN is gone');
  });
});
