// `miniflannel trace` against a real cluster: Redis on the underlay, a
// dual-stack network config, miniflanneld on two nodes and a pod on each,
// the CLI run from the underlay namespace as an operator would. A pod pair
// is traced after a ping over each family, then after one daemon is killed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Hop, HopName } from '../../cli/cluster/trace.js';
import { HOPS } from '../../cli/cluster/trace.js';
import { SANDBOX_REDIS_URL } from '../../lab/cluster.js';
import { run, type Outcome } from '../../lab/exec.js';
import { removeStaleNamespaces, runPrefix } from '../../lab/netns.js';
import { leaseOverlay, type Overlay } from '../../lab/overlays.js';
import { cliBin } from '../../lab/paths.js';

let overlay: Overlay;
let prefix: string;

before(async () => {
  await removeStaleNamespaces();
  prefix = `${runPrefix()}tr`;
  overlay = await leaseOverlay({ workDir: await mkdtemp(path.join(tmpdir(), 'miniflannel-trace-')), prefix, nodes: 2, dualStack: true });
});

after(async () => {
  await overlay?.destroy();
  const left = (await run(['ip', 'netns', 'list'])).split('\n').filter((line) => line.startsWith(prefix));
  assert.deepEqual(left, [], 'namespaces left behind');
});

/** `miniflannel trace` from the underlay namespace, where Redis and every daemon's health port are reachable. */
function trace(src: string, dst: string, ...flags: string[]): Promise<Outcome> {
  return overlay.sandbox.underlay.execForOutcome([process.execPath, cliBin, 'trace', src, dst, '--redis-url', SANDBOX_REDIS_URL, ...flags]);
}

async function traceJson(src: string, dst: string): Promise<{ outcome: Outcome; hops: Hop[] }> {
  const outcome = await trace(src, dst, '--json');
  const doc = JSON.parse(outcome.stdout) as { source: string; destination: string; hops: Hop[] };
  assert.equal(doc.source, src);
  assert.equal(doc.destination, dst);
  return { outcome, hops: doc.hops };
}

const hopOf = (hops: readonly Hop[], name: HopName): Hop => hops.find((hop) => hop.hop === name) ?? assert.fail(`no ${name} hop`);
const ACROSS = HOPS.filter((name) => name !== 'same-node');

/** The figure `pattern` captures in a hop's detail. */
function figure(hop: Hop, pattern: RegExp): number {
  const match = pattern.exec(hop.detail);
  assert.ok(match, `${pattern} in "${hop.detail}"`);
  return Number(match[1]);
}

/** Traces the first pod to the second after `pings` pings, and checks every hop is ok and the counters saw them; returns the packets the source counted sent. */
async function assertHealthyAfterPing(src: string, dst: string, pings: number): Promise<number> {
  await overlay.pods[0]!.ns.exec(['ping', '-c', String(pings), '-i', '0.2', '-w', '5', dst]);
  const { outcome, hops } = await traceJson(src, dst);
  assert.equal(outcome.exitCode, 0, outcome.stderr);
  assert.deepEqual(hops.map((hop) => hop.hop), ACROSS);
  assert.deepEqual(hops.filter((hop) => hop.status !== 'ok'), [], 'every hop ok');
  const [a, b] = overlay.daemons.map((daemon) => daemon.node.ns.name);
  const sent = figure(hopOf(hops, 'source-counters'), new RegExp(`^${a} sent ${b} (\\d+) packets`));
  assert.ok(sent >= pings, 'the source counted the echo requests it sent');
  assert.ok(figure(hopOf(hops, 'destination-counters'), new RegExp(`^${b} received (\\d+) packets .* from ${a}`)) >= pings, 'the destination counted them received');
  assert.match(hopOf(hops, 'destination-counters').detail, /the last \d+s ago/);
  return sent;
}

/** What the source had counted sent after the IPv4 pings. */
let sentOverIPv4 = 0;

describe('miniflannel trace in a real cluster', () => {
  it('a pod pair over IPv4, after a ping: every hop ok, and the counters show the ping', async () => {
    sentOverIPv4 = await assertHealthyAfterPing(overlay.pods[0]!.ip, overlay.pods[1]!.ip, 3);
  });

  it('the same pair over IPv6; the counters are per peer entry, so they add the IPv6 pings to the IPv4 ones', async () => {
    assert.ok((await assertHealthyAfterPing(overlay.pods[0]!.ip6!, overlay.pods[1]!.ip6!, 3)) >= sentOverIPv4 + 3);
  });

  it('prints one line per hop, each marked ok, exit 0', async () => {
    const outcome = await trace(overlay.pods[0]!.ip, overlay.pods[1]!.ip);
    assert.equal(outcome.exitCode, 0, outcome.stderr);
    const lines = outcome.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1 + ACROSS.length, outcome.stdout);
    for (const line of lines.slice(1)) assert.match(line, /^\S.*?\s{3,}ok\s{3,}\S/, line);
  });

  it("a pod and its node's bridge: the packet never leaves the node", async () => {
    const pod = overlay.pods[0]!;
    const bridge = pod.ip.replace(/\.\d+$/, '.1');
    const { outcome, hops } = await traceJson(pod.ip, bridge);
    assert.equal(outcome.exitCode, 0, outcome.stderr);
    assert.deepEqual(hops.map((hop) => [hop.hop, hop.status]), [['source-lease', 'ok'], ['destination-lease', 'ok'], ['same-node', 'ok']]);
  });

  it('the destination daemon killed: that hop is broken, exit 1', async () => {
    const victim = overlay.daemons[1]!;
    process.kill(victim.process.pid!, 'SIGKILL');
    await new Promise((resolve) => victim.process.once('exit', resolve));
    const { outcome, hops } = await traceJson(overlay.pods[0]!.ip, overlay.pods[1]!.ip);
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(hops.filter((hop) => hop.status === 'broken').map((hop) => hop.hop), ['destination-daemon']);
    assert.match(hopOf(hops, 'destination-daemon').detail, new RegExp(`^${victim.node.ns.name}: daemon unreachable at http://${victim.node.underlayIp.replaceAll('.', '\\.')}:8286/status: ECONNREFUSED$`));
    assert.equal(hopOf(hops, 'source-peer').status, 'ok', "the source still holds the peer: the lease has not expired");
    assert.match(outcome.stderr, /^miniflannel: the path from \S+ to \S+ is broken at destination daemon\n$/);
  });
});
