// A real Prometheus (Debian's prometheus binary) for the sandbox. It runs in
// the underlay namespace, where every node's health port is reachable, and
// scrapes each daemon's /metrics as the PodMonitor does on Kubernetes: job
// miniflannel, each target named by its node. It evaluates
// deploy/prometheus/rules.yaml with every `for:` cut to a few seconds, so
// that an alert shows within seconds of a fault in a demonstration; the real
// timings are the ones promtool's unit tests (rules.test.yaml) prove.
import { constants, createWriteStream } from 'node:fs';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { httpGetIn, waitFor } from './daemon.js';
import { stopProcess } from './exec.js';
import type { Netns } from './netns.js';
import { packageRoot } from './paths.js';

export const alertingRules = path.join(packageRoot, 'deploy', 'prometheus', 'rules.yaml');
export const PROMETHEUS_PORT = 9090;
/** Scrape and rule evaluation interval: a demonstration sees a change within seconds. */
export const SCRAPE_INTERVAL = '2s';
/** Every alert's `for:` in the sandbox. */
export const SANDBOX_ALERT_FOR = '4s';

export interface ScrapeTarget {
  /** The node's name, which the alerts report as `instance`. */
  readonly node: string;
  /** host:port of its health server. */
  readonly address: string;
}

export interface RunningPrometheus {
  readonly process: ChildProcess;
  readonly url: string;
  readonly logFile: string;
  /** Resolves once it answers /-/ready; stops it and rejects if it exits first or is not ready within 60 s. */
  ready(): Promise<void>;
  stop(): Promise<number | null>;
}

/** Fails in one line, before the sandbox is built, where Debian's prometheus package is missing. */
export async function assertPrometheusInstalled(): Promise<void> {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const found = await Promise.any(dirs.map((dir) => access(path.join(dir, 'prometheus'), constants.X_OK))).then(() => true, () => false);
  if (!found) throw new Error("--prometheus needs the prometheus binary on the PATH: apt-get install prometheus (Debian's package)");
}

/** rules.yaml with every `for:` set to SANDBOX_ALERT_FOR. */
export function shortenedRules(rules: string): string {
  const shortened = rules.replace(/^(\s+for:\s*)\S+$/gm, `$1${SANDBOX_ALERT_FOR}`);
  if (shortened === rules) throw new Error(`${alertingRules} has no \`for:\` to shorten`);
  return shortened;
}

/** The scrape configuration (JSON, which Prometheus reads as YAML): one job, a target per node. */
export function prometheusConfig(targets: readonly ScrapeTarget[], rulesFile: string): string {
  return `${JSON.stringify(
    {
      global: { scrape_interval: SCRAPE_INTERVAL, scrape_timeout: SCRAPE_INTERVAL, evaluation_interval: SCRAPE_INTERVAL },
      rule_files: [rulesFile],
      scrape_configs: [
        {
          job_name: 'miniflannel',
          static_configs: targets.map((target) => ({ targets: [target.address], labels: { instance: target.node } })),
        },
      ],
    },
    null,
    2,
  )}\n`;
}

/**
 * Starts prometheus in `ns` listening on `host`, with its configuration,
 * rules, TSDB and log under `workDir`. Resolves as soon as it is spawned,
 * so that a caller torn down while it starts (which can take a minute) can
 * stop it; `ready()` waits for it.
 */
export async function startPrometheus(ns: Netns, host: string, targets: readonly ScrapeTarget[], workDir: string): Promise<RunningPrometheus> {
  const dir = path.join(workDir, 'prometheus');
  await mkdir(dir, { recursive: true });
  const rulesFile = path.join(dir, 'rules.yaml');
  const configFile = path.join(dir, 'prometheus.yml');
  await writeFile(rulesFile, shortenedRules(await readFile(alertingRules, 'utf8')));
  await writeFile(configFile, prometheusConfig(targets, rulesFile));
  const logFile = path.join(dir, 'prometheus.log');
  const log = createWriteStream(logFile);
  const address = `${host}:${PROMETHEUS_PORT}`;
  const child = ns.spawn(['prometheus', `--config.file=${configFile}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=${address}`]);
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const url = `http://${address}`;
  const stop = () => stopProcess(child);
  const ready = async () => {
    try {
      await waitFor(`prometheus in ${ns.name} to be ready (log: ${logFile})`, async () => {
        const ended = child.exitCode ?? child.signalCode;
        if (ended !== null) throw new Error(`prometheus in ${ns.name} exited (${ended}) before it was ready; log: ${logFile}`);
        return (await httpGetIn(ns, `${url}/-/ready`)).status === 200;
      }, 60_000);
    } catch (err) {
      await stop();
      throw err;
    }
  };
  return { process: child, url, logFile, ready, stop };
}

export interface Series {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query through Prometheus's HTTP API, asked from inside `ns`. */
export async function queryPrometheus(ns: Netns, url: string, promql: string): Promise<Series[]> {
  const { status, body } = await httpGetIn(ns, `${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
  if (status !== 200) throw new Error(`prometheus at ${url} answered ${status} to ${promql}: ${body}`);
  return (JSON.parse(body) as { data: { result: Series[] } }).data.result;
}
