// Asking daemons for their GET /status: one daemon (`miniflannel status`),
// or every lease's node at once (`doctor`, `trace`). A daemon that does not
// answer, or answers with something that is not a status, is a finding
// about that node, never a failure of the whole survey: each node has its
// own timeout, and a bounded number are asked at once, so a thousand nodes,
// half of them gone, take seconds and never hang.

import type { Lease } from '../../daemon/lease/index.js';
import type { StatusDocument } from '../../daemon/node/status.js';
import { DaemonError, reasonOf } from '../errors.js';

/**
 * GET /status as a daemon answers it: a StatusDocument, of which an older
 * daemon may leave fields out, and whose sections of the wrong shape were
 * left out (reportedStatus).
 */
export type ReportedStatus = Partial<StatusDocument>;

/** Fetches a daemon's /status as JSON; throws with the reason when there is none. */
export type StatusFetcher = (url: string, signal: AbortSignal) => Promise<unknown>;

export interface NodeLook {
  readonly lease: Lease;
  readonly url: string;
  readonly status?: ReportedStatus;
  /** When the status was read, by SurveyOptions.clock: the nodes of one survey are read up to several --timeout apart. */
  readonly readAt?: number;
  /** Why there is no status: unreachable, timeout, HTTP error, not a status document. */
  readonly error?: string;
}

/** doctor's default --concurrency: with the default 3 s timeout, a thousand silent nodes take four rounds, about 12 s. */
export const DEFAULT_CONCURRENCY = 256;

export interface SurveyOptions {
  /** The daemons' health port (miniflanneld --healthz-port). */
  readonly port: number;
  /** Bound on each node's answer. */
  readonly timeoutMs: number;
  /** Nodes asked at once. */
  readonly concurrency: number;
  /** How a status is fetched; default: HTTP (fetchStatusJson). */
  readonly fetchStatus?: StatusFetcher;
  /** The clock each readAt is taken from (ms); default: Date.now. */
  readonly clock?: () => number;
}

/** A JSON object: what a status document and each of its sections must be. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** GET `url` as JSON; the DaemonError names `label` (what the operator gave) and says why there is no answer. */
export async function fetchStatusJson(url: string, signal: AbortSignal, label = url): Promise<unknown> {
  let response: Response;
  let body: string;
  try {
    response = await fetch(url, { signal, headers: { accept: 'application/json' } });
    body = await response.text();
  } catch (err) {
    throw new DaemonError(label, `daemon unreachable at ${label}: ${reasonOf(err)}`, { cause: err });
  }
  if (!response.ok) throw new DaemonError(label, `daemon at ${label} answered ${response.status} ${response.statusText} for ${new URL(url).pathname}`);
  try {
    return JSON.parse(body);
  } catch (cause) {
    throw new DaemonError(label, `daemon at ${label} sent a status that is not JSON`, { cause });
  }
}

/** The document with every section of the wrong shape left out, so that it shows as absent instead of failing; a DaemonError if it is no object at all. */
export function reportedStatus(doc: unknown, label: string): ReportedStatus {
  if (!isObject(doc)) throw new DaemonError(label, `daemon at ${label} sent a status that is not a JSON object`);
  const result: Record<string, unknown> = { ...doc };
  for (const key of ['node', 'store', 'counters'] as const) if (!isObject(doc[key])) delete result[key];
  if (doc['lease'] !== null && !isObject(doc['lease'])) delete result['lease'];
  for (const key of ['peers', 'skippedLeases'] as const) {
    const list = doc[key];
    if (Array.isArray(list)) result[key] = list.filter(isObject);
    else delete result[key];
  }
  return result as ReportedStatus;
}

/**
 * One daemon's status within `timeoutMs`, shape-checked; a DaemonError
 * naming `label` otherwise. The deadline holds even for a fetcher that
 * ignores its abort signal.
 */
export async function readStatus(url: string, label: string, timeoutMs: number, fetchStatus?: StatusFetcher): Promise<ReportedStatus> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new DaemonError(label, `daemon at ${label} did not answer within ${timeoutMs} ms (--timeout)`));
    }, timeoutMs);
  });
  try {
    const fetching = fetchStatus ? fetchStatus(url, controller.signal) : fetchStatusJson(url, controller.signal, label);
    return reportedStatus(await Promise.race([fetching, deadline]), label);
  } finally {
    clearTimeout(timer);
  }
}

/** The /status URL of a lease's node: its PublicIP, else [PublicIPv6], and the health port. */
export function statusUrl(lease: Lease, port: number): string {
  const host = lease.publicIP ?? (lease.publicIPv6 === undefined ? undefined : `[${lease.publicIPv6}]`);
  // The store refuses a lease without either address, so only a lease made by hand lacks both.
  if (host === undefined) throw new Error(`lease ${lease.subnet} names no PublicIP or PublicIPv6 to reach its daemon at`);
  return `http://${host}:${port}/status`;
}

/** Asks every lease's daemon for /status, in parallel (at most `concurrency` at once), each with its own timeout; never throws for a node, never hangs. */
export async function lookAtNodes(leases: readonly Lease[], options: SurveyOptions): Promise<NodeLook[]> {
  const looks: NodeLook[] = new Array(leases.length);
  let next = 0;
  const lookAt = async (lease: Lease): Promise<NodeLook> => {
    let url = '';
    try {
      url = statusUrl(lease, options.port);
      const status = await readStatus(url, url, options.timeoutMs, options.fetchStatus);
      return { lease, url, status, readAt: (options.clock ?? Date.now)() };
    } catch (err) {
      return { lease, url, error: err instanceof Error ? err.message : String(err) };
    }
  };
  const worker = async (): Promise<void> => {
    for (let i = next++; i < leases.length; i = next++) looks[i] = await lookAt(leases[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, leases.length) }, worker));
  return looks;
}
