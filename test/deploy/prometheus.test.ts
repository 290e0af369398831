// The alerting rules and the Grafana dashboard against the daemon's real
// /metrics: every miniflannel_* name they query is one the daemon exports,
// so a renamed metric cannot leave an alert that never fires or an empty
// panel. promtool itself runs in prometheus.system.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { emptyCounters } from '../../daemon/dataplane/index.js';
import { createMetrics, type MetricsSource } from '../../daemon/http/metrics.js';
import { alertRules, dashboardQueries, grafanaDashboard } from './manifests.js';

/** A daemon in lease mode, with every optional figure present, as the metrics read it. */
const leaseModeDaemon: MetricsSource = {
  version: '0.1.0',
  ready: () => true,
  counters: () => ({ ...emptyCounters(), egressDrops: { ...emptyCounters().egressDrops, 'no-route': 3 } }),
  peers: () => 2,
  leaseExpiry: () => 1_900_000_000,
  leaseRenewalFailing: () => false,
  leases: () => 3,
  peerTraffic: () => [],
  storeConnected: () => true,
  storeResets: () => 0,
  peersUnconfirmed: () => 0,
  logLinesDropped: () => 0,
};

async function exportedMetrics(): Promise<Set<string>> {
  const text = await createMetrics(leaseModeDaemon).scrape();
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
}

/** The miniflannel_* names a set of PromQL queries reads that the daemon does not export. */
function unknownMetrics(queries: string[], exported: Set<string>): string[] {
  const used = new Set(queries.flatMap((q) => [...q.matchAll(/\bminiflannel_[a-z0-9_]+\b/g)].map((m) => m[0])));
  return [...used].filter((name) => !exported.has(name)).sort();
}

test('every metric the alerting rules query is one the daemon exports', async () => {
  const exported = await exportedMetrics();
  const queries = alertRules().map((rule) => rule.expr);
  assert.ok(queries.length >= 7, 'the rules are read');
  assert.deepEqual(unknownMetrics(queries, exported), []);
  // The check bites: a misspelt name is reported.
  assert.deepEqual(unknownMetrics(['miniflannel_peer > 0', 'miniflannel_peers > 0'], exported), ['miniflannel_peer']);
});

test('every metric the Grafana dashboard queries is one the daemon exports', async () => {
  const queries = dashboardQueries();
  assert.ok(queries.length >= 10, 'the panels are read');
  assert.deepEqual(unknownMetrics(queries, await exportedMetrics()), []);
});

test('the dashboard takes its Prometheus from a data source variable and its nodes from a Node variable, in every panel and query, with one id per panel', () => {
  const dashboard = JSON.parse(readFileSync(grafanaDashboard, 'utf8'));
  const variables = dashboard.templating.list as Array<{ name: string; type: string; query: unknown; datasource?: { uid: string } }>;
  const datasource = variables.find((v) => v.name === 'datasource');
  assert.equal(datasource?.type, 'datasource');
  assert.equal(datasource.query, 'prometheus');
  const sources = [
    ...variables.filter((v) => v.type === 'query').map((v) => v.datasource),
    ...dashboard.panels.flatMap((panel: any) => [panel.datasource, ...panel.targets.map((target: any) => target.datasource)]),
  ];
  for (const source of sources) assert.deepEqual(source, { type: 'prometheus', uid: '${datasource}' });
  // A Node variable over the instances, which every panel query filters by.
  const nodes = variables.find((v) => v.name === 'instance');
  assert.equal(nodes?.type, 'query');
  for (const panel of dashboard.panels) {
    for (const target of panel.targets) assert.match(target.expr, /instance=~"\$instance"/, `${panel.title}: ${target.expr}`);
  }
  const ids = dashboard.panels.map((panel: any) => panel.id);
  assert.equal(new Set(ids).size, ids.length);
  const titles = dashboard.panels.map((panel: any) => panel.title as string);
  for (const wanted of [/readiness/i, /packets/i, /bytes/i, /drops/i, /peers and leases/i, /store connected/i, /lease time left/i, /icmp/i]) {
    assert.ok(titles.some((title: string) => wanted.test(title)), `a panel for ${wanted}`);
  }
});
