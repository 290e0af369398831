// The main job, scripted: `sandbox up --detach`, `status`, `down`, run as
// the README's newcomer would run them, through the built CLI; with the
// sandbox's Prometheus, which must scrape every daemon and fire the
// daemon-down alert when one is killed.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run, runForOutcome } from '../../lab/exec.js';
import { httpGetIn, waitFor } from '../../lab/daemon.js';
import { alive, Netns } from '../../lab/netns.js';
import { cliBin } from '../../lab/paths.js';
import { queryPrometheus } from '../../lab/prometheus.js';
import type { SandboxRecord } from '../../lab/registry.js';

const cli = (...args: string[]) => runForOutcome([process.execPath, cliBin, 'sandbox', ...args], { timeoutMs: 240_000 });
const namespacesOf = async (pid: number) => (await readdir('/run/netns').catch(() => [])).filter((name) => name.startsWith(`mf${pid}x`));

describe('sandbox up --detach --prometheus, status, down', () => {
  let upPid: number | undefined;
  after(async () => {
    // A failed assertion must not leave the background sandbox running.
    if (upPid !== undefined && alive(upPid)) await cli('down', '--pid', String(upPid));
  });

  it('builds a ready cluster with a Prometheus in the background, reports it, alerts on a killed daemon, and removes every trace on down', async () => {
    const started = await cli('up', '--detach', '--nodes', '2', '--prometheus');
    // Known before any assertion, so that after() stops the sandbox whatever fails.
    upPid = Number(/running in the background as pid (\d+)/.exec(started.stdout)?.[1]);
    assert.equal(started.exitCode, 0, started.stderr);
    assert.ok(upPid > 0 && alive(upPid), started.stdout);
    assert.match(started.stdout, /10\.244\.\d+\.2 -> 10\.244\.\d+\.2 {2}ok/);
    assert.match(started.stdout, /fd00:10:244:[0-9a-f]+::2 -> fd00:10:244:[0-9a-f]+::2 {2}ok/, 'the sandbox is dual-stack');
    assert.match(started.stdout, /SUBNET\s+IPV6 SUBNET\s+PUBLIC IP\s+PUBLIC IPV6\s+NODE/);

    const status = await cli('status', '--json');
    assert.equal(status.exitCode, 0, status.stderr);
    const mine = (JSON.parse(status.stdout) as Array<Omit<SandboxRecord, 'nodes'> & { nodes: Array<SandboxRecord['nodes'][number] & { ready: boolean }> }>).find((s) => s.pid === upPid);
    assert.ok(mine, status.stdout);
    assert.equal(mine.nodes.length, 2);
    assert.ok(mine.nodes.every((node) => node.ready), status.stdout);
    assert.notEqual(mine.nodes[0]!.subnet, mine.nodes[1]!.subnet);
    assert.notEqual(mine.nodes[0]!.ipv6Subnet, mine.nodes[1]!.ipv6Subnet);
    assert.ok((await namespacesOf(upPid)).length >= 5, 'underlay, two nodes and two pods');

    // The sandbox's Prometheus scrapes every daemon, each named by its node, and alerts when one is killed.
    const prometheusUrl = mine.prometheusUrl!;
    assert.equal(prometheusUrl, 'http://198.18.0.254:9090', status.stdout);
    assert.ok(started.stdout.includes(`ip netns exec ${mine.underlayNamespace} curl -s '${prometheusUrl}/api/v1/query?query=up'`), started.stdout);
    assert.match(started.stdout, /every `for:` cut to \d+s/);
    const underlay = Netns.named(mine.underlayNamespace);
    const nodeNames = mine.nodes.map((node) => node.namespace).sort();
    await waitFor('Prometheus to scrape every daemon', async () => {
      const up = await queryPrometheus(underlay, prometheusUrl, 'up{job="miniflannel"} == 1');
      return JSON.stringify(up.map((series) => series.metric.instance).sort()) === JSON.stringify(nodeNames);
    });
    // Scrapes each 2 s, and every rule of rules.yaml waits 4 s before firing.
    const config = JSON.parse((await httpGetIn(underlay, `${prometheusUrl}/api/v1/status/config`)).body) as { data: { yaml: string } };
    assert.match(config.data.yaml, /scrape_interval: 2s/);
    const rules = JSON.parse((await httpGetIn(underlay, `${prometheusUrl}/api/v1/rules`)).body) as { data: { groups: Array<{ rules: Array<{ name: string; duration: number }> }> } };
    const loaded = rules.data.groups.flatMap((group) => group.rules);
    assert.ok(loaded.length >= 7, 'the rules of deploy/prometheus/rules.yaml');
    for (const rule of loaded) assert.equal(rule.duration, 4, rule.name);
    // The commands it prints to look further work as printed: doctor finds the cluster healthy, trace a whole path.
    const stateHome = await mkdtemp(path.join(tmpdir(), 'miniflannel-sandbox-test-'));
    try {
      for (const tool of ['peers', 'doctor', 'trace']) {
        const printed = new RegExp(`^ {2}${tool}: +(.+)$`, 'm').exec(started.stdout)?.[1];
        assert.ok(printed, `the sandbox prints a ${tool} command: ${started.stdout}`);
        const outcome = await runForOutcome(['sh', '-c', printed], { env: { ...process.env, XDG_STATE_HOME: stateHome } });
        assert.equal(outcome.exitCode, 0, `${printed}\n${outcome.stdout}${outcome.stderr}`);
      }
    } finally {
      await rm(stateHome, { recursive: true, force: true });
    }

    const [, victim] = mine.nodes;
    assert.ok(alive(victim!.daemonPid), `${victim!.namespace}'s daemon pid ${victim!.daemonPid} is running`);
    process.kill(victim!.daemonPid, 'SIGKILL');
    const firing = await waitFor('MiniflannelDaemonDown to fire', async () => {
      const alerts = await queryPrometheus(underlay, prometheusUrl, 'ALERTS{alertname="MiniflannelDaemonDown", alertstate="firing"}');
      return alerts.length > 0 && alerts;
    }, 60_000);
    assert.deepEqual(firing.map((series) => series.metric.instance), [victim!.namespace]);

    const stopped = await cli('down', '--pid', String(upPid));
    assert.equal(stopped.exitCode, 0, stopped.stderr);
    assert.equal(alive(upPid), false);
    assert.deepEqual(await namespacesOf(upPid), []);
    const after = await cli('status', '--json');
    assert.equal((JSON.parse(after.stdout) as { pid: number }[]).some((s) => s.pid === upPid), false);
    // Redis and the daemons ran inside the namespaces, Prometheus with its files in the sandbox's directory; nothing of ours is left running.
    const processes = await run(['ps', '-eo', 'args']);
    assert.doesNotMatch(processes, new RegExp(`mf${upPid}x`));
    assert.equal(processes.includes(mine.logDir), false, processes);
  });
});
