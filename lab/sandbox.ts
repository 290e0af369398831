// `miniflannel sandbox`: a local cluster of nodes in network namespaces,
// each with its miniflanneld and a pod, built, demonstrated, listed and torn
// down. The CLI command only parses its options; this is the work.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SANDBOX_REDIS_URL, UNDERLAY_GATEWAY } from './cluster.js';
import { cliIn, HEALTHZ_PORT, httpGetIn, waitFor } from './daemon.js';
import { alive, Netns, removeStaleNamespaces, runPrefix } from './netns.js';
import { leaseOverlay, type Overlay } from './overlays.js';
import { assertPrometheusInstalled, SANDBOX_ALERT_FOR, SCRAPE_INTERVAL, startPrometheus, type RunningPrometheus } from './prometheus.js';
import type { SandboxLab } from '../cli/lab.js';
import { register, registered, runningSandboxes, unregister, type SandboxRecord } from './registry.js';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

async function recordOf(overlay: Overlay, workDir: string, prometheus: RunningPrometheus | undefined): Promise<SandboxRecord> {
  const nodes: SandboxRecord['nodes'] = [];
  for (const pod of overlay.pods) {
    const daemon = overlay.daemons[pod.node.index - 1]!;
    const status = await daemon.status();
    nodes.push({
      namespace: pod.node.ns.name,
      daemonPid: daemon.process.pid!,
      underlayIp: pod.node.underlayIp,
      subnet: status.lease!.subnet,
      ipv6Subnet: status.lease!.ipv6Subnet!,
      healthz: `http://${pod.node.underlayIp}:${HEALTHZ_PORT}`,
      pod: { namespace: pod.ns.name, ip: pod.ip, ip6: pod.ip6! },
    });
  }
  return {
    pid: process.pid,
    startedAt: new Date().toISOString(),
    redisUrl: SANDBOX_REDIS_URL,
    underlayNamespace: overlay.sandbox.underlay.name,
    logDir: workDir,
    ...(prometheus ? { prometheusUrl: prometheus.url } : {}),
    nodes,
  };
}

async function demonstrate(overlay: Overlay, record: SandboxRecord): Promise<void> {
  say('');
  for (const node of record.nodes) say(`  node ${node.namespace}  underlay ${node.underlayIp}  subnets ${node.subnet} ${node.ipv6Subnet}  pod ${node.pod.ip} ${node.pod.ip6}`);
  say('\npod-to-pod traffic across nodes, IPv4 and IPv6 (ping through miniflannel):');
  for (const from of overlay.pods) {
    for (const to of overlay.pods) {
      if (from === to) continue;
      const pairs: Array<[string, string]> = [[from.ip, to.ip], [from.ip6!, to.ip6!]];
      for (const [source, destination] of pairs) {
        // -w: a pod's first IPv6 packet may wait for its bridge's gateway address to finish duplicate address detection.
        const out = await from.ns.exec(['ping', '-c', '1', '-w', '5', destination]);
        say(`  ${source} -> ${destination}  ok  ${/time=([\d.]+ ms)/.exec(out)?.[1] ?? '?'}`);
      }
    }
  }
  say('\nminiflannel lease list:');
  say((await cliIn(overlay.sandbox.underlay, ['lease', 'list', '--redis-url', SANDBOX_REDIS_URL])).trimEnd().replace(/^/gm, '  '));
  const [first, second] = record.nodes;
  const cli = process.argv[1];
  say('\nwhere to look next:');
  say(`  metrics: ip netns exec ${first!.namespace} curl -s ${first!.healthz}/metrics`);
  say(`  status:  ip netns exec ${first!.namespace} ${cli} status --daemon ${first!.healthz}`);
  say(`  peers:   ip netns exec ${first!.namespace} ${cli} status --daemon ${first!.healthz} --peers`);
  say(`  leases:  ip netns exec ${record.underlayNamespace} ${cli} lease list --watch --redis-url ${record.redisUrl}`);
  say(`  doctor:  ip netns exec ${record.underlayNamespace} ${cli} doctor --redis-url ${record.redisUrl}`);
  say(`  trace:   ip netns exec ${record.underlayNamespace} ${cli} trace ${first!.pod.ip} ${second!.pod.ip} --redis-url ${record.redisUrl}`);
  say(`  logs:    ${overlay.daemons.map((d) => d.logFile).join('\n           ')}`);
  say(`  a pod:   ip netns exec ${first!.pod.namespace} ping ${second!.pod.ip}   (or ${second!.pod.ip6})`);
  if (record.prometheusUrl) {
    say(`  prometheus: ${record.prometheusUrl}, scraping every daemon each ${SCRAPE_INTERVAL}, with deploy/prometheus/rules.yaml and every \`for:\` cut to ${SANDBOX_ALERT_FOR}`);
    say(`              ip netns exec ${record.underlayNamespace} curl -s '${record.prometheusUrl}/api/v1/query?query=up'`);
    say(`              ip netns exec ${record.underlayNamespace} curl -s ${record.prometheusUrl}/api/v1/alerts`);
  }
  say(`  scripts: ${cli} sandbox status | down`);
}

