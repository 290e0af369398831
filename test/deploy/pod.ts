// What kubelet makes of a manifest's container, for the tests that run one:
// its env resolved from the downward API and Secrets, $(VAR) references
// expanded, its volumes stood in for by directories of the test, and the URL
// of an httpGet probe. containerProcess() runs it from this repository's
// build, its securityContext enforced as a container runtime does
// (capabilities, no_new_privs, user, read-only root and /proc/sys) inside a
// private mount namespace of a test network namespace; podman.ts runs the
// built image instead.
import { statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { mounts, resolvePort, type ConfigMap, type Container, type PodSpec, type Probe, type SecurityContext } from './manifests.js';

export interface PodInputs {
  /** Downward API values by fieldPath: spec.nodeName, status.hostIP, ... */
  fields: Record<string, string>;
  /** Secret name -> key -> value. */
  secrets: Record<string, Record<string, string>>;
}

export class PodSpecError extends Error {
  override name = 'PodSpecError';
}

/** Kubernetes' $(VAR) expansion in command, args and env: `$$` escapes, unknown names stay as written. */
export function expandReferences(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (name === undefined) return '$';
    return env[name] ?? match;
  });
}

/** The container's environment, in order, each value resolved as kubelet does. */
export function containerEnv(c: Container, inputs: PodInputs): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of c.env ?? []) {
    if (entry.value !== undefined) {
      env[entry.name] = expandReferences(entry.value, env);
      continue;
    }
    const from = entry.valueFrom;
    if (from?.fieldRef) {
      const value = inputs.fields[from.fieldRef.fieldPath];
      if (value === undefined) throw new PodSpecError(`${c.name}: env ${entry.name} reads fieldPath ${from.fieldRef.fieldPath}, which the test does not provide`);
      env[entry.name] = value;
    } else if (from?.secretKeyRef) {
      const { name, key } = from.secretKeyRef;
      const value = inputs.secrets[name]?.[key];
      if (value === undefined) throw new PodSpecError(`${c.name}: env ${entry.name} reads Secret ${name} key ${key}, which the test does not provide`);
      env[entry.name] = value;
    } else {
      throw new PodSpecError(`${c.name}: env ${entry.name} has a source the test does not know: ${JSON.stringify(entry.valueFrom)}`);
    }
  }
  return env;
}

/** Container paths (volume mountPaths) and the test directories that stand for them. */
export class PathMap {
  private readonly entries: Array<[RegExp, string]>;

  constructor(map: Record<string, string>) {
    // Longest first, so /run/miniflannel/x is not taken for /run/x.
    this.entries = Object.entries(map)
      .sort(([a], [b]) => b.length - a.length)
      .map(([from, to]) => [new RegExp(`(?<![\\w./-])${from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?=$|[/\\s"'\`;:,)])`, 'g'), to]);
  }

  /** Rewrites every occurrence of a mapped path in `value` (a flag, an env value, a script). */
  map(value: string): string {
    return this.entries.reduce((text, [pattern, to]) => text.replace(pattern, to), value);
  }
}

/**
 * The process a container runs: `command` (or the image's entrypoint) then
 * `args`, references expanded and paths mapped. Programs are found on the
 * PATH of the environment it runs with, as in the image.
 */
export function containerArgv(c: Container, env: Record<string, string>, options: { paths: PathMap; imageEntrypoint?: string[] }): string[] {
  const command = c.command ?? options.imageEntrypoint ?? [];
  const argv = [...command, ...(c.args ?? [])].map((arg) => options.paths.map(expandReferences(arg, env)));
  if (argv.length === 0) throw new PodSpecError(`${c.name}: no command, no args and no image entrypoint`);
  return argv;
}

/** The capabilities containerd and CRI-O give a container unless told otherwise. */
const RUNTIME_DEFAULT_CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID',
  'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE',
];

