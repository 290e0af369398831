/**
 * Calls CNI plugins the way kubelet's libcni does for a conflist: each
 * plugin in order, with the list's name and version merged into its config
 * and the previous plugin's result as prevResult; DEL in reverse order.
 */
import { run } from './exec.js';

export const DEFAULT_CNI_PATH = '/usr/lib/cni';

export interface CniRuntime {
  containerId: string;
  /** Path of the pod's network namespace, e.g. /run/netns/<name>. */
  netns: string;
  ifName: string;
  cniPath?: string;
  /** Command prefix to run plugins with, e.g. `ip netns exec <node>` so they act on a node namespace. */
  launcher?: readonly string[];
}

interface Conflist {
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown> & { type: string }>;
}

export interface CniResult {
  ips?: Array<{ address: string; gateway?: string }>;
  [key: string]: unknown;
}

function invoke(command: 'ADD' | 'DEL', plugin: Record<string, unknown> & { type: string }, runtime: CniRuntime): Promise<string> {
  const cniPath = runtime.cniPath ?? DEFAULT_CNI_PATH;
  return run([...(runtime.launcher ?? []), `${cniPath}/${plugin.type}`], {
    input: JSON.stringify(plugin),
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: runtime.containerId,
      CNI_NETNS: runtime.netns,
      CNI_IFNAME: runtime.ifName,
      CNI_PATH: cniPath,
    },
  });
}

export async function cniAdd(conflist: Conflist, runtime: CniRuntime): Promise<CniResult> {
  let previous: CniResult | undefined;
  for (const plugin of conflist.plugins) {
    const config = { ...plugin, cniVersion: conflist.cniVersion, name: conflist.name, ...(previous ? { prevResult: previous } : {}) };
    previous = JSON.parse(await invoke('ADD', config, runtime)) as CniResult;
  }
  return previous ?? {};
}

export async function cniDel(conflist: Conflist, runtime: CniRuntime): Promise<void> {
  for (const plugin of [...conflist.plugins].reverse()) {
    await invoke('DEL', { ...plugin, cniVersion: conflist.cniVersion, name: conflist.name }, runtime);
  }
}