async function up(opts: { nodes: number; exit?: boolean; prometheus?: boolean }): Promise<void> {
  if (opts.prometheus) await assertPrometheusInstalled();
  await removeStaleNamespaces();
  const workDir = await mkdtemp(path.join(tmpdir(), 'miniflannel-sandbox-'));
  say(`building ${opts.nodes} nodes on the 198.18.0.0/24 underlay with Redis at ${SANDBOX_REDIS_URL},`);
  say('setting a dual-stack network config with `miniflannel config init`, then one miniflanneld and one pod per node ...');
  const overlay = await leaseOverlay({ workDir, prefix: `${runPrefix()}sb`, nodes: opts.nodes, dualStack: true });
  let prometheus: RunningPrometheus | undefined;
  let stopping: Promise<void> | undefined;
  const teardown = () =>
    (stopping ??= (async () => {
      say('\ntearing down the sandbox ...');
      await unregister();
      await prometheus?.stop();
      await overlay.destroy();
      say('done: namespaces, devices and daemons are gone');
    })());
  const stopped = new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => void teardown().then(resolve));
  });
  try {
    if (opts.prometheus) {
      say('starting Prometheus in the underlay namespace ...');
      const targets = overlay.pods.map((pod) => ({ node: pod.node.ns.name, address: `${pod.node.underlayIp}:${HEALTHZ_PORT}` }));
      // Kept before it is ready, so that a signal while it starts up tears it down with the rest.
      prometheus = await startPrometheus(overlay.sandbox.underlay, UNDERLAY_GATEWAY, targets, workDir);
      if (stopping) {
        // The signal came while its files were written, when there was no process yet to stop.
        await prometheus.stop();
        return await stopping;
      }
      await prometheus.ready();
    }
    const record = await recordOf(overlay, workDir, prometheus);
    await demonstrate(overlay, record);
    if (opts.exit) return await teardown();
    // A signal during the demonstration has torn the sandbox down: nothing is left to register.
    if (stopping) return await stopping;
    await register(record);
  } catch (err) {
    // A signal tears the sandbox down while it is built, and what fails then fails for that.
    const signalled = stopping !== undefined;
    await teardown();
    if (signalled) return;
    throw err;
  }
  say('\nrunning; press Ctrl-C (or run `miniflannel sandbox down`) to tear down');
  await stopped;
}

/** Starts `sandbox up` in the background and returns once its cluster is ready, with its output. */
async function upDetached(opts: { nodes: number; prometheus?: boolean }): Promise<void> {
  const logFile = path.join(tmpdir(), `miniflannel-sandbox-${Date.now()}.log`);
  const out = openSync(logFile, 'a');
  const args = ['sandbox', 'up', '--nodes', String(opts.nodes), ...(opts.prometheus ? ['--prometheus'] : [])];
  const child = spawn(process.execPath, [process.argv[1]!, ...args], { detached: true, stdio: ['ignore', out, out] });
  closeSync(out);
  child.unref();
  const pid = child.pid!;
  await waitFor(`the sandbox (pid ${pid}, output in ${logFile})`, async () => {
    if (!alive(pid)) throw new Error(`sandbox up exited before it was ready; output: ${logFile}\n${await readFile(logFile, 'utf8')}`);
    return (await registered(pid)) !== undefined;
  }, 180_000);
  process.stdout.write(await readFile(logFile, 'utf8'));
  say(`\nrunning in the background as pid ${pid} (output: ${logFile}); \`miniflannel sandbox down\` tears it down`);
}

async function status(json: boolean): Promise<void> {
  const sandboxes = await runningSandboxes();
  const report = [];
  for (const record of sandboxes) {
    const nodes = [];
    for (const node of record.nodes) {
      const ready = await httpGetIn(Netns.named(node.namespace), `${node.healthz}/readyz`).then((r) => r.status === 200, () => false);
      nodes.push({ ...node, ready });
    }
    report.push({ ...record, nodes });
  }
  if (json) return say(JSON.stringify(report, null, 2));
  if (report.length === 0) {
    process.stderr.write('no sandbox is running\n');
    return;
  }
  for (const record of report) {
    say(`sandbox pid ${record.pid}, up since ${record.startedAt}, Redis ${record.redisUrl} in ${record.underlayNamespace}`);
    if (record.prometheusUrl) say(`  Prometheus ${record.prometheusUrl} in ${record.underlayNamespace}`);
    for (const node of record.nodes) {
      say(`  node ${node.namespace}  underlay ${node.underlayIp}  subnets ${node.subnet} ${node.ipv6Subnet}  pod ${node.pod.ip} ${node.pod.ip6}  daemon pid ${node.daemonPid}  ${node.ready ? 'ready' : 'NOT READY'}`);
    }
  }
}

async function down(onlyPid: number | undefined): Promise<void> {
  const sandboxes = (await runningSandboxes()).filter((record) => onlyPid === undefined || record.pid === onlyPid);
  for (const record of sandboxes) {
    say(`stopping sandbox pid ${record.pid} ...`);
    process.kill(record.pid, 'SIGTERM');
    await waitFor(`sandbox pid ${record.pid} to tear down`, async () => !alive(record.pid), 60_000);
  }
  const stale = await removeStaleNamespaces();
  if (sandboxes.length === 0 && stale.length === 0) process.stderr.write('no sandbox is running\n');
  else say(`done${stale.length > 0 ? `; removed ${stale.length} namespaces of crashed runs` : ''}`);
}

export const lab: SandboxLab = { up, upDetached, status, down };
