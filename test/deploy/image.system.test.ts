// deploy/Dockerfile built by a real builder (podman, Debian's) from the
// committed tree, and the image run the way deploy/kubernetes/miniflannel.yaml
// runs it, on two nodes of a sandbox cluster with a real Redis on the underlay.
// No registry image can be pulled here, so .ci/image-base.sh first makes the
// base the FROM names (debootstrap + this Node), and keeps podman's private
// configuration and layer cache. Each node is a network namespace; its init
// container and daemon are podman containers started into it, with the
// manifest's command, args, env, securityContext and volumes (test/deploy/podman.ts).
// Pods are made by the real CNI plugins from the conflist the container wrote.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SANDBOX_REDIS_URL, UNDERLAY_GATEWAY, type Pod, type Sandbox, type SandboxNode } from '../../lab/cluster.js';
import { httpGetIn, waitFor } from '../../lab/daemon.js';
import { run, type Outcome } from '../../lab/exec.js';
import { runPrefix } from '../../lab/netns.js';
import { packageRoot } from '../../lab/paths.js';
import { daemonCommand } from '../../daemon/flags.js';
import { MASQ_CHAIN } from '../../daemon/node/masquerade.js';
import { createTestSandbox, destroyTestSandbox } from '../harness/namespaces.js';
import { tcpTransfer } from '../harness/pod-traffic.js';
import { execForm, parseDockerfile } from './dockerfile.js';
import { container, daemonManifest, findObject, loadObjects, parseQuantity, type ConfigMap, type Container, type Workload } from './manifests.js';
import { probeUrl, standInVolumes, type PodInputs } from './pod.js';
import { Podman, podmanRunArgs, RUN_LABEL } from './podman.js';

