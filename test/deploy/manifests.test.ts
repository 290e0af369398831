// The manifests under deploy/ as data: every document checked against the
// Kubernetes API schemas (kubernetes-models, plus a strict field check that
// catches misspelt names), the kustomizations against their directories,
// and the DaemonSet, the image's HEALTHCHECK and the static CNI conflist
// against the daemon's own flags and files. daemonset.test.ts runs them.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { Command } from 'commander';
import { addGlobalOptions } from '../../cli/conventions.js';
import { daemonCommand } from '../../daemon/flags.js';
import { CNI_CONFLIST_NAME, CNI_VERSION, cniConflist } from '../../daemon/node/cni.js';
import { packageRoot } from '../../lab/paths.js';
import {
  daemonManifest,
  deployDir,
  findObject,
  isKustomization,
  loadObjects,
  loadYaml,
  mounts,
  parseQuantity,
  podMonitorManifest,
  prometheusDir,
  prometheusRules,
  redisManifest,
  resolvePort,
  yamlFiles,
  type Container,
  type Workload,
} from './manifests.js';
import { SchemaError, validateObject, type KubeObject } from './schema.js';

const pkg = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };
// deploy/prometheus/ holds Prometheus's files, checked by the PodMonitor test below and by test/deploy/prometheus*.
const manifests = yamlFiles().filter((f) => !isKustomization(f) && !f.startsWith(`${prometheusDir}${path.sep}`));
const kustomizations = yamlFiles().filter(isKustomization);
const relative = (file: string) => path.relative(packageRoot, file);

const daemonSet = findObject<Workload>(loadObjects(daemonManifest), 'DaemonSet');
const podSpec = daemonSet.spec.template.spec;
const daemonContainer = podSpec.containers.find((c) => c.name === 'miniflanneld')!;

/** Parses YAML text (a manifest with a deliberate mistake) and validates every document. */
async function validateText(text: string): Promise<void> {
  for (const doc of parseAllDocuments(text)) {
    const value = doc.toJS() as KubeObject | null;
    if (value) await validateObject(value);
  }
}

// kustomize's Kustomization fields (api/types/kustomization.go) and those of an `images` entry.
const KUSTOMIZATION_FIELDS = new Set([
  'apiVersion', 'kind', 'metadata', 'openAPI', 'namePrefix', 'nameSuffix', 'namespace', 'commonLabels', 'labels',
  'commonAnnotations', 'patches', 'patchesStrategicMerge', 'patchesJson6902', 'images', 'imageTags', 'replacements',
  'replicas', 'vars', 'sortOptions', 'resources', 'components', 'crds', 'configMapGenerator', 'secretGenerator',
  'helmGlobals', 'helmCharts', 'helmChartInflationGenerator', 'generatorOptions', 'configurations', 'generators',
  'transformers', 'validators', 'buildMetadata',
]);
const IMAGE_FIELDS = new Set(['name', 'newName', 'newTag', 'digest', 'tagSuffix']);

/** What is wrong with a kustomization in `dir`: unknown fields, missing or forgotten resources, an image rule that matches no container. */
function kustomizationProblems(dir: string, k: Record<string, any>): string[] {
  const problems: string[] = [];
  if (k.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || k.kind !== 'Kustomization') problems.push(`apiVersion/kind ${k.apiVersion} ${k.kind}`);
  for (const key of Object.keys(k)) if (!KUSTOMIZATION_FIELDS.has(key)) problems.push(`${key}: no such field in a Kustomization`);
  const resources: string[] = Array.isArray(k.resources) ? k.resources : [];
  const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && !isKustomization(f));
  for (const r of resources) if (!files.includes(r)) problems.push(`resources: ${r} is not a manifest in ${relative(dir)}`);
  for (const f of files) if (!resources.includes(f)) problems.push(`resources: ${f} in ${relative(dir)} is not listed`);
  const images = new Set(
    resources
      .filter((r) => files.includes(r))
      .flatMap((r) => loadObjects(path.join(dir, r)))
      .flatMap((o) => {
        const spec = (o as unknown as Workload).spec?.template?.spec;
        return spec ? [...spec.containers, ...(spec.initContainers ?? [])].map((c) => c.image.replace(/[:@].*$/, '')) : [];
      }),
  );
  for (const image of (k.images ?? []) as Array<Record<string, unknown>>) {
    for (const key of Object.keys(image)) if (!IMAGE_FIELDS.has(key)) problems.push(`images: ${key}: no such field`);
    if (!images.has(String(image.name))) problems.push(`images: ${String(image.name)} matches no container image of the resources`);
  }
  return problems;
}

