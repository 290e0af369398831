// deploy/Dockerfile built by a real builder (podman) from the committed tree,
// then run once the way the DaemonSet runs it. The base image the FROM names
// is made locally by .ci/image-base.sh (no registry can be pulled here), which
// also holds podman's private configuration and its layer cache.
// Static mode, so no Redis; two nodes with CNI pods and the init container's
// cases are issue 19's next step.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { httpGetIn, waitFor } from '../../lab/daemon.js';
import { run, runForOutcome } from '../../lab/exec.js';
import { Netns, runPrefix } from '../../lab/netns.js';
import { packageRoot } from '../../lab/paths.js';
import { execForm, parseDockerfile } from './dockerfile.js';
import { container, daemonManifest, findObject, loadObjects, mounts, resolvePort, type Workload } from './manifests.js';
import { containerEnv } from './pod.js';

const BUILD_TIMEOUT_MS = 10 * 60_000;
const IMAGE_CACHE = '/var/cache/miniflannel-image';
const NODE_IP = '198.18.7.1';
const STATIC_ARGS = ['--static-network', '10.244.0.0/16', '--static-subnet', '10.244.7.0/24'];

const podSpec = findObject<Workload>(loadObjects(daemonManifest), 'DaemonSet').spec.template.spec;
const daemonContainer = container(podSpec, 'miniflanneld');
const dockerfile = parseDockerfile(await readFile(path.join(packageRoot, 'deploy', 'Dockerfile'), 'utf8'));
const runtimeStage = dockerfile.stages.at(-1)!;

const prefix = runPrefix();
const tag = `localhost/miniflannel:${prefix}`;
const containerName = `${prefix}daemon`;
let podmanEnv: NodeJS.ProcessEnv;
let work: string | undefined;
let ns: Netns | undefined;
let revision: string;

const podman = (...args: string[]) => run(['podman', ...args], { env: podmanEnv, timeoutMs: BUILD_TIMEOUT_MS });
const podmanOutcome = (...args: string[]) => runForOutcome(['podman', ...args], { env: podmanEnv, timeoutMs: 60_000 });

function instruction(keyword: string) {
  const found = runtimeStage.instructions.find((i) => i.keyword === keyword);
  assert.ok(found, `the runtime stage has a ${keyword}`);
  return found;
}

/** The podman flags for the DaemonSet container's securityContext, as a container runtime enforces it. */
function securityFlags(): string[] {
  const context = daemonContainer.securityContext ?? {};
  assert.notEqual(context.privileged, true, 'the DaemonSet container is not privileged');
  const flags = [
    ...(context.capabilities?.drop ?? []).map((cap) => `--cap-drop=${cap.toLowerCase()}`),
    ...(context.capabilities?.add ?? []).map((cap) => `--cap-add=${cap}`),
  ];
  if (context.allowPrivilegeEscalation === false) flags.push('--security-opt', 'no-new-privileges');
  // Kubernetes mounts no tmpfs over a read-only root; podman would by default.
  if (context.readOnlyRootFilesystem === true) flags.push('--read-only', '--read-only-tmpfs=false');
  return flags;
}

/** The container's hostPath volumes: character devices passed in, the rest under `nodeRoot` (created as their type says). */
async function volumeFlags(nodeRoot: string): Promise<string[]> {
  const flags: string[] = [];
  for (const { mountPath, readOnly, volume } of mounts(podSpec, daemonContainer)) {
    const hostPath = volume.hostPath;
    assert.ok(hostPath, `the daemon's volume ${volume.name} is a hostPath`);
    if (hostPath.type === 'CharDevice') {
      flags.push('--device', `${hostPath.path}:${mountPath}`);
      continue;
    }
    const source = path.join(nodeRoot, hostPath.path);
    if (hostPath.type === 'FileOrCreate') {
      await mkdir(path.dirname(source), { recursive: true });
      await writeFile(source, '');
    } else {
      await mkdir(source, { recursive: true });
    }
    flags.push('-v', `${source}:${mountPath}${readOnly ? ':ro' : ''}`);
  }
  return flags;
}

async function iptablesRules(): Promise<string[]> {
  const rules: string[] = [];
  for (const table of ['filter', 'nat', 'mangle']) {
    const listing = await ns!.exec(['iptables', '-t', table, '-S']);
    rules.push(...listing.split('\n').filter((line) => line.startsWith('-A') || line.startsWith('-N')));
  }
  return rules;
}

