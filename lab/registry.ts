/**
 * Running sandboxes, so that `sandbox status` and `sandbox down` can find
 * the `sandbox up` that owns them. Each `up` writes one small file, named by
 * its pid, once its cluster is ready, and removes it on teardown. A file
 * whose pid is gone is a crashed run: it is dropped, and its namespaces go
 * with removeStaleNamespaces().
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { alive } from './netns.js';

export const REGISTRY_DIR = '/run/miniflannel-sandbox';

export interface SandboxRecord {
  pid: number;
  startedAt: string;
  redisUrl: string;
  underlayNamespace: string;
  logDir: string;
  /** The sandbox's Prometheus (`up --prometheus`), reached from the underlay namespace. */
  prometheusUrl?: string;
  nodes: {
    namespace: string;
    /** miniflanneld's pid, to stop or kill one node's daemon. */
    daemonPid: number;
    underlayIp: string;
    subnet: string;
    ipv6Subnet: string;
    healthz: string;
    pod: { namespace: string; ip: string; ip6: string };
  }[];
}

const fileOf = (pid: number) => path.join(REGISTRY_DIR, `${pid}.json`);

export async function register(record: SandboxRecord): Promise<void> {
  await mkdir(REGISTRY_DIR, { recursive: true });
  const file = fileOf(record.pid);
  await writeFile(`${file}.tmp`, `${JSON.stringify(record, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
}

export async function unregister(pid = process.pid): Promise<void> {
  await rm(fileOf(pid), { force: true });
}

export async function registered(pid: number): Promise<SandboxRecord | undefined> {
  try {
    return JSON.parse(await readFile(fileOf(pid), 'utf8')) as SandboxRecord;
  } catch {
    return undefined;
  }
}

/** The sandboxes whose `up` process is still alive; records of dead ones are removed. */
export async function runningSandboxes(): Promise<SandboxRecord[]> {
  let names: string[];
  try {
    names = await readdir(REGISTRY_DIR);
  } catch {
    return [];
  }
  const live: SandboxRecord[] = [];
  for (const name of names.filter((n) => /^\d+\.json$/.test(n)).sort()) {
    const record = await registered(Number.parseInt(name, 10));
    if (record && alive(record.pid)) live.push(record);
    else await rm(path.join(REGISTRY_DIR, name), { force: true });
  }
  return live;
}
