// Shared by the fault tests: a namespace cluster running the real
// miniflanneld, pods made by the real CNI plugins, pings whose every reply
// is time-stamped, the daemons' own log lines, and a census of what a daemon
// leaves in its node (TUN, routes, masquerade rules).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Pod, Sandbox, SandboxNode } from '../../lab/cluster.js';
import { cliIn, HEALTHZ_PORT, httpGetIn, leaseModeArgs, startDaemon, waitFor, writtenConflist, type RunningDaemon } from '../../lab/daemon.js';
import { exited, run, stopProcess } from '../../lab/exec.js';
import type { Netns } from '../../lab/netns.js';
import { createTestSandbox } from '../harness/namespaces.js';
import { daemonBin } from '../../lab/paths.js';

export const NETWORK = '10.244.0.0/16';

/** A sandbox with a daemon and a pod per node; tests reach both by node index (1-based). */
export class TestCluster {
  readonly daemons = new Map<SandboxNode, RunningDaemon>();
  readonly pods = new Map<SandboxNode, Pod>();
  /** Processes the test started in the sandbox (Redis, sentinels, pings), stopped by pid in destroy(). */
  private readonly processes = new Set<ChildProcess>();

  private constructor(
    readonly sandbox: Sandbox,
    readonly redisUrl: string,
    readonly daemonArgs: readonly string[],
  ) {}

  /** A sandbox with `nodes` nodes, nothing running yet: start the store, then call join(). */
  static async create(nodes: number, redisUrl: string, daemonArgs: readonly string[] = []): Promise<TestCluster> {
    return new TestCluster(await createTestSandbox(nodes), redisUrl, daemonArgs);
  }

  node(index: number): SandboxNode {
    return this.sandbox.nodes[index - 1]!;
  }

  daemon(index: number): RunningDaemon {
    return this.daemons.get(this.node(index))!;
  }

  pod(index: number): Pod {
    return this.pods.get(this.node(index))!;
  }

  /** Sets the network config with the CLI, then starts every node's daemon and gives it a pod. */
  async join(cliArgs: readonly string[] = []): Promise<void> {
    await this.cli(['config', 'init', '--network', NETWORK, ...cliArgs]);
    for (const node of this.sandbox.nodes) {
      await this.startDaemon(node);
      this.pods.set(node, await this.sandbox.addPod(node, await writtenConflist(node)));
    }
  }

  /** Starts (or restarts) a node's daemon with the cluster's flags plus `extra`; resolves once it is ready. */
  async startDaemon(node: SandboxNode, extra: readonly string[] = [], base = leaseModeArgs(node, this.redisUrl)): Promise<RunningDaemon> {
    const daemon = await startDaemon(node, [...base, ...this.daemonArgs, ...extra]);
    this.daemons.set(node, daemon);
    return daemon;
  }

  /** Adds a node to the sandbox, starts its daemon with the cluster's flags (resolves once it is ready) and gives it a pod. */
  async joinNode(extra: readonly string[] = []): Promise<SandboxNode> {
    const node = await this.sandbox.addNode();
    await this.startDaemon(node, extra);
    this.pods.set(node, await this.sandbox.addPod(node, await writtenConflist(node)));
    return node;
  }

  /**
   * Starts a node's daemon with the cluster's flags plus `extra` and returns
   * at once, without waiting for /readyz: for a daemon that is expected to
   * wait (Redis down, no config). Stopped (by pid) in destroy() like the others.
   */
  spawnDaemon(node: SandboxNode, extra: readonly string[] = []): StartingDaemon {
    const logFile = path.join(node.workDir, `miniflanneld-${Date.now()}.log`);
    const log = createWriteStream(logFile);
    const args = [...leaseModeArgs(node, this.redisUrl), ...this.daemonArgs, ...extra];
    const child = node.ns.spawn([process.execPath, daemonBin, '--healthz-ip', node.underlayIp, '--healthz-port', String(HEALTHZ_PORT), ...args]);
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const base = `http://${node.underlayIp}:${HEALTHZ_PORT}`;
    const daemon: StartingDaemon = {
      process: child,
      node,
      logFile,
      status: async () => JSON.parse((await httpGetIn(node.ns, `${base}/status`)).body),
      readyz: () => httpGetIn(node.ns, `${base}/readyz`),
      stop: () => stopProcess(child),
    };
    this.daemons.set(node, daemon);
    return daemon;
  }

  /** The CLI, run from the underlay namespace against the cluster's store. */
  cli(args: readonly string[]): Promise<string> {
    return cliIn(this.sandbox.underlay, [...args, '--redis-url', this.redisUrl]);
  }