/** The capability bounding set a container gets from its securityContext. */
export function capabilitiesOf(sc: SecurityContext | undefined): string[] {
  const add = (sc?.capabilities?.add ?? []).map((c) => c.toUpperCase().replace(/^CAP_/, ''));
  const drop = (sc?.capabilities?.drop ?? []).map((c) => c.toUpperCase().replace(/^CAP_/, ''));
  const base = drop.includes('ALL') ? [] : RUNTIME_DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c));
  return [...new Set([...base, ...add])].sort();
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export interface Confinement {
  /** This machine's paths that stand for the container's writable volumes. */
  writable: string[];
  /**
   * kubelet asks the runtime to mount /proc/sys read-only in every container
   * that is not privileged (its default readonlyPaths), host network or not.
   */
  readOnlyProcSys: boolean;
}

/**
 * Wraps `argv` so it runs as the container would: in a private mount
 * namespace where, with readOnlyRootFilesystem, every mount but /proc, /dev
 * and the volumes is read-only, /proc/sys read-only as kubelet makes it, and
 * then with setpriv: the user, no_new_privs, and only the capabilities the
 * securityContext grants. Remounts are bind remounts (per mount point, this
 * namespace only); the script refuses to run in the host's mount namespace.
 * A privileged container keeps every capability and a writable /proc/sys.
 */
export function confined(sc: SecurityContext | undefined, confinement: Confinement, argv: string[]): string[] {
  const privileged = sc?.privileged === true;
  const writable = confinement.writable.map(shellQuote).join(' ');
  const lines = [
    'set -eu',
    'if [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/1/ns/mnt)" ]; then echo "confine: not in a private mount namespace" >&2; exit 97; fi',
  ];
  if (sc?.readOnlyRootFilesystem) {
    lines.push(
      `for dir in ${writable}; do mount --bind "$dir" "$dir"; done`,
      'mount -o remount,bind,ro /',
      'findmnt -rn -o TARGET | while IFS= read -r target; do',
      '  case "$target" in /|/proc|/proc/*|/dev|/dev/*) continue ;; esac',
      `  for dir in ${writable}; do [ "$target" = "$dir" ] && continue 2; done`,
      '  mount -o remount,bind,ro "$target" 2>/dev/null || true',
      'done',
    );
  }
  // A privileged container keeps /proc/sys writable and every capability.
  if (confinement.readOnlyProcSys && !privileged) lines.push('mount --bind /proc/sys /proc/sys', 'mount -o remount,bind,ro /proc/sys');
  const setpriv = [
    'setpriv',
    '--inh-caps=-all',
    ...(privileged ? [] : [`--bounding-set=${['-all', ...capabilitiesOf(sc).map((c) => `+${c.toLowerCase()}`)].join(',')}`]),
    ...(sc?.allowPrivilegeEscalation === false ? ['--no-new-privs'] : []),
    ...(sc?.runAsUser !== undefined ? [`--reuid=${sc.runAsUser}`, `--regid=${sc.runAsGroup ?? 0}`, '--clear-groups'] : []),
  ];
  lines.push(`exec ${setpriv.join(' ')} -- "$@"`);
  return ['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', lines.join('\n'), 'confine', ...argv];
}

/** What to start for a container: its confined command line, its environment and its working directory. */
export interface ContainerProcess {
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
}

/** A container of a pod, with what the test stands in for around it. */
export interface ContainerInputs {
  pod: PodSpec;
  container: Container;
  inputs: PodInputs;
  /** Volume name -> the path of this machine that stands for it (a hostPath's stand-in, a ConfigMap's files). */
  volumes: Record<string, string>;
  /**
   * The node's own paths that the container names without mounting them
   * (written into files that plugins on the node read), -> their stand-ins.
   */
  nodePaths?: Record<string, string>;
}

/** The container's volume mounts, each with the path of this machine that stands for its volume. */
export function volumeMounts(setup: ContainerInputs): Array<{ mountPath: string; readOnly: boolean; standIn: string }> {
  return mounts(setup.pod, setup.container).map(({ mountPath, readOnly, volume }) => {
    const standIn = setup.volumes[volume.name];
    if (standIn === undefined) throw new PodSpecError(`${setup.container.name}: the test has no stand-in for volume ${volume.name}`);
    return { mountPath, readOnly, standIn };
  });
}