const pkg = JSON.parse(await readFile(path.join(packageRoot, 'package.json'), 'utf8')) as {
  version: string;
  engines: { node: string };
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const objects = loadObjects(daemonManifest);
const daemonSet = findObject<Workload>(objects, 'DaemonSet');
const netConfMap = findObject<ConfigMap>(objects, 'ConfigMap');
const netConf = JSON.parse(netConfMap.data['net-conf.json']!);
const podSpec = daemonSet.spec.template.spec;
const daemonContainer = container(podSpec, 'miniflanneld');
const initContainer = container(podSpec, 'load-net-conf', true);
// The Dockerfile podman builds: the committed one, as the context is.
const dockerfile = parseDockerfile(await run(['git', '-C', packageRoot, 'show', 'HEAD:deploy/Dockerfile']));
const runtimeStage = dockerfile.stages.at(-1)!;

const prefix = runPrefix();
const tag = `localhost/miniflannel:${prefix}`;
/** An image of the build context alone, as the builder receives it. */
const contextTag = `localhost/miniflannel-context:${prefix}`;
/** What a user's clone holds besides the committed tree once it has run `npm ci && npm run build`, and git's own data. */
const CANARIES = ['node_modules/canary', 'dist/canary', 'build/canary', '.git/canary'];
/** The paths the Dockerfile's COPY lines take from the build context (not --from a stage): what .dockerignore must let through. */
const copiedFromContext = dockerfile.stages
  .flatMap((stage) => stage.instructions)
  .filter((i) => i.keyword === 'COPY' && !i.text.startsWith('--from='))
  .flatMap((i) => i.text.split(/\s+/).slice(0, -1));
const isCopiedFromContext = (file: string) => copiedFromContext.some((source) => file === source || file.startsWith(`${source}/`));

function instruction(keyword: string) {
  const found = runtimeStage.instructions.filter((i) => i.keyword === keyword);
  assert.equal(found.length, 1, `the runtime stage has one ${keyword}`);
  return found[0]!;
}

/** The image's HEALTHCHECK command, exec form. */
function healthcheckCommand(): string[] {
  const healthcheck = instruction('HEALTHCHECK');
  return execForm(/CMD\s+(\[.*\])$/.exec(healthcheck.text)?.[1] ?? '', healthcheck.line);
}

interface ImageNode {
  node: SandboxNode;
  inputs: PodInputs;
  volumes: Record<string, string>;
  nodePaths: Record<string, string>;
  /** The daemon container's name. */
  name: string;
}

describe('deploy/Dockerfile built by podman, run as the DaemonSet runs it on two nodes', { timeout: 20 * 60_000 }, () => {
  let podman: Podman;
  let work: string | undefined;
  let revision: string;
  let sandbox: Sandbox | undefined;
  const nodes: ImageNode[] = [];
  const initOutcomes: Outcome[] = [];
  let healthcheckWithoutDaemon: Outcome;
  let contextFiles: string[];
  let committedFiles: string[];
  let imageCache: string;
  const pods: Pod[] = [];
  /** MINIFLANNEL rules seen in each node while its daemon ran, so that their absence after the stop means something. */
  const rulesWhileRunning = new Map<ImageNode, string[]>();

  const runArgs = (n: ImageNode, c: Container) => podmanRunArgs({ pod: podSpec, container: c, inputs: n.inputs, volumes: n.volumes, nodePaths: n.nodePaths, netns: n.node.ns.path }, tag);
  /** A container of the pod with another command, to look at it as its runtime made it. */
  const withCommand = (c: Container, command: string[]): Container => ({ ...c, command, args: [] });
  // Kubernetes ignores the image's HEALTHCHECK; podman, without systemd here, would complain of its timer on stderr.
  const runInitContainer = (n: ImageNode) => podman.outcome('run', '--rm', '--no-healthcheck', '--name', `${n.name}-init`, ...runArgs(n, initContainer));
  const imageRun = (...args: string[]) => podman.outcome('run', '--rm', '--no-healthcheck', '--network=none', ...args);

  async function imageNode(node: SandboxNode): Promise<ImageNode> {
    const root = path.join(work!, node.ns.name);
    await mkdir(root, { recursive: true });
    return {
      node,
      inputs: {
        fields: { 'spec.nodeName': node.ns.name, 'status.hostIP': node.underlayIp, 'status.podIP': node.underlayIp, 'metadata.namespace': daemonSet.metadata.namespace! },
        secrets: { 'miniflannel-redis': { url: SANDBOX_REDIS_URL } },
      },
      volumes: await standInVolumes(podSpec, root, [netConfMap]),
      // host-local runs on the node, outside the container: its data directory is the node's.
      nodePaths: { '/var/lib/cni/networks': path.join(root, 'var/lib/cni/networks') },
      name: `${node.ns.name}-miniflanneld`,
    };
  }

  async function masqueradeRules(n: ImageNode): Promise<string[]> {
    const rules: string[] = [];
    for (const table of ['filter', 'nat', 'mangle']) rules.push(...(await n.node.ns.exec(['iptables', '-t', table, '-S'])).split('\n'));
    return rules.filter((rule) => rule.includes('MINIFLANNEL'));
  }

  before(async () => {
    const made = await Podman.withImageBase();
    podman = made.podman;
    imageCache = made.cache;
    await podman.removeStale();
    work = await mkdtemp(path.join(tmpdir(), `${prefix}image-`));
    const context = path.join(work, 'context');
    await mkdir(context);
    // The committed tree, as a user's clone has it, with what such a clone also holds (CANARIES) for .dockerignore to keep out.
    revision = (await run(['git', '-C', packageRoot, 'rev-parse', 'HEAD'])).trim();
    await run(['sh', '-c', 'git -C "$1" archive HEAD | tar -x -C "$2"', 'sh', packageRoot, context]);
    committedFiles = (await run(['git', '-C', packageRoot, 'ls-tree', '-r', '--name-only', 'HEAD'])).trim().split('\n');
    for (const canary of CANARIES) {
      await mkdir(path.join(context, path.dirname(canary)), { recursive: true });
      await writeFile(path.join(context, canary), 'left out by .dockerignore\n');
    }
    // The build argument selects the Node line the base carries.
    // --network=host: RUN steps on a CNI bridge would add a bridge and NAT rules to the root namespace.
    // --format docker: the OCI image format has no HEALTHCHECK.
    // --layers, as docker builds, one image per step; --no-cache so that none is shared with another run:
    // each carries this run's label, and the run removes them by it.
    const build = ['build', '--pull=never', '--format', 'docker', '--network=host', '--layers', '--no-cache', '--label', `${RUN_LABEL}=${prefix}`];
    await podman.run(...build, '-f', 'deploy/Dockerfile', '--build-arg', `NODE_VERSION=${made.nodeMajor}`, '--build-arg', `REVISION=${revision}`, '-t', tag, context);
    // The same context sent to a build that keeps all of it: what the builder received, after .dockerignore.
    const contextfile = path.join(work, 'Containerfile.context');
    await writeFile(contextfile, `FROM ${made.base}\nCOPY . /context\n`);
    await podman.run(...build, '-f', contextfile, '-t', contextTag, context);
    const listing = await podman.run('run', '--rm', '--no-healthcheck', '--network=none', '--workdir', '/context', '--entrypoint', 'find', contextTag, '.', '-type', 'f');
    contextFiles = listing.trim().split('\n').map((f) => f.replace(/^\.\//, '')).sort();

    sandbox = await createTestSandbox(2);
    await sandbox.startRedis({ persistence: false });
    for (const node of sandbox.nodes) nodes.push(await imageNode(node));
    // The daemon's container, HEALTHCHECK's command in place of the daemon's, before any daemon runs on the node.
    healthcheckWithoutDaemon = await podman.outcome('run', '--rm', '--no-healthcheck', ...runArgs(nodes[0]!, withCommand(daemonContainer, healthcheckCommand())));
    for (const n of nodes) {
      // kubelet runs the init container to completion, then the daemon.
      initOutcomes.push(await runInitContainer(n));
      assert.equal(initOutcomes.at(-1)!.exitCode, 0, `init container on ${n.node.ns.name}: ${initOutcomes.at(-1)!.stderr}`);
      await podman.run('run', '-d', '--name', n.name, ...runArgs(n, daemonContainer));
    }
    for (const n of nodes) {
      const url = probeUrl(daemonContainer, daemonContainer.readinessProbe, n.node.underlayIp);
      await waitFor(`the container on ${n.node.ns.name} to pass the readiness probe (${url})`, async () => {
        const state = (await podman.inspect('container', n.name)).State;
        if (!state.Running) throw new Error(`${n.name} exited with ${state.ExitCode}: ${(await podman.outcome('logs', n.name)).stderr}`);
        return (await httpGetIn(n.node.ns, url)).status === 200;
      }, 60_000);
      rulesWhileRunning.set(n, await masqueradeRules(n));
    }
    for (const n of nodes) {
      const conflists = (await readdir(n.volumes['cni-conf']!)).filter((f) => f.endsWith('.conflist'));
      assert.equal(conflists.length, 1, `one conflist in the node's CNI directory: ${conflists.join(', ')}`);
      const conflist = JSON.parse(await readFile(path.join(n.volumes['cni-conf']!, conflists[0]!), 'utf8'));
      // host-local keeps its state where the manifest says, here the node's stand-in, never this machine's /var/lib/cni.
      assert.equal(conflist.plugins[0].ipam.dataDir, n.nodePaths['/var/lib/cni/networks'], 'MINIFLANNELD_CNI_IPAM_DATA_DIR reached the conflist');
      pods.push(await sandbox.addPod(n.node, conflist));
    }
  });

  after(async () => {
    try {
      if (podman) {
        for (const n of nodes) await podman.outcome('rm', '-f', '--ignore', '-t', '0', n.name, `${n.name}-init`);
        await podman.removeImagesOf(prefix);
        const left = await podman.run('ps', '-a', '--filter', `name=^${prefix}`, '--format', '{{.Names}}');
        assert.equal(left.trim(), '', 'containers left behind');
        const images = await podman.run('images', '-a', '-q', '--filter', `label=${RUN_LABEL}=${prefix}`);
        assert.equal(images.trim(), '', 'images left behind');
      }
    } finally {
      if (sandbox) await destroyTestSandbox(sandbox);
      if (work) await rm(work, { recursive: true, force: true });
    }
  });

  test('both stages start FROM the same Node LTS image, one that package.json engines allows', () => {
    const bases = dockerfile.stages.map((s) => s.base);
    assert.equal(new Set(bases).size, 1, `the addon is built for the Node that runs it: ${bases.join(', ')}`);
    const match = /^node:(\d+)-[a-z]+-slim$/.exec(bases[0]!);
    assert.ok(match, `${bases[0]} is a slim node image`);
    const major = Number(match[1]);
    assert.equal(major % 2, 0, `Node ${major} is an LTS line (even)`);
    assert.ok(major >= Number(/^>=\s*(\d+)/.exec(pkg.engines.node)?.[1]), `Node ${major} satisfies engines ${pkg.engines.node}`);
  });

  test('the build context is what .dockerignore lets through: the sources the Dockerfile copies, no build output, tests, lab or git data', () => {
    for (const canary of CANARIES) assert.ok(!contextFiles.includes(canary), `${canary} reached the builder`);
    const expected = committedFiles.filter(isCopiedFromContext).sort();
    assert.ok(expected.includes('native/addon.cc') && expected.includes('daemon/main.ts') && expected.includes('deploy/healthcheck.mjs'));
    assert.deepEqual(contextFiles, expected);
  });

  test('podman keeps its layers in the cache of .ci/image-base.sh, not in /var/lib/containers', async () => {
    const { store } = JSON.parse(await podman.run('info', '--format', 'json'));
    assert.equal(path.dirname(store.graphRoot), imageCache);
  });

  test('the image config: the entrypoint, the HEALTHCHECK and the OCI labels of the Dockerfile', async (t) => {
    const image = await podman.inspect('image', tag);
    assert.deepEqual(image.Config.Entrypoint, execForm(instruction('ENTRYPOINT').text, instruction('ENTRYPOINT').line));
    assert.deepEqual(image.Config.Entrypoint, ['miniflanneld']);
    // podman reports it beside Config, not in it.
    assert.deepEqual(image.Healthcheck?.Test, ['CMD', ...healthcheckCommand()], 'the HEALTHCHECK survives the build (--format docker)');
    const labels = image.Config.Labels ?? {};
    assert.equal(labels['org.opencontainers.image.title'], 'miniflannel');
    assert.equal(labels['org.opencontainers.image.version'], pkg.version, 'the version label defaults to package.json\'s');
    assert.equal(labels['org.opencontainers.image.revision'], revision);
    assert.equal(labels['org.opencontainers.image.licenses'], 'Apache-2.0');
    t.diagnostic(`image ${(image.Size / 1e6).toFixed(0)} MB, ${image.RootFS.Layers.length} layers`);
  });

  test('the runtime holds production dependencies, the compiled JS and the addon, and iptables; no compiler, iproute2, lab or test harness', async () => {
    const script = [
      'cd /opt/miniflannel',
      'for p in gcc g++ cc make python3 ip iptables; do command -v $p >/dev/null && echo "program $p"; done',
      'for f in dist/* build/Release/* node_modules/* node_modules/@*/*; do [ -e "$f" ] && echo "file $f"; done',
      'true',
    ].join('\n');
    const outcome = await imageRun('--entrypoint', 'sh', tag, '-c', script);
    assert.equal(outcome.exitCode, 0, outcome.stderr);
    const lines = outcome.stdout.trim().split('\n');
    assert.deepEqual(lines.filter((l) => l.startsWith('program ')), ['program iptables'], 'iptables, which the daemon runs, and no compiler or `ip`');
    const files = lines.filter((l) => l.startsWith('file ')).map((l) => l.slice('file '.length));
    assert.deepEqual(files.filter((f) => f.startsWith('dist/')).sort(), ['dist/cli', 'dist/daemon'], 'neither the lab nor the tests');
    assert.deepEqual(files.filter((f) => f.startsWith('build/')), ['build/Release/miniflannel_native.node'], 'only the addon of node-gyp\'s output');
    for (const name of Object.keys(pkg.dependencies)) assert.ok(files.includes(`node_modules/${name}`), `dependency ${name} is in the image`);
    for (const name of Object.keys(pkg.devDependencies)) assert.ok(!files.includes(`node_modules/${name}`), `devDependency ${name} is not in the image`);
  });

  test('the entrypoint\'s --help lists every daemon flag; `miniflannel version` gives the package version', async () => {
    const help = await imageRun(tag, '--help');
    assert.equal(help.exitCode, 0, help.stderr);
    for (const option of daemonCommand().options) assert.ok(help.stdout.includes(option.long!), `--help lists ${option.long}`);
    const version = await imageRun('--entrypoint', 'miniflannel', tag, 'version');
    assert.equal(version.exitCode, 0, version.stderr);
    assert.match(version.stdout, new RegExp(`^miniflannel ${pkg.version.replace(/\./g, '\\.')} \\(node v\\d+`));
  });

  test('`miniflannel sandbox` and `bench` from the image say in one line that the lab is not installed', async () => {
    for (const args of [['sandbox', 'status'], ['bench', 'encap', '--quick']]) {
      const outcome = await imageRun('--entrypoint', 'miniflannel', tag, ...args);
      assert.equal(outcome.exitCode, 1, outcome.stderr);
      assert.match(outcome.stderr, /^miniflannel: miniflannel (sandbox|bench) needs the lab, which is not installed here \(.*\/dist\/lab\/.*\); run it from a source checkout/);
      assert.equal(outcome.stderr.trimEnd().split('\n').length, 1, outcome.stderr);
    }
  });

  test('the init container, from the image, loads net-conf.json into an empty Redis, and the next node\'s leaves it', async () => {
    assert.match(initOutcomes[0]!.stdout, /holds no network config; loading/);
    assert.match(initOutcomes[1]!.stdout, /already holds a network config/);
    const stored = JSON.parse(await sandbox!.underlay.exec(['redis-cli', '-h', UNDERLAY_GATEWAY, 'get', '{miniflannel}:config']));
    assert.deepEqual(
      { Network: stored.Network, SubnetLen: stored.SubnetLen, Type: stored.Backend.Type, Port: stored.Backend.Port },
      { Network: netConf.Network, SubnetLen: netConf.SubnetLen, Type: netConf.Backend.Type, Port: netConf.Backend.Port },
    );
  });

  test('the init container, from the image, refuses to overwrite an invalid stored config, and fails for kubelet to retry', async () => {
    const cli = (...args: string[]) => sandbox!.underlay.exec(['redis-cli', '-h', UNDERLAY_GATEWAY, '-n', '1', ...args]);
    const invalid = '{"Network": "not a network"}';
    await cli('set', '{miniflannel}:config', invalid);
    try {
      const node = nodes[0]!;
      const outcome = await runInitContainer({ ...node, inputs: { ...node.inputs, secrets: { 'miniflannel-redis': { url: `${SANDBOX_REDIS_URL}/1` } } } });
      assert.equal(outcome.exitCode, 1, outcome.stdout);
      // The CLI's own diagnosis, then the script's: the case taken on `config get`'s exit code 2.
      assert.match(outcome.stderr, /^miniflannel: the network config stored at \{miniflannel\}:config is invalid: Network "not a network"/m);
      assert.match(outcome.stderr, /the network config in Redis is invalid; fix it with `miniflannel config set`/);
      assert.equal((await cli('get', '{miniflannel}:config')).trim(), invalid, 'the stored config is untouched');
    } finally {
      await cli('flushdb');
    }
  });

  test('each daemon container is ready and alive on the probes, with only NET_ADMIN and NET_RAW, no new privileges, a read-only root and /proc/sys', async () => {
    for (const n of nodes) {
      for (const probe of [daemonContainer.livenessProbe, daemonContainer.readinessProbe]) {
        const url = probeUrl(daemonContainer, probe, n.node.underlayIp);
        const answer = await httpGetIn(n.node.ns, url);
        assert.equal(answer.status, 200, `${url} on ${n.node.ns.name}: ${answer.body}`);
      }
      const inspected = await podman.inspect('container', n.name);
      assert.deepEqual([...inspected.EffectiveCaps].sort(), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
      assert.equal(inspected.HostConfig.Memory, parseQuantity(daemonContainer.resources!.limits!.memory!), 'the manifest\'s memory limit');
      const daemonStatus = await podman.run('exec', n.name, 'cat', '/proc/1/status');
      assert.match(daemonStatus, /^NoNewPrivs:\s+1$/m);
      // flannel0's accept_local is set over rtnetlink because of this.
      for (const file of ['/opt/miniflannel/x', '/proc/sys/net/ipv4/conf/flannel0/accept_local']) {
        const write = await podman.outcome('exec', n.name, 'sh', '-c', `echo 1 > ${file}`);
        assert.match(write.stderr, /Read-only file system/, `a write to ${file}: exit ${write.exitCode}, ${write.stderr}`);
      }
    }
  });

  test('the init container runs as the manifest\'s user, with no capability, no new privileges and a read-only root', async () => {
    const look = 'id -u; id -g; grep -E "^(CapEff|NoNewPrivs):" /proc/self/status; touch /opt/x 2>&1 || true';
    const outcome = await podman.outcome('run', '--rm', '--no-healthcheck', ...runArgs(nodes[0]!, withCommand(initContainer, ['sh', '-c', look])));
    assert.equal(outcome.exitCode, 0, outcome.stderr);
    const [uid, gid, capEff, noNewPrivs, touch] = outcome.stdout.trim().split('\n');
    const context = initContainer.securityContext!;
    assert.deepEqual([Number(uid), Number(gid)], [context.runAsUser, context.runAsGroup]);
    assert.match(capEff!, /^CapEff:\s+0+$/);
    assert.match(noNewPrivs!, /^NoNewPrivs:\s+1$/);
    assert.match(touch!, /Read-only file system/);
  });

  test('the image\'s HEALTHCHECK fails while no daemon answers, and reports healthy on both nodes', async () => {
    assert.equal(healthcheckWithoutDaemon.exitCode, 1, healthcheckWithoutDaemon.stdout + healthcheckWithoutDaemon.stderr);
    const healthz = probeUrl(daemonContainer, daemonContainer.livenessProbe, nodes[0]!.node.underlayIp);
    assert.equal(healthcheckWithoutDaemon.stderr.trim(), `miniflanneld does not answer at ${healthz}: ECONNREFUSED`);
    for (const n of nodes) {
      const health = await podman.outcome('healthcheck', 'run', n.name);
      assert.equal(health.exitCode, 0, `podman healthcheck run ${n.name}: ${health.stdout}${health.stderr}`);
      assert.equal((await podman.inspect('container', n.name)).State.Health.Status, 'healthy');
    }
  });

  test('each container holds a lease under its node\'s name and host IP, and wrote subnet.env and the conflist onto the host', async () => {
    const subnets = new Set<string>();
    for (const n of nodes) {
      const statusUrl = probeUrl(daemonContainer, daemonContainer.livenessProbe, n.node.underlayIp).replace(/\/healthz$/, '/status');
      const status = JSON.parse((await httpGetIn(n.node.ns, statusUrl)).body);
      assert.equal(status.lease.nodeName, n.node.ns.name, 'MINIFLANNELD_NODE_NAME from spec.nodeName');
      assert.equal(status.lease.publicIP, n.node.underlayIp, 'MINIFLANNELD_PUBLIC_IP from status.hostIP');
      assert.equal(status.peers.length, 1);
      subnets.add(status.lease.subnet);
      const subnetEnv = await readFile(path.join(n.volumes['run']!, 'subnet.env'), 'utf8');
      assert.ok(subnetEnv.split('\n').includes(`FLANNEL_NETWORK=${netConf.Network}`), subnetEnv);
      assert.match(subnetEnv, /^FLANNEL_IPMASQ=true$/m, '--ip-masq from the args');
    }
    assert.equal(subnets.size, 2);
  });

  test('pods on the two nodes, made by the CNI plugins from the conflists the containers wrote, reach each other', async () => {
    const [a, b] = pods as [Pod, Pod];
    await a.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', b.ip]);
    await b.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', a.ip]);
    const { sent, received } = await tcpTransfer(a, b, 2 * 1024 * 1024, 5002);
    assert.equal(received.sha256, sent.sha256);
  });

  test('`podman stop` (SIGTERM) ends each daemon with exit 0 and leaves no TUN and no rule', async () => {
    for (const n of nodes) {
      assert.ok(rulesWhileRunning.get(n)!.some((rule) => rule.includes(MASQ_CHAIN)), `--ip-masq installed ${MASQ_CHAIN} on ${n.node.ns.name}`);
      await podman.run('stop', '-t', String(podSpec.terminationGracePeriodSeconds ?? 30), n.name);
      assert.equal((await podman.inspect('container', n.name)).State.ExitCode, 0, (await podman.outcome('logs', n.name)).stderr);
      const link = await n.node.ns.execForOutcome(['ip', 'link', 'show', 'flannel0']);
      assert.notEqual(link.exitCode, 0, `no flannel0 on ${n.node.ns.name} after the stop`);
      assert.deepEqual(await masqueradeRules(n), [], `no MINIFLANNEL rule on ${n.node.ns.name} after the stop`);
    }
  });
});
