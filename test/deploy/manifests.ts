// The deploy/ manifests as the tests read them: every YAML document of every
// file, and typed access to the objects the tests need.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { packageRoot } from '../../lab/paths.js';
import type { KubeObject } from './schema.js';

export const deployDir = path.join(packageRoot, 'deploy');
export const daemonManifest = path.join(deployDir, 'kubernetes', 'miniflannel.yaml');
export const redisManifest = path.join(deployDir, 'redis', 'redis.yaml');
/** Prometheus's files: its rules, their tests, and a PodMonitor (a prometheus-operator CRD, beyond the Kubernetes API schemas). */
export const prometheusDir = path.join(deployDir, 'prometheus');
export const podMonitorManifest = path.join(prometheusDir, 'podmonitor.yaml');
export const prometheusRules = path.join(prometheusDir, 'rules.yaml');

export interface LoadedObject {
  file: string;
  object: KubeObject;
}

/** Every .yaml file under deploy/, kustomizations included. */
export function yamlFiles(dir = deployDir): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => /\.ya?ml$/.test(name))
    .map((name) => path.join(dir, name))
    .sort();
}

/** Parses every document of a multi-document YAML file; a syntax error throws with the file's name. */
export function loadYaml(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const values: unknown[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${path.relative(packageRoot, file)}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) values.push(value);
  }
  return values;
}

export const isKustomization = (file: string) => /(^|\/)kustomization\.ya?ml$/.test(file);

/** The Kubernetes objects of a manifest file. */
export function loadObjects(file: string): KubeObject[] {
  return loadYaml(file) as KubeObject[];
}

export function findObject<T = any>(objects: KubeObject[], kind: string, name?: string): T {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` named ${name}` : ''}, found ${found.length}`);
  return found[0] as T;
}

// The slices of the Kubernetes types the tests read, loosely typed: the
// schema check has already vouched for their shape.
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string };
  };
}

export interface HttpGet {
  path?: string;
  port: number | string;
  host?: string;
  scheme?: string;
}

export interface Probe {
  httpGet?: HttpGet;
  tcpSocket?: { port: number | string };
  exec?: { command: string[] };
  periodSeconds?: number;
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: EnvVar[];
  ports?: Array<{ name?: string; containerPort: number; protocol?: string }>;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: SecurityContext;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
}

export interface SecurityContext {
  privileged?: boolean;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
}

export interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: { name: string; items?: Array<{ key: string; path: string }> };
  secret?: { secretName: string };
  emptyDir?: Record<string, unknown>;
}

export interface PodSpec {
  hostNetwork?: boolean;
  dnsPolicy?: string;
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  priorityClassName?: string;
  nodeSelector?: Record<string, string>;
  tolerations?: Array<{ key?: string; operator?: string; effect?: string; value?: string }>;
  terminationGracePeriodSeconds?: number;
  initContainers?: Container[];
  containers: Container[];
  volumes?: Volume[];
}

export interface Workload {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec: {
    selector: { matchLabels: Record<string, string> };
    updateStrategy?: { type: string; rollingUpdate?: { maxUnavailable?: number | string } };
    strategy?: { type: string };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}

export interface ConfigMap {
  metadata: { name: string; namespace?: string };
  data: Record<string, string>;
}

export function container(pod: PodSpec, name: string, init = false): Container {
  const list = (init ? pod.initContainers : pod.containers) ?? [];
  const found = list.find((c) => c.name === name);
  if (!found) throw new Error(`no ${init ? 'init container' : 'container'} named ${name}`);
  return found;
}

/** A probe's or a Service's port, by number or by the container port's name. */
export function resolvePort(c: Container, port: number | string): number {
  if (typeof port === 'number') return port;
  const named = c.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`container ${c.name} has no port named ${port}`);
  return named.containerPort;
}

/** Each volume mount of a container with the volume it mounts. */
export function mounts(pod: PodSpec, c: Container): Array<{ mountPath: string; readOnly: boolean; volume: Volume }> {
  return (c.volumeMounts ?? []).map((m) => {
    const volume = pod.volumes?.find((v) => v.name === m.name);
    if (!volume) throw new Error(`container ${c.name} mounts ${m.name}, which is no volume of the pod`);
    return { mountPath: m.mountPath, readOnly: m.readOnly === true, volume };
  });
}

/** "128Mi", "1G", "500M" -> bytes. */
export function parseQuantity(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  if (!match) throw new Error(`unsupported quantity ${quantity}`);
  const unit = { '': 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[match[2] ?? ''];
  return Number(match[1]) * unit!;
}

export const prometheusRuleTests = path.join(prometheusDir, 'rules.test.yaml');
export const grafanaDashboard = path.join(deployDir, 'grafana', 'miniflannel.json');

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** The alerts of deploy/prometheus/rules.yaml, every group's. */
export function alertRules(): AlertRule[] {
  const [file] = loadYaml(prometheusRules) as [{ groups: Array<{ name: string; rules: AlertRule[] }> }];
  return file.groups.flatMap((group) => group.rules);
}

/** Every PromQL query of the Grafana dashboard, its template variables' included. */
export function dashboardQueries(dashboard: any = JSON.parse(readFileSync(grafanaDashboard, 'utf8'))): string[] {
  const panels = dashboard.panels.flatMap((panel: any) => panel.targets.map((target: any) => target.expr as string));
  // Grafana's label_values(series, label) asks Prometheus for the labels of a series selector: that selector is the query.
  const variables = dashboard.templating.list
    .filter((v: any) => v.type === 'query')
    .map((v: any) => /^label_values\((.+), *\w+\)$/.exec(v.definition)?.[1] ?? (v.definition as string));
  return [...panels, ...variables];
}