  /** A process in a namespace of the sandbox, stopped (by pid) in destroy() if still running. */
  spawn(ns: Netns, command: readonly string[]): ChildProcess {
    const child = ns.spawn(command);
    this.processes.add(child);
    void exited(child).then(() => this.processes.delete(child));
    return child;
  }

  /** Stops every daemon and process the test started, then deletes the sandbox and checks no namespace is left. */
  async destroy(): Promise<void> {
    for (const daemon of this.daemons.values()) await daemon.stop();
    for (const child of this.processes) await stopProcess(child);
    const prefix = this.sandbox.underlay.name.replace(/ul$/, '');
    await this.sandbox.destroy();
    const left = (await run(['ip', 'netns', 'list'])).split('\n').filter((line) => line.startsWith(prefix));
    assert.deepEqual(left, [], 'namespaces left behind');
  }
}

/** A daemon started without waiting for it to be ready; readyz() answers status 0 while nothing listens yet. */
export interface StartingDaemon extends RunningDaemon {
  readyz(): Promise<{ status: number; body: string }>;
}

/** redis-cli inside a namespace, against host:port. */
export function redisCli(ns: Netns, host: string, port: number, ...args: string[]): Promise<string> {
  return ns.exec(['redis-cli', '-h', host, '-p', String(port), ...args]);
}

/** Resolves once `child` prints a line that contains `text`; rejects if it exits first. */
export function lineFrom(child: ChildProcess, text: string, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    let seen = '';
    lines.on('line', (line) => {
      seen = `${seen}\n${line}`.slice(-2000);
      if (line.includes(text)) resolve();
    });
    void exited(child).then((code) => reject(new Error(`${what} exited with ${code} before saying "${text}":${seen}`)));
  });
}

export interface PingRecord {
  readonly from: string;
  readonly to: string;
  readonly transmitted: number;
  /** Epoch ms of each reply, in order. */
  readonly replies: readonly number[];
}

/**
 * Pings `to` from `from` every 200 ms for `seconds`, each reply time-stamped
 * (ping -D). Resolves when ping ends, whatever its exit code: the replies are
 * the result.
 */
export function pingFor(cluster: TestCluster, from: Pod, to: Pod, seconds: number): Promise<PingRecord> {
  const child = cluster.spawn(from.ns, ['ping', '-D', '-n', '-i', '0.2', '-W', '1', '-w', String(seconds), to.ip]);
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  // 'close', not 'exit': the summary may still be in the pipe when the process exits.
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return closed.then(() => {
    const replies = [...out.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from /gm)].map((m) => Math.round(Number(m[1]) * 1000));
    const transmitted = Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? NaN);
    return { from: from.ip, to: to.ip, transmitted, replies };
  });
}

/** Replies of `ping` between two instants (epoch ms). */
export function repliesBetween(ping: PingRecord, start: number, end: number): number {
  return ping.replies.filter((t) => t >= start && t <= end).length;
}

/** The longest silence between consecutive replies, in ms. */
export function longestGap(ping: PingRecord): number {
  let gap = 0;
  for (let i = 1; i < ping.replies.length; i++) gap = Math.max(gap, ping.replies[i]! - ping.replies[i - 1]!);
  return gap;
}

export function describePing(ping: PingRecord): string {
  return `${ping.from} -> ${ping.to}: ${ping.replies.length}/${ping.transmitted} replies, longest gap ${longestGap(ping)} ms`;
}

