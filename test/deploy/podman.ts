// A manifest's container run by podman as kubelet would have its runtime run
// it: the pod's network namespace (a hostNetwork pod's is the node's), the
// container's securityContext as podman flags, its volumes from the test's
// stand-ins, its env resolved and its command and args with $(VAR) expanded.
// Podman itself comes with the private configuration .ci/image-base.sh
// writes, so nothing lands in this machine's /var/lib/containers.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { run, runForOutcome, type Outcome } from '../../lab/exec.js';
import { leftByDeadRun } from '../../lab/netns.js';
import { packageRoot } from '../../lab/paths.js';
import { parseQuantity, type SecurityContext } from './manifests.js';
import { containerEnv, expandReferences, PathMap, PodSpecError, volumeMounts, type ContainerInputs } from './pod.js';

const LONG_MS = 10 * 60_000;
/**
 * The label a test run puts on what it builds (`podman build --label`, which
 * buildah 1.28 puts on each intermediate image too), valued with its run
 * prefix. With --no-cache no image is shared between runs, so a run removes
 * its own images and a dead run's, never a live one's.
 */
export const RUN_LABEL = 'org.miniflannel.test-run';

export class Podman {
  private constructor(private readonly env: NodeJS.ProcessEnv) {}

  /**
   * Makes (or finds cached) the base image deploy/Dockerfile's FROM names and
   * the podman configuration, by .ci/image-base.sh. Returns podman, the Node
   * major that base carries (the Dockerfile's NODE_VERSION), the base's tag
   * and the script's cache directory.
   */
  static async withImageBase(): Promise<{ podman: Podman; nodeMajor: string; base: string; cache: string }> {
    const output = await run([path.join(packageRoot, '.ci', 'image-base.sh')], { timeoutMs: LONG_MS });
    const made = Object.fromEntries([...output.matchAll(/^(\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
    if (!/^\d+$/.test(made.node_major ?? '') || !made.base || !made.env) throw new Error(`.ci/image-base.sh printed ${JSON.stringify(output)}`);
    const exports = await readFile(made.env, 'utf8');
    const env = { ...process.env, ...Object.fromEntries([...exports.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!])) };
    if (!env.CONTAINERS_CONF || !env.CONTAINERS_STORAGE_CONF) throw new Error(`${made.env} names no podman configuration`);
    return { podman: new Podman(env), nodeMajor: made.node_major!, base: made.base, cache: path.dirname(made.env) };
  }

  /**
   * Removes what test runs no longer alive left: containers named with their
   * run prefix, images (intermediate ones too) carrying RUN_LABEL, and
   * images tagged with a run prefix (as runs before RUN_LABEL tagged them).
   */
  async removeStale(): Promise<void> {
    const containers = (await this.run('ps', '-a', '--format', '{{.Names}}')).split('\n').filter(leftByDeadRun);
    if (containers.length > 0) await this.outcome('rm', '-f', '--ignore', '-t', '0', ...containers);
    const images: Array<{ Id: string; Names?: string[]; Labels: Record<string, string> | null }> = JSON.parse(await this.run('images', '-a', '--format', 'json'));
    const labelled = images.filter((image) => leftByDeadRun(image.Labels?.[RUN_LABEL] ?? '')).map((image) => image.Id);
    if (labelled.length > 0) await this.outcome('rmi', '-f', '--ignore', ...new Set(labelled));
    // By name, one at a time: a tag may sit on an image others use (the base), and only the tag is the run's.
    // (Given two names of one image, podman 4.3 deletes the image, whatever other names it has.)
    const tags = new Set(images.flatMap((image) => image.Names ?? []).filter((name) => leftByDeadRun(name.slice(name.lastIndexOf(':') + 1))));
    for (const tag of tags) await this.outcome('rmi', '--ignore', tag);
  }

  /** Removes every image this run built (its builds' intermediate images too). */
  async removeImagesOf(runPrefix: string): Promise<void> {
    const ids = (await this.run('images', '-a', '-q', '--filter', `label=${RUN_LABEL}=${runPrefix}`)).split('\n').filter(Boolean);
    if (ids.length > 0) await this.outcome('rmi', '-f', '--ignore', ...new Set(ids));
  }

  /** Runs podman; a non-zero exit throws with its output. */
  run(...args: string[]): Promise<string> {
    return run(['podman', ...args], { env: this.env, timeoutMs: LONG_MS });
  }

  outcome(...args: string[]): Promise<Outcome> {
    return runForOutcome(['podman', ...args], { env: this.env, timeoutMs: 2 * 60_000 });
  }

  async inspect(what: 'image' | 'container', name: string): Promise<any> {
    return JSON.parse(await this.run(what, 'inspect', name))[0];
  }
}

/** The podman flags that enforce a securityContext as a Kubernetes runtime does. */
function securityFlags(context: SecurityContext = {}): string[] {
  if (context.privileged === true) throw new PodSpecError('a privileged container: the test runs none');
  if (context.runAsNonRoot === true && !context.runAsUser) throw new PodSpecError('runAsNonRoot without a non-zero runAsUser: kubelet would refuse the image\'s root');
  const flags = [
    ...(context.capabilities?.drop ?? []).map((cap) => `--cap-drop=${cap.toLowerCase()}`),
    ...(context.capabilities?.add ?? []).map((cap) => `--cap-add=${cap}`),
  ];
  if (context.allowPrivilegeEscalation === false) flags.push('--security-opt', 'no-new-privileges');
  // Kubernetes mounts no tmpfs over a read-only root; podman would by default.
  if (context.readOnlyRootFilesystem === true) flags.push('--read-only', '--read-only-tmpfs=false');
  // Without runAsGroup the runtime takes the user's group from the image, as podman does for a bare uid.
  if (context.runAsUser !== undefined) flags.push('--user', context.runAsGroup === undefined ? `${context.runAsUser}` : `${context.runAsUser}:${context.runAsGroup}`);
  return flags;
}

export interface PodmanContainerSetup extends ContainerInputs {
  /** The network namespace (its /run/netns path) the pod runs in. */
  netns: string;
}

/**
 * `podman run` arguments for the container, up to and including the image
 * and the args: network, security, volumes, working directory, memory
 * limit, env, and the container's command as the entrypoint.
 */
export function podmanRunArgs(setup: PodmanContainerSetup, image: string): string[] {
  const c = setup.container;
  if (setup.pod.hostNetwork !== true) throw new PodSpecError(`${c.name}: only hostNetwork pods are run here (a node namespace is their network)`);
  const flags = ['--network', `ns:${setup.netns}`, ...securityFlags(c.securityContext)];
  // A CharDevice hostPath too is a bind mount, as kubelet makes it; runc's default device rules allow the TUN.
  for (const { mountPath, readOnly, standIn } of volumeMounts(setup)) flags.push('-v', `${standIn}:${mountPath}${readOnly ? ':ro' : ''}`);
  if (c.workingDir !== undefined) flags.push('--workdir', c.workingDir);
  const memoryLimit = c.resources?.limits?.memory;
  if (memoryLimit !== undefined) flags.push('--memory', String(parseQuantity(memoryLimit)));
  const nodePaths = new PathMap(setup.nodePaths ?? {});
  const env = containerEnv(c, setup.inputs);
  for (const [name, value] of Object.entries(env)) flags.push('-e', `${name}=${nodePaths.map(value)}`);
  if (c.command) flags.push('--entrypoint', JSON.stringify(c.command.map((arg) => expandReferences(arg, env))));
  return [...flags, image, ...(c.args ?? []).map((arg) => expandReferences(arg, env))];
}