export interface ContainerSetup extends ContainerInputs {
  /** The image's environment (its ENV and PATH), under the container's own. */
  imageEnv: Record<string, string>;
  imageEntrypoint?: string[];
}

/**
 * The container as kubelet would start it: env resolved, $(VAR) expanded,
 * every mountPath in command, args and env replaced by its volume's
 * stand-in, the working directory likewise, and confined per its
 * securityContext (the writable volumes stay writable).
 */
export function containerProcess(setup: ContainerSetup): ContainerProcess {
  const c = setup.container;
  const list = volumeMounts(setup);
  const paths = new PathMap({ ...setup.nodePaths, ...Object.fromEntries(list.map((m) => [m.mountPath, m.standIn])) });
  const env = containerEnv(c, setup.inputs);
  const argv = containerArgv(c, env, { paths, imageEntrypoint: setup.imageEntrypoint });
  const writable = list.filter((m) => !m.readOnly).map((m) => m.standIn);
  return {
    argv: confined(c.securityContext, { writable, readOnlyProcSys: true }, argv),
    env: { ...setup.imageEnv, ...Object.fromEntries(Object.entries(env).map(([name, value]) => [name, paths.map(value)])) },
    cwd: c.workingDir === undefined ? undefined : paths.map(c.workingDir),
  };
}

/** A ConfigMap volume: its keys as files in a directory of the test. */
async function configMapVolume(dir: string, map: ConfigMap): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const [key, value] of Object.entries(map.data)) await writeFile(path.join(dir, key), value, { mode: 0o644 });
  return dir;
}

/**
 * The pod's volumes on a node whose files live under `nodeRoot`: each hostPath
 * at the same path below it (created as its type says), a CharDevice as the
 * real device, ConfigMaps as files. Volume name -> the path that stands for it.
 */
export async function standInVolumes(pod: PodSpec, nodeRoot: string, maps: ConfigMap[]): Promise<Record<string, string>> {
  const volumes: Record<string, string> = {};
  for (const volume of pod.volumes ?? []) {
    if (volume.hostPath) {
      const { path: hostPath, type } = volume.hostPath;
      if (type === 'CharDevice') {
        if (!statSync(hostPath).isCharacterDevice()) throw new PodSpecError(`${hostPath} is not a character device, as volume ${volume.name}'s type demands`);
        volumes[volume.name] = hostPath;
      } else if (type === 'DirectoryOrCreate' || type === 'FileOrCreate') {
        const standIn = path.join(nodeRoot, hostPath);
        await mkdir(type === 'FileOrCreate' ? path.dirname(standIn) : standIn, { recursive: true });
        if (type === 'FileOrCreate') await writeFile(standIn, '', { flag: 'a' });
        volumes[volume.name] = standIn;
      } else {
        throw new PodSpecError(`hostPath ${hostPath} has type ${type}, which the test does not stand in for`);
      }
    } else if (volume.configMap) {
      const map = maps.find((m) => m.metadata.name === volume.configMap!.name);
      if (!map) throw new PodSpecError(`ConfigMap ${volume.configMap.name} is not among the manifests given`);
      volumes[volume.name] = await configMapVolume(path.join(nodeRoot, 'configmaps', volume.name), map);
    } else {
      throw new PodSpecError(`volume ${volume.name} is of a kind the test does not stand in for`);
    }
  }
  return volumes;
}

/** What an httpGet probe GETs; a hostNetwork pod's IP is the node's. */
export function probeUrl(c: Container, probe: Probe | undefined, podIp: string): string {
  const httpGet = probe?.httpGet;
  if (!httpGet) throw new PodSpecError(`${c.name} has no httpGet probe`);
  if (httpGet.host !== undefined) throw new PodSpecError(`${c.name}'s probe names a host; kubelet would probe it, not the pod IP`);
  return `${(httpGet.scheme ?? 'HTTP').toLowerCase()}://${podIp}:${resolvePort(c, httpGet.port)}${httpGet.path ?? '/'}`;
}
