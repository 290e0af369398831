// Runs the real miniflanneld binary inside a sandbox node, logging to a file
// in the node's workspace, and talks to its HTTP endpoint from inside the
// namespace (the root namespace has no route to the underlay).
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { StatusDocument } from '../daemon/node/status.js';
import type { SandboxNode } from './cluster.js';
import type { Netns } from './netns.js';
import { stopProcess } from './exec.js';
import { cliBin, daemonBin } from './paths.js';


/** The flags a DaemonSet would give miniflanneld on this node, with the node's files in its workspace. */
export function leaseModeArgs(node: SandboxNode, redisUrl: string): string[] {
  return [
    '--redis-url', redisUrl,
    '--iface', 'eth0',
    '--node-name', node.ns.name,
    '--subnet-file', path.join(node.workDir, 'run', 'subnet.env'),
    '--cni-conf-dir', path.join(node.workDir, 'cni'),
    '--cni-ipam-data-dir', path.join(node.workDir, 'ipam'),
    '--ip-masq',
    // A node with an IPv6 underlay address sends over it (every node of a sandbox has one, or none).
    ...(node.underlayIp6 ? ['--public-ipv6', node.underlayIp6, '--underlay', 'ipv6'] : []),
  ];
}

/** The last line a daemon logged, which says why it exited: the sandbox's workspace, and the log with it, may be gone by the time anyone reads the failure. */
async function lastWords(logFile: string): Promise<string> {
  const lines = (await readFile(logFile, 'utf8').catch(() => '')).trimEnd().split('\n');
  return lines.at(-1) || '(nothing logged)';
}

/** The CNI conflist the node's daemon wrote. */
export async function writtenConflist(node: SandboxNode): Promise<any> {
  return JSON.parse(await readFile(path.join(node.workDir, 'cni', '10-miniflannel.conflist'), 'utf8'));
}

/** Runs the miniflannel CLI inside a namespace (the underlay's reaches the sandbox's Redis). */
export function cliIn(ns: Netns, args: string[]): Promise<string> {
  return ns.exec([process.execPath, cliBin, ...args]);
}

export const HEALTHZ_PORT = 8286;

export interface RunningDaemon {
  readonly process: ChildProcess;
  readonly node: SandboxNode;
  readonly logFile: string;
  /** GET /status, read from inside the node's namespace. */
  status(): Promise<StatusDocument>;
  stop(): Promise<number | null>;
}

/** GETs a URL from inside a namespace; returns the HTTP status and body. */
export async function httpGetIn(ns: Netns, url: string): Promise<{ status: number; body: string }> {
  const script = `fetch(${JSON.stringify(url)}).then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() }))).catch((e) => console.log(JSON.stringify({ status: 0, body: String(e.cause ?? e) })))`;
  return JSON.parse((await ns.exec([process.execPath, '-e', script])).trim());
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Starts miniflanneld in the node's namespace and waits until it is ready.
 * Its health server listens on the node's IPv4 underlay address, or on
 * `healthzIp` (a node without one).
 */
export async function startDaemon(node: SandboxNode, args: string[], options: { healthzIp?: string } = {}): Promise<RunningDaemon> {
  const logFile = path.join(node.workDir, `miniflanneld-${Date.now()}.log`);
  const log = createWriteStream(logFile);
  const healthzIp = options.healthzIp ?? node.underlayIp;
  const child = node.ns.spawn([process.execPath, daemonBin, '--healthz-ip', healthzIp, '--healthz-port', String(HEALTHZ_PORT), ...args]);
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const base = `http://${healthzIp.includes(':') ? `[${healthzIp}]` : healthzIp}:${HEALTHZ_PORT}`;
  const daemon: RunningDaemon = {
    process: child,
    node,
    logFile,
    status: async () => JSON.parse((await httpGetIn(node.ns, `${base}/status`)).body) as StatusDocument,
    stop: () => stopProcess(child),
  };
  try {
    await waitFor(`miniflanneld on ${node.ns.name} to be ready (log: ${logFile})`, async () => {
      if (child.exitCode !== null) throw new Error(`miniflanneld on ${node.ns.name} exited with ${child.exitCode}: ${await lastWords(logFile)} (log: ${logFile})`);
      return (await httpGetIn(node.ns, `${base}/readyz`)).status === 200;
    });
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  return daemon;
}