/** The flags and variables a container gives miniflanneld that `command` does not accept. */
function unknownDaemonSettings(c: Container, command = daemonCommand()): string[] {
  const longs = new Set(command.options.map((o) => o.long));
  const envs = new Set(command.options.map((o) => o.envVar).filter(Boolean));
  const flags = (c.args ?? []).filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!);
  return [...flags.filter((f) => !longs.has(f)), ...(c.env ?? []).map((e) => e.name).filter((n) => !envs.has(n))];
}

// prometheus-operator's PodMonitor fields (monitoring.coreos.com/v1), those of a podMetricsEndpoint and of a relabeling.
const POD_MONITOR_FIELDS = new Set(['jobLabel', 'podTargetLabels', 'podMetricsEndpoints', 'selector', 'namespaceSelector', 'sampleLimit', 'targetLimit', 'labelLimit', 'labelNameLengthLimit', 'labelValueLengthLimit', 'keepDroppedTargets', 'attachMetadata', 'scrapeClass', 'scrapeProtocols', 'fallbackScrapeProtocol', 'bodySizeLimit']);
const POD_METRICS_ENDPOINT_FIELDS = new Set(['port', 'portNumber', 'targetPort', 'path', 'scheme', 'params', 'interval', 'scrapeTimeout', 'tlsConfig', 'bearerTokenSecret', 'honorLabels', 'honorTimestamps', 'trackTimestampsStaleness', 'basicAuth', 'oauth2', 'authorization', 'metricRelabelings', 'relabelings', 'proxyUrl', 'followRedirects', 'enableHttp2', 'filterRunning']);
const RELABEL_FIELDS = new Set(['sourceLabels', 'separator', 'targetLabel', 'regex', 'modulus', 'replacement', 'action']);

/** What keeps a PodMonitor from scraping the DaemonSet's /metrics under the job the rules select: unknown fields, a selector or port that does not match, another job. */
function podMonitorProblems(monitor: Record<string, any>, jobs: string[]): string[] {
  const problems: string[] = [];
  if (monitor.apiVersion !== 'monitoring.coreos.com/v1' || monitor.kind !== 'PodMonitor') problems.push(`apiVersion/kind ${monitor.apiVersion} ${monitor.kind}`);
  const spec = monitor.spec ?? {};
  for (const key of Object.keys(spec)) if (!POD_MONITOR_FIELDS.has(key)) problems.push(`spec.${key}: no such field in a PodMonitor`);
  // Without a namespaceSelector, a PodMonitor looks for pods in its own namespace only.
  if (spec.namespaceSelector === undefined && monitor.metadata?.namespace !== daemonSet.metadata.namespace) problems.push(`metadata.namespace ${monitor.metadata?.namespace} is not the DaemonSet's`);
  const podLabels = daemonSet.spec.template.metadata.labels;
  for (const [key, value] of Object.entries<string>(spec.selector?.matchLabels ?? {})) {
    if (podLabels[key] !== value) problems.push(`selector: ${key}=${value} is not a label of the DaemonSet's pods`);
  }
  if (Object.keys(spec.selector?.matchLabels ?? {}).length === 0) problems.push('selector: selects every pod of the namespace');
  const job = podLabels[spec.jobLabel];
  for (const expected of jobs) if (job !== expected) problems.push(`jobLabel: the job is ${job ?? `${monitor.metadata?.namespace}/${monitor.metadata?.name}`}, the rules select ${expected}`);
  const endpoints: Array<Record<string, any>> = spec.podMetricsEndpoints ?? [];
  if (endpoints.length !== 1) problems.push(`podMetricsEndpoints: ${endpoints.length}, expected one`);
  for (const endpoint of endpoints) {
    for (const key of Object.keys(endpoint)) if (!POD_METRICS_ENDPOINT_FIELDS.has(key)) problems.push(`podMetricsEndpoints: ${key}: no such field`);
    for (const relabeling of endpoint.relabelings ?? []) {
      for (const key of Object.keys(relabeling)) if (!RELABEL_FIELDS.has(key)) problems.push(`relabelings: ${key}: no such field`);
    }
    let port: number | undefined;
    try {
      port = resolvePort(daemonContainer, endpoint.port);
    } catch (err) {
      problems.push(`podMetricsEndpoints: ${(err as Error).message}`);
    }
    const healthzPort = Number(daemonContainer.env?.find((e) => e.name === 'MINIFLANNELD_HEALTHZ_PORT')?.value ?? daemonCommand().options.find((o) => o.long === '--healthz-port')!.defaultValue);
    if (port !== undefined && port !== healthzPort) problems.push(`podMetricsEndpoints: port ${endpoint.port} is ${port}, the daemon serves /metrics on ${healthzPort}`);
    if ((endpoint.path ?? '/metrics') !== '/metrics') problems.push(`podMetricsEndpoints: path ${endpoint.path}`);
  }
  return problems;
}

