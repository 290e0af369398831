// The alerting rules as Prometheus itself reads them: promtool checks
// rules.yaml and runs its unit tests (rules.test.yaml), in which every alert
// must fire once and stay silent once; and every query of the Grafana
// dashboard must parse as PromQL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { runForOutcome } from '../../lab/exec.js';
import { alertRules, dashboardQueries, loadYaml, prometheusRules, prometheusRuleTests } from './manifests.js';

const promtool = (...args: string[]) => runForOutcome(['promtool', ...args]);

interface RuleTests {
  rule_files: string[];
  tests: Array<{ name: string; input_series?: Array<{ series: string }>; alert_rule_test?: Array<{ alertname: string; eval_time: string; exp_alerts?: unknown[] }> }>;
}

test('promtool check rules accepts deploy/prometheus/rules.yaml', async () => {
  const checked = await promtool('check', 'rules', prometheusRules);
  assert.equal(checked.exitCode, 0, checked.stdout + checked.stderr);
  assert.match(checked.stdout, new RegExp(`SUCCESS: ${alertRules().length} rules found`));
});

test('promtool test rules passes deploy/prometheus/rules.test.yaml', async () => {
  const tested = await promtool('test', 'rules', prometheusRuleTests);
  assert.equal(tested.exitCode, 0, tested.stdout + tested.stderr);
  assert.match(tested.stdout, /SUCCESS/);
});

test('every alert has a promtool case in which it fires and one in which it stays silent', () => {
  const [unitTests] = loadYaml(prometheusRuleTests) as [RuleTests];
  assert.deepEqual(unitTests.rule_files, [path.basename(prometheusRules)]);
  const cases = unitTests.tests.flatMap((t) => t.alert_rule_test ?? []);
  const alerts = alertRules().map((rule) => rule.alert);
  for (const alert of ['MiniflannelDaemonDown', 'MiniflannelDaemonNotReady', 'MiniflannelStoreUnreachable', 'MiniflannelLeaseExpiring', 'MiniflannelPacketDrops', 'MiniflannelPeersMismatch', 'MiniflannelIcmpErrorsRising']) {
    assert.ok(alerts.includes(alert), `rules.yaml has ${alert}`);
  }
  for (const alert of alerts) {
    const mine = cases.filter((c) => c.alertname === alert);
    assert.ok(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${alert} fires in a case of rules.test.yaml`);
    assert.ok(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${alert} stays silent in a case of rules.test.yaml`);
  }
  const rule = alertRules().find((r) => r.alert === 'MiniflannelDaemonDown')!;
  for (const { alert, for: pending, labels, annotations } of alertRules()) {
    assert.match(pending ?? '', /^\d+[smh]$/, `${alert} waits before firing`);
    assert.match(labels?.severity ?? '', /^(critical|warning)$/, `${alert} has a severity`);
    for (const key of ['summary', 'description'] as const) assert.match(annotations?.[key] ?? '', /\{\{ \$labels\.instance \}\}/, `${alert}'s ${key} names the node`);
  }
  assert.match(rule.expr, /up\{job="miniflannel"\}/);
});

test('rules.test.yaml scrapes two pods of one node at once, as a DaemonSet surge does, for the rule that matches two metrics', () => {
  const [unitTests] = loadYaml(prometheusRuleTests) as [RuleTests];
  const podsPerNode = (series: string[]) => {
    const pods = new Map<string, Set<string>>();
    for (const s of series) {
      const [, name, instance, pod] = /^(\w+)\{.*instance="([^"]+)".*pod="([^"]+)"/.exec(s) ?? [];
      if (pod) pods.set(`${name} ${instance}`, (pods.get(`${name} ${instance}`) ?? new Set()).add(pod));
    }
    return Math.max(0, ...[...pods.values()].map((set) => set.size));
  };
  const surges = unitTests.tests.filter((t) => podsPerNode((t.input_series ?? []).map((i) => i.series)) >= 2);
  assert.ok(surges.some((t) => t.alert_rule_test?.some((c) => c.alertname === 'MiniflannelPeersMismatch' && (c.exp_alerts ?? []).length > 0)), 'MiniflannelPeersMismatch fires in a case with two pods of one node');
  // The check bites: one pod per node is not a surge.
  assert.equal(podsPerNode(['miniflannel_peers{instance="node-a", pod="p1"}', 'miniflannel_peers{instance="node-b", pod="p2"}']), 1);
});

test('every query of the Grafana dashboard parses as PromQL', async () => {
  // Grafana's own variables, replaced as Grafana would before sending the query.
  const asPromql = (query: string) => query.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*');
  const dir = await mkdtemp(path.join(tmpdir(), 'miniflannel-dashboard-'));
  try {
    const check = async (queries: string[]) => {
      const file = path.join(dir, 'queries.yaml');
      await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules: queries.map((q, i) => ({ record: `dashboard:query${i}`, expr: asPromql(q) })) }] }));
      return promtool('check', 'rules', file);
    };
    const queries = dashboardQueries();
    const checked = await check(queries);
    assert.equal(checked.exitCode, 0, checked.stdout + checked.stderr);
    assert.match(checked.stdout, new RegExp(`SUCCESS: ${queries.length} rules found`));
    // The check bites: an unbalanced bracket is refused.
    assert.notEqual((await check(['rate(miniflannel_udp_sent_packets_total[1m]'])).exitCode, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