describe('deploy/Dockerfile built by podman and run as the DaemonSet runs it', { timeout: 2 * BUILD_TIMEOUT_MS }, () => {
  before(async () => {
    const major = (await run([path.join(packageRoot, '.ci', 'image-base.sh')], { timeoutMs: BUILD_TIMEOUT_MS })).trim();
    assert.match(major, /^\d+$/, 'image-base.sh prints the Node major');
    const exports = await readFile(path.join(IMAGE_CACHE, 'env'), 'utf8');
    podmanEnv = { ...process.env, ...Object.fromEntries([...exports.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!])) };
    assert.ok(podmanEnv.CONTAINERS_CONF && podmanEnv.CONTAINERS_STORAGE_CONF, 'image-base.sh names its podman configuration');

    // The committed tree, as a user's clone has it: not this working tree's untracked or edited files.
    work = await mkdtemp(path.join(tmpdir(), `${prefix}image-`));
    const context = path.join(work, 'context');
    await mkdir(context);
    revision = (await run(['git', '-C', packageRoot, 'rev-parse', 'HEAD'])).trim();
    await run(['sh', '-c', 'git -C "$1" archive HEAD | tar -x -C "$2"', 'sh', packageRoot, context]);
    // --network=host: RUN steps on a CNI bridge would add a bridge and NAT rules to the root namespace.
    // --format docker: the OCI image format has no HEALTHCHECK.
    await podman('build', '--pull=never', '--format', 'docker', '--network=host', '--layers',
      '-f', 'deploy/Dockerfile', '--build-arg', `NODE_VERSION=${major}`, '--build-arg', `REVISION=${revision}`,
      '-t', tag, context);
  });

  after(async () => {
    if (podmanEnv) {
      await podmanOutcome('rm', '-f', '-t', '0', containerName);
      await podmanOutcome('rmi', tag);
      // Each build leaves its build stage as a dangling image.
      await podmanOutcome('image', 'prune', '-f');
    }
    await ns?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('the image config: the entrypoint, the HEALTHCHECK and the OCI labels of the Dockerfile', async (t) => {
    const [image] = JSON.parse(await podman('image', 'inspect', tag));
    assert.deepEqual(image.Config.Entrypoint, execForm(instruction('ENTRYPOINT').text, instruction('ENTRYPOINT').line));
    assert.deepEqual(image.Config.Entrypoint, ['miniflanneld']);
    const healthcheck = instruction('HEALTHCHECK');
    const command = execForm(/CMD\s+(\[.*\])$/.exec(healthcheck.text)?.[1] ?? '', healthcheck.line);
    // podman reports it beside Config, not in it.
    assert.deepEqual(image.Healthcheck?.Test, ['CMD', ...command], 'the HEALTHCHECK survives the build (--format docker)');
    const labels = image.Config.Labels ?? {};
    assert.equal(labels['org.opencontainers.image.title'], 'miniflannel');
    assert.equal(labels['org.opencontainers.image.version'], '0.1.0');
    assert.equal(labels['org.opencontainers.image.revision'], revision);
    assert.equal(labels['org.opencontainers.image.licenses'], 'Apache-2.0');
    const layers: string[] = image.RootFS.Layers;
    t.diagnostic(`image ${(image.Size / 1e6).toFixed(0)} MB, ${layers.length} layers`);
  });

  test('the runtime carries no compilers, no lab and no test harness', async () => {
    const script = 'for p in gcc g++ cc make python3; do command -v $p || true; done; ls /opt/miniflannel/dist';
    const output = await podman('run', '--rm', '--network=none', '--entrypoint', 'sh', tag, '-c', script);
    assert.deepEqual(output.trim().split('\n').sort(), ['cli', 'daemon'], 'no compiler on the PATH; dist holds only cli and daemon');
  });

  test('the image runs as the DaemonSet: /healthz, the TUN, the HEALTHCHECK, and SIGTERM leaves nothing behind', async () => {
    ns = await Netns.create(`${prefix}img`);
    await ns.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
    await ns.ip('addr', 'add', `${NODE_IP}/24`, 'dev', 'eth0');
    await ns.ip('link', 'set', 'eth0', 'up');
    await ns.ip('link', 'set', 'eth1', 'up');

    const env = containerEnv(daemonContainer, {
      fields: { 'spec.nodeName': ns.name, 'status.hostIP': NODE_IP },
      // Required by the manifest's env; static mode never dials it.
      secrets: { 'miniflannel-redis': { url: 'redis://127.0.0.1:6379' } },
    });
    assert.ok(daemonContainer.command, 'the DaemonSet names the command');
    assert.equal(podSpec.hostNetwork, true, 'the DaemonSet runs in the node\'s network namespace');
    await podman('run', '-d', '--name', containerName, '--network', `ns:${ns.path}`,
      ...securityFlags(), ...(await volumeFlags(path.join(work!, 'node'))),
      ...Object.entries(env).flatMap(([name, value]) => ['-e', `${name}=${value}`]),
      '--entrypoint', JSON.stringify(daemonContainer.command), tag, ...(daemonContainer.args ?? []), ...STATIC_ARGS);

    const probe = daemonContainer.livenessProbe?.httpGet;
    assert.ok(probe, 'the DaemonSet has an HTTP liveness probe');
    const url = `http://${NODE_IP}:${resolvePort(daemonContainer, probe.port)}${probe.path}`;
    await waitFor(`${url} answers 200`, async () => (await httpGetIn(ns!, url)).status === 200, 60_000);
    assert.match(await ns.ip('-d', 'link', 'show', 'flannel0'), /\btun\b/, 'flannel0 is a TUN');
    const health = await podmanOutcome('healthcheck', 'run', containerName);
    assert.equal(health.exitCode, 0, `podman healthcheck run: ${health.stdout}${health.stderr}`);

    await podman('stop', '-t', '10', containerName);
    assert.equal((await podman('inspect', '--format', '{{.State.ExitCode}}', containerName)).trim(), '0', 'SIGTERM ends the daemon with exit 0');
    const link = await ns.execForOutcome(['ip', 'link', 'show', 'flannel0']);
    assert.notEqual(link.exitCode, 0, 'no flannel0 after the stop');
    assert.deepEqual(await iptablesRules(), [], 'no iptables rule after the stop');
  });
});