export interface LogLine {
  readonly level: number;
  readonly time: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** The daemon's JSON log lines so far (anything else it printed is skipped). */
export async function daemonLog(daemon: RunningDaemon): Promise<LogLine[]> {
  const lines: LogLine[] = [];
  for (const text of (await readFile(daemon.logFile, 'utf8')).split('\n')) {
    if (!text.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      // a line cut short by a kill
    }
  }
  return lines;
}

/** What miniflanneld leaves in a node: its TUN, routes into it or to the cluster network, and its NAT rules. */
export interface Leftovers {
  readonly tun: boolean;
  readonly routes: readonly string[];
  readonly rules: readonly string[];
}

export async function leftoversIn(node: SandboxNode, tunName = 'flannel0'): Promise<Leftovers> {
  const links = await node.ns.ip('-o', 'link', 'show');
  const routes = (await node.ns.ip('route', 'show')).split('\n').filter((r) => r.includes(tunName) || r.startsWith(NETWORK));
  const rules = (await node.ns.exec(['iptables', '-w', '5', '-t', 'nat', '-S'])).split('\n').filter((r) => r.includes('MINIFLANNEL'));
  return { tun: new RegExp(`^\\d+: ${tunName}:`, 'm').test(links), routes, rules };
}

/** Waits until `node`'s daemon lists `count` peers. */
export async function waitForPeers(cluster: TestCluster, index: number, count: number, timeoutMs = 30_000): Promise<void> {
  await waitFor(`node ${index} to list ${count} peers`, async () => (await cluster.daemon(index).status()).peers.length === count, timeoutMs);
}

/** The daemon's lease as /status shows it. */
export async function statusLease(daemon: RunningDaemon): Promise<{ subnet: string; publicIP?: string; expiresAt: number }> {
  const lease = (await daemon.status()).lease!;
  // A daemon's own lease always expires; only a reservation has none.
  return { ...lease, expiresAt: lease.expiresAt! };
}

/** Two subnets of the network that no running daemon holds (daemons pick theirs at random). */
export async function twoFreeSubnets(cluster: TestCluster): Promise<[string, string]> {
  const taken = new Set<string>();
  for (const daemon of cluster.daemons.values()) taken.add((await statusLease(daemon)).subnet);
  const free: string[] = [];
  for (let third = 250; free.length < 2; third--) {
    const subnet = `10.244.${third}.0/24`;
    if (!taken.has(subnet)) free.push(subnet);
  }
  return [free[0]!, free[1]!];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Pings in a ring, each pod to the next node's pod, for `seconds` (see pingFor). */
export function pingRing(cluster: TestCluster, indices: readonly number[], seconds: number): Array<Promise<PingRecord>> {
  return indices.map((from, i) => pingFor(cluster, cluster.pod(from), cluster.pod(indices[(i + 1) % indices.length]!), seconds));
}

/** Echo requests that got no reply. */
export function lostPings(ping: PingRecord): number {
  return ping.transmitted - ping.replies.length;
}

export interface PacedTransfer {
  readonly sent: { bytes: number; sha256: string };
  readonly received: { bytes: number; sha256: string; longestStallMs: number };
  readonly ms: number;
}

/** Sends `bytes` at a steady pace over `seconds`, hashing what goes out (node -e, CommonJS). */
const PACED_SENDER = `
const { createHash, randomBytes } = require('node:crypto');
const net = require('node:net');
const [host, port, totalText, secondsText] = process.argv.slice(1);
const total = Number(totalText);
const ticks = Math.max(1, Math.round(Number(secondsText) * 10));
const per = Math.ceil(total / ticks);
const hash = createHash('sha256');
let sent = 0;
const socket = net.connect(Number(port), host, () => {
  const tick = () => {
    if (sent >= total) return socket.end(() => process.stdout.write(JSON.stringify({ bytes: sent, sha256: hash.digest('hex') }) + '\\n'));
    const chunk = randomBytes(Math.min(per, total - sent));
    hash.update(chunk);
    sent += chunk.length;
    if (socket.write(chunk)) setTimeout(tick, 100);
    else socket.once('drain', () => setTimeout(tick, 100));
  };
  tick();
});
socket.on('error', (err) => { process.stderr.write(err.message + '\\n'); process.exit(1); });
`;

/** Receives one connection, hashing it and timing the longest silence between chunks. */
const TIMED_RECEIVER = `
const { createHash } = require('node:crypto');
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const server = net.createServer((socket) => {
  const hash = createHash('sha256');
  let bytes = 0;
  let last = Date.now();
  let longestStallMs = 0;
  socket.on('data', (chunk) => {
    const now = Date.now();
    longestStallMs = Math.max(longestStallMs, now - last);
    last = now;
    hash.update(chunk);
    bytes += chunk.length;
  });
  socket.on('end', () => {
    process.stdout.write(JSON.stringify({ bytes, sha256: hash.digest('hex'), longestStallMs }) + '\\n');
    server.close();
  });
});
server.listen(Number(port), host, () => process.stdout.write('listening\\n'));
`;

/**
 * A TCP transfer between two pods that lasts about `seconds` (sent in tenths,
 * every 100 ms), so it spans whatever the test does meanwhile. Resolves once
 * the receiver has hashed everything; both processes are stopped by pid.
 */
export async function pacedTcpTransfer(cluster: TestCluster, from: Pod, to: Pod, bytes: number, seconds: number, port = 5101): Promise<PacedTransfer> {
  const receiver = cluster.spawn(to.ns, [process.execPath, '-e', TIMED_RECEIVER, to.ip, String(port)]);
  try {
    const lines = createInterface({ input: receiver.stdout! })[Symbol.asyncIterator]();
    assert.equal((await lines.next()).value, 'listening');
    const startedAt = Date.now();
    const sent = JSON.parse(await from.ns.exec([process.execPath, '-e', PACED_SENDER, to.ip, String(port), String(bytes), String(seconds)], { timeoutMs: (seconds + 60) * 1000 }));
    const received = JSON.parse((await lines.next()).value);
    return { sent, received, ms: Date.now() - startedAt };
  } finally {
    await stopProcess(receiver);
  }
}
