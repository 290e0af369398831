// `miniflannel bench`, run as the built CLI: each command's --quick run
// writes a valid result document with the expected structure and positive
// figures (no speed is asserted), prerequisites fail up front with one line,
// and Ctrl-C removes what the run made. e2e needs root and the sandbox tools,
// as the integration tests do.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { cleanEnv, oneLineError, outcomeOf, runCli } from '../cli/helpers.js';
import { cliBin } from '../../lab/paths.js';
import { positive, readDocument } from './document.js';

const work = await mkdtemp(path.join(tmpdir(), 'miniflannel-bench-test-'));
after(() => rm(work, { recursive: true, force: true }));


/**
 * A directory of links to every program on the usual PATH except `missing`,
 * to run the CLI as if that program were not installed.
 */
async function pathWithout(missing: string): Promise<string> {
  const dir = await mkdtemp(path.join(work, `path-without-${missing}-`));
  for (const source of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const entries = await readdir(source).catch(() => [] as string[]);
    for (const name of entries) {
      if (name === missing || existsSync(path.join(dir, name))) continue;
      await symlink(path.join(source, name), path.join(dir, name)).catch(() => undefined);
    }
  }
  return dir;
}

test('bench control-plane --nodes 50 --quick: bring-up, convergence, steady-state cost, restarts with and without persistence', async () => {
  const out = path.join(work, 'control-plane.json');
  const result = await runCli(['bench', 'control-plane', '--nodes', '50', '--quick', '--out', out], { timeoutMs: 120_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /watch convergence/);
  assert.match(result.stdout, /targets \(set for 10,000 nodes/);
  const doc = await readDocument(out);
  assert.equal(doc.command, 'control-plane');
  const r = doc.result;
  assert.equal(r.options.nodes, 50);
  assert.equal(r.options.workers, 4);
  assert.equal(r.options.leaseTtlSeconds, 20);
  assert.equal(r.redis.maxclients, 2 * 50 + 100);

  positive(r.bringUp.acquireAllSeconds, 'bringUp.acquireAllSeconds');
  assert.ok(r.bringUp.allWatchingSeconds >= r.bringUp.acquireAllSeconds, 'the last snapshot comes after the last acquire');

  // Every change reached all 50 watchers: none had been killed yet.
  assert.equal(r.missedDeliveries, 0);
  assert.equal(r.convergenceMillis.samples, r.options.changes);
  assert.equal(r.deliveryMillis.samples, r.options.changes * 50);
  assert.ok(r.convergenceMillis.p50 >= 0 && r.convergenceMillis.p99 >= r.convergenceMillis.p50);

  // Steady state: measured at the short TTL, with renewals in the window, and derived for the default TTL.
  const s = r.steady;
  assert.equal(r.options.kill, 2);
  assert.equal(s.nodes, 48);
  positive(s.measured.commandsPerNodePerHour, 'measured commandsPerNodePerHour');
  positive(s.measured.renewals, 'renewals in the window');
  assert.ok('evalsha' in s.measured.byCommand, JSON.stringify(s.measured.byCommand));
  positive(s.measured.redisCpu.secondsPerHour, 'measured Redis CPU');
  assert.ok(s.perRenewal.commands >= 1 && 'evalsha' in s.perRenewal.byCommand, JSON.stringify(s.perRenewal));
  assert.ok(s.perReap.commands >= 1, JSON.stringify(s.perReap));
  positive(s.atDefaultTtl.commandsPerNodePerHour, 'commands per node per hour at the default TTL');
  assert.equal(s.atDefaultTtl.leaseTtlHours, 24);
  assert.match(s.atDefaultTtl.formula, /renewal period/);

  positive(r.memory.bytesPerLease, 'bytesPerLease');
  positive(r.memory.bytesPerConnection, 'bytesPerConnection');
  assert.ok(r.memory.connections >= 48, `connections ${r.memory.connections}`);

  // With its AOF, Redis comes back with everything: no watch lists again or sees a reset.
  assert.equal(r.restartWithPersistence.resyncs, 0);
  assert.equal(r.restartWithPersistence.resets, 0);
  assert.equal(r.restartWithPersistence.leasesKept, true);
  assert.notEqual(r.restartWithPersistence.watchesBackSeconds, null);

  // Without it, the daemons put back every lease with its old subnet, and the config; none exits.
  const lost = r.restartWithoutPersistence;
  assert.equal(lost.leasesExpected, 48);
  assert.equal(lost.leasesBack, 48);
  assert.equal(lost.configBack, true);
  assert.notEqual(lost.leasesBackSeconds, null);
  assert.notEqual(lost.watchersBackSeconds, null);
  assert.equal(lost.daemonsExited, 0);
  assert.equal(lost.daemonsThatSawAReset, 48);
  assert.ok(lost.watchResets >= 48, `watch resets ${lost.watchResets}`);
  assert.equal(r.daemonsExited, 0, r.exitReasons.join('; '));
  assert.equal(r.targets.length, 7);
});

test('bench e2e --quick --ipv6 measures every path, IPv6 between dual-stack pods too, and writes the JSON and the chart', async () => {
  const out = path.join(work, 'e2e.json');
  // --quick with 1 s runs and 20 pings: this checks that every path is measured and reported, not the figures.
  const result = await runCli(['bench', 'e2e', '--quick', '--seconds', '1', '--pings', '20', '--ipv6', '--out', out], { timeoutMs: 360_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /miniflannel vs kernel VXLAN/);
  assert.match(result.stdout, /UDP 1400 B GSO: kpps the sender managed: miniflannel \d+, .*; dropped at the receiving pod's socket after delivery: miniflannel \d+\.\d %/);
  assert.match(result.stdout, /UDP checksum errors at the receiving pods: none/);
  assert.match(result.stdout, /under load p99/);
  assert.match(result.stderr, /round 1\/1/);
  const doc = await readDocument(out);
  assert.equal(doc.command, 'e2e');
  const r = doc.result;
  const names = r.paths.map((p: any) => p.name);
  assert.deepEqual(names, ['miniflannel', 'kernel VXLAN', 'underlay', 'OpenVPN', 'miniflannel IPv6', 'kernel VXLAN IPv6']);
  assert.match(result.stderr, /miniflannel IPv6: pods fd00:10:244:[0-9a-f]+::\S+ -> fd00:10:244:[0-9a-f]+::\S+/, 'the IPv6 path is measured between IPv6 addresses');
  assert.deepEqual(r.skipped.map((s: any) => s.name), []);
  for (const load of ['1400', '64', 'gso1400']) positive(r.options.udpOfferedPps[load], `offered pps ${load}`);
  for (const p of r.paths) {
    assert.equal(p.rounds.length, 1);
    const m = p.median;
    positive(m.tcp1StreamBitsPerSecond, `${p.name} tcp1`);
    positive(m.tcp4StreamsBitsPerSecond, `${p.name} tcp4`);
    assert.deepEqual(Object.keys(m.udp).sort(), ['1400', '64', 'gso1400']);
    for (const [load, udp] of Object.entries<any>(m.udp)) {
      positive(udp.sentPps, `${p.name} ${load} sent pps`);
      positive(udp.deliveredPps, `${p.name} ${load} delivered pps`);
      assert.ok(udp.deliveredPps <= udp.sentPps * 1.001, `${p.name} ${load}: more delivered (${udp.deliveredPps}) than sent (${udp.sentPps})`);
      assert.ok(udp.lossPercent >= 0 && udp.lossPercent <= 100);
      assert.ok(udp.droppedAtReceiverPercent >= 0 && udp.droppedAtReceiverPercent <= 100, `${p.name} dropped at the receiver: ${udp.droppedAtReceiverPercent}`);
      assert.equal(udp.checksumErrors, 0, `${p.name} ${load}: UDP checksum errors at the receiving pod`);
    }
    positive(m.rttP50Micros, `${p.name} rtt p50`);
    assert.ok(m.rttP99Micros >= m.rttP50Micros);
    positive(m.rttUnderLoadP50Micros, `${p.name} rtt under load p50`);
    assert.ok(m.rttUnderLoadP99Micros >= m.rttUnderLoadP50Micros);
    assert.ok(p.rounds[0].rttUnderLoad.received > 0, `${p.name}: pings answered beside the TCP stream`);
    if (['miniflannel', 'OpenVPN', 'miniflannel IPv6'].includes(p.name)) positive(m.cpuSecondsPerGB, `${p.name} cpu`);
    else assert.equal(m.cpuSecondsPerGB, null);
  }
  const mf = r.paths.find((p: any) => p.name === 'miniflannel');
  assert.deepEqual(mf.comparisons.map((c: any) => c.reference), ['kernel VXLAN', 'underlay', 'OpenVPN']);
  for (const c of mf.comparisons) positive(c.tcp1Stream, `ratio to ${c.reference}`);
  const mf6 = r.paths.find((p: any) => p.name === 'miniflannel IPv6');
  assert.deepEqual(mf6.comparisons.map((c: any) => c.reference), ['kernel VXLAN IPv6']);
  positive(mf6.comparisons[0].tcp1Stream, 'IPv6 ratio to kernel VXLAN IPv6');
  assert.equal(r.options.ipv6, true);
  const svg = await readFile(path.join(work, 'e2e.svg'), 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /kernel VXLAN/);
  assert.match(svg, /<\/svg>\n$/);
});

test('bench: bad flags are one line and exit 2; missing prerequisites one line and exit 1', async () => {
  for (const args of [['bench', 'e2e', '--repeats', '0'], ['bench', 'e2e', '--udp-pps', 'lots'], ['bench', 'control-plane', '--nodes', 'x'], ['bench', 'encap', '--bogus']]) {
    const result = await runCli(args);
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    oneLineError(result);
  }
  const badOut = await runCli(['bench', 'encap', '--out', '/nonexistent/dir/x.json']);
  assert.equal(badOut.code, 2);
  assert.match(oneLineError(badOut), /--out/);

  const notRoot = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cliBin, 'bench', 'e2e', '--quick'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const asNobody = await outcomeOf(notRoot, 15_000, 'bench e2e as nobody');
  assert.equal(asNobody.code, 1, asNobody.stderr);
  assert.match(oneLineError(asNobody), /needs root/);

  const noIperf = await runCli(['bench', 'e2e', '--quick'], { env: { PATH: await pathWithout('iperf3') } });
  assert.equal(noIperf.code, 1, noIperf.stderr);
  assert.match(oneLineError(noIperf), /iperf3/);

  const noCompiler = await runCli(['bench', 'e2e', '--quick'], { env: { PATH: await pathWithout('cc') } });
  assert.equal(noCompiler.code, 1, noCompiler.stderr);
  assert.match(oneLineError(noCompiler), /needs cc, .*apt-get install gcc/);
});

test('bench e2e without OpenVPN says it skips it, and Ctrl-C removes namespaces and processes', async () => {
  const child = spawn(process.execPath, [cliBin, 'bench', 'e2e', '--quick'], { env: cleanEnv({ PATH: await pathWithout('openvpn') }), stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = `mf${child.pid}x`;
  const outcome = outcomeOf(child, 120_000, 'bench e2e interrupted');
  const descendants = new Set<number>();
  await new Promise<void>((resolve) => {
    createInterface({ input: child.stderr! }).on('line', (line) => {
      // The first figure means iperf3 is running the next measurement: interrupt it mid-flight.
      if (/TCP 1 stream/.test(line)) resolve();
    });
  });
  for (const pid of await descendantsOf(child.pid!)) descendants.add(pid);
  assert.ok(descendants.size > 0, 'the run has child processes (daemons, iperf3)');
  child.kill('SIGINT');
  const result = await outcome;
  assert.equal(result.code, 1);
  assert.match(result.stderr, /openvpn is not installed, so the OpenVPN path is skipped/);
  const last = result.stderr.trim().split('\n').pop()!;
  assert.match(last, /^miniflannel: interrupted by SIGINT/);
  const left = (await readdir('/run/netns').catch(() => [] as string[])).filter((name) => name.startsWith(prefix));
  assert.deepEqual(left, [], 'namespaces left behind');
  const alive = [...descendants].filter((pid) => existsSync(`/proc/${pid}`));
  assert.deepEqual(alive, [], 'processes left behind');
});

/** Every process below `pid`, from /proc. */
async function descendantsOf(pid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid) parents.set(Number(entry), ppid);
  }
  const found: number[] = [];
  const frontier = [pid];
  while (frontier.length > 0) {
    const parent = frontier.pop()!;
    for (const [child, ppid] of parents) {
      if (ppid === parent) {
        found.push(child);
        frontier.push(child);
      }
    }
  }
  return found;
}