describe('deploy/ manifests', () => {
  test('every document of every manifest validates against the Kubernetes API schemas', async () => {
    assert.deepEqual(manifests.map(relative), ['deploy/kubernetes/miniflannel.yaml', 'deploy/redis/redis.yaml']);
    for (const file of manifests) {
      const objects = loadObjects(file);
      assert.ok(objects.length > 0, `${relative(file)} has documents`);
      for (const object of objects) await validateObject(object);
    }
  });

  test('a misspelt field name or a wrongly typed value fails the schema check', async () => {
    const mistakes: Array<[string, string, string]> = [
      [daemonManifest, 'hostNetwork:', 'hostNetwok:'],
      [daemonManifest, 'readinessProbe:', 'readynessProbe:'],
      [daemonManifest, 'mountPath: /dev/net/tun', 'mountpath: /dev/net/tun'],
      [daemonManifest, 'fieldPath: spec.nodeName', 'fieldPth: spec.nodeName'],
      [daemonManifest, 'automountServiceAccountToken: false\n---', 'automountServiceAcountToken: false\n---'],
      [daemonManifest, 'priorityClassName:', 'priorityClass:'],
      [daemonManifest, 'terminationGracePeriodSeconds: 30', 'terminationGracePeriodSeconds: thirty'],
      [redisManifest, 'workingDir:', 'workDir:'],
      [redisManifest, 'tcpSocket:', 'tcpSocker:'],
      [redisManifest, 'replicas: 1', 'replica: 1'],
    ];
    for (const [file, from, to] of mistakes) {
      const text = readFileSync(file, 'utf8');
      assert.ok(text.includes(from), `${relative(file)} has ${from}`);
      await assert.rejects(validateText(text.replace(from, to)), SchemaError, `${relative(file)} with ${to.trim()} passed the schema check`);
    }
  });

  test('each kustomization lists exactly its directory\'s manifests, with known fields and image rules that apply', () => {
    assert.deepEqual(kustomizations.map(relative), ['deploy/kubernetes/kustomization.yaml', 'deploy/redis/kustomization.yaml']);
    for (const file of kustomizations) {
      const [k] = loadYaml(file) as [Record<string, unknown>];
      assert.deepEqual(kustomizationProblems(path.dirname(file), k), [], relative(file));
    }
    // The check bites: a misspelt field, a forgotten manifest and an image rule for no image.
    const [k] = loadYaml(kustomizations[0]!) as [Record<string, any>];
    const dir = path.dirname(kustomizations[0]!);
    const { resources, ...rest } = k;
    const misspelt = kustomizationProblems(dir, { ...rest, resource: resources }).join('\n');
    assert.match(misspelt, /^resource: no such field/m);
    assert.match(misspelt, /miniflannel\.yaml .* is not listed/);
    assert.deepEqual(kustomizationProblems(dir, { ...k, images: [{ name: 'miniflanel', newTag: '1' }] }), ['images: miniflanel matches no container image of the resources']);
  });

  test('every miniflannel image is tagged with the package version', () => {
    const images = manifests.flatMap(loadObjects).flatMap((o) => {
      const spec = (o as unknown as Workload).spec?.template?.spec;
      return spec ? [...spec.containers, ...(spec.initContainers ?? [])].map((c) => c.image) : [];
    });
    const ours = images.filter((i) => /^miniflannel[:@]/.test(i));
    assert.ok(ours.length >= 2, 'the daemon and its init container');
    for (const image of ours) assert.equal(image, `miniflannel:${pkg.version}`);
    const [k] = loadYaml(path.join(deployDir, 'kubernetes', 'kustomization.yaml')) as [{ images: Array<{ name: string; newTag: string }> }];
    assert.equal(k.images.find((i) => i.name === 'miniflannel')?.newTag, pkg.version);
  });

  test('the DaemonSet runs on every Linux node, host-networked, critical, with the node\'s files, downward-API env, probes and requests', () => {
    assert.equal(podSpec.hostNetwork, true);
    assert.equal(podSpec.priorityClassName, 'system-node-critical');
    assert.deepEqual(podSpec.nodeSelector, { 'kubernetes.io/os': 'linux' });
    assert.ok(podSpec.tolerations?.some((t) => t.operator === 'Exists' && t.key === undefined && t.effect === undefined), 'tolerates every taint');
    assert.equal(daemonSet.spec.updateStrategy?.type, 'RollingUpdate');
    const hostPaths = Object.fromEntries(mounts(podSpec, daemonContainer).map((m) => [m.volume.hostPath?.path, m.volume.hostPath?.type]));
    assert.equal(hostPaths['/dev/net/tun'], 'CharDevice');
    for (const p of ['/run/miniflannel', '/etc/cni/net.d', '/run/xtables.lock']) assert.ok(p in hostPaths, `${p} is mounted from the host`);
    const fieldOf = (name: string) => daemonContainer.env?.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath;
    assert.equal(fieldOf('MINIFLANNELD_NODE_NAME'), 'spec.nodeName');
    assert.equal(fieldOf('MINIFLANNELD_PUBLIC_IP'), 'status.hostIP');
    assert.ok(daemonContainer.env?.find((e) => e.name === 'MINIFLANNELD_REDIS_URL')?.valueFrom?.secretKeyRef, 'the Redis URL comes from a Secret');
    assert.equal(daemonContainer.livenessProbe?.httpGet?.path, '/healthz');
    assert.equal(daemonContainer.readinessProbe?.httpGet?.path, '/readyz');
    for (const c of [...podSpec.containers, ...(podSpec.initContainers ?? [])]) {
      assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory, `${c.name} requests CPU and memory`);
      const limit = c.resources.limits?.memory;
      if (limit) assert.ok(parseQuantity(c.resources.requests.memory) <= parseQuantity(limit), `${c.name}: memory request within its limit`);
    }
  });

  test('every flag and variable the DaemonSet gives miniflanneld, and its init container gives miniflannel, is one they accept', () => {
    assert.deepEqual(daemonContainer.command, ['miniflanneld']);
    assert.deepEqual(unknownDaemonSettings(daemonContainer), []);
    // Renaming a flag in the daemon without the manifest fails the check above.
    for (const [long, env] of [['--ip-masq', 'MINIFLANNELD_IP_MASQ'], ['--healthz-port', 'MINIFLANNELD_HEALTHZ_PORT']] as const) {
      const renamed = daemonCommand();
      const option = renamed.options.find((o) => o.long === long)!;
      option.long = `${long}-renamed`;
      option.envVar = `${env}_RENAMED`;
      assert.deepEqual(unknownDaemonSettings(daemonContainer, renamed), [long === '--ip-masq' ? long : env]);
    }
    const cliVariables = new Set(addGlobalOptions(new Command('miniflannel')).options.map((o) => o.envVar));
    for (const c of podSpec.initContainers ?? []) {
      for (const { name } of c.env ?? []) assert.ok(cliVariables.has(name), `${c.name}: ${name} is a variable of the miniflannel CLI`);
    }
  });

  test('the image\'s HEALTHCHECK reads the daemon\'s variables and defaults', () => {
    const script = readFileSync(path.join(deployDir, 'healthcheck.mjs'), 'utf8');
    const options = daemonCommand().options;
    const names = [...script.matchAll(/MINIFLANNELD_[A-Z_]+/g)].map((m) => m[0]);
    assert.deepEqual([...new Set(names)].sort(), ['MINIFLANNELD_HEALTHZ_IP', 'MINIFLANNELD_HEALTHZ_PORT']);
    for (const name of names) assert.ok(options.some((o) => o.envVar === name), `${name} is a daemon variable`);
    const port = options.find((o) => o.long === '--healthz-port')!.defaultValue;
    assert.match(script, new RegExp(`\\|\\| '${port}'`), `the default port ${port}`);
  });

  test('the PodMonitor scrapes /metrics on the health port of the DaemonSet\'s pods, under the job the rules select', () => {
    const [monitor] = loadYaml(podMonitorManifest) as [Record<string, any>];
    const jobs = [...new Set([...readFileSync(prometheusRules, 'utf8').matchAll(/\bjob="([^"]+)"/g)].map((m) => m[1]!))];
    assert.deepEqual(jobs, ['miniflannel']);
    assert.deepEqual(podMonitorProblems(monitor, jobs), []);
    // The check bites: a selector label the pods lack, a port the container does not name, the operator's default job, a misspelt field.
    const broken = structuredClone(monitor);
    broken.spec.selector.matchLabels['app.kubernetes.io/component'] = 'controller';
    broken.spec.podMetricsEndpoints[0].port = 'metrics';
    delete broken.spec.jobLabel;
    broken.spec.podMetricEndpoints = [];
    assert.deepEqual(podMonitorProblems(broken, jobs), [
      'spec.podMetricEndpoints: no such field in a PodMonitor',
      'selector: app.kubernetes.io/component=controller is not a label of the DaemonSet\'s pods',
      'jobLabel: the job is kube-miniflannel/miniflannel, the rules select miniflannel',
      'podMetricsEndpoints: container miniflanneld has no port named metrics',
    ]);
  });

  test('the static CNI conflist (for nodes whose conflist the daemon does not write) matches what the daemon writes', () => {
    const file = path.join(deployDir, 'cni', CNI_CONFLIST_NAME);
    const conflist = JSON.parse(readFileSync(file, 'utf8'));
    const written = cniConflist({ ipv4: { subnet: '10.244.1.0/24', network: '10.244.0.0/16' }, mtu: 1472 }) as any;
    assert.equal(conflist.cniVersion, CNI_VERSION);
    assert.equal(conflist.name, written.name, 'the same network name, so kubelet sees one network either way');
    const [flannel, portmap] = conflist.plugins;
    assert.equal(flannel.type, 'flannel');
    const subnetFile = daemonContainer.env?.find((e) => e.name === 'MINIFLANNELD_SUBNET_FILE')?.value;
    assert.equal(flannel.subnetFile, subnetFile, 'flannel\'s plugin reads the subnet.env the DaemonSet writes');
    // flannel's plugin delegates to bridge (default cni0) with host-local over FLANNEL_SUBNET, as the daemon's conflist does.
    assert.equal(written.plugins[0].type, 'bridge');
    assert.equal(written.plugins[0].bridge, 'cni0');
    assert.equal(flannel.delegate.bridge ?? 'cni0', written.plugins[0].bridge);
    assert.equal(flannel.delegate.hairpinMode, written.plugins[0].hairpinMode);
    assert.deepEqual(portmap, written.plugins[1]);
  });
});
