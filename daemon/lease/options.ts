// Options of connectLeaseStore, their defaults, and the checks run on them
// before anything connects.

import type { ConnectionOptions as TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import { OptionsError } from './errors.js';

/**
 * What to do when Redis cannot be reached.
 *
 * - `fail-fast` (one-shot callers such as the CLI): connectLeaseStore makes one
 *   connection attempt bounded by `connectTimeoutMs`; commands fail at once
 *   while disconnected; a watch reconnects once, then throws.
 * - `backoff` (the daemon): nothing connects until the first operation; an
 *   operation connects if it must (one attempt, at most `connectTimeoutMs`) and
 *   fails at once while Redis is away, for its caller to try again (a keeper
 *   with its own backoff); the command connection closes after
 *   `commandIdleMs` unused; a watch reconnects with exponential backoff and
 *   jitter forever (or `maxAttempts` times in a row).
 */
export type RetryPolicy =
  | { readonly mode: 'fail-fast' }
  | {
      readonly mode: 'backoff';
      /** First delay between attempts. Default 100 ms. */
      readonly initialDelayMs?: number;
      /** Cap on the delay, which doubles after each failure. Default 10 s. */
      readonly maxDelayMs?: number;
      /** Give up after this many failed attempts in a row. Default: never. */
      readonly maxAttempts?: number;
    };

export interface LeaseStoreOptions {
  /**
   * Where Redis is: redis://, rediss://, redis+sentinel://, redis+cluster://
   * (see docs/redis.md). Required.
   */
  readonly url: string;
  /** Receives every log line of the store, its watches and renewers. Required: there is no global logger. */
  readonly logger: Logger;
  /**
   * Every key is `{<keyPrefix>}:<name>`, the braces being a Redis Cluster hash tag
   * that keeps all keys in one slot (so scripts may touch them together).
   * Mirrors flannel's --etcd-prefix. Default "miniflannel".
   */
  readonly keyPrefix?: string;
  /** How long a lease lives unless renewed. Default 24 h, as in flannel. */
  readonly leaseTtlMs?: number;
  /** A lease is renewed this long before it expires. Default 60 min, as in flannel. Must be below leaseTtlMs. */
  readonly renewMarginMs?: number;
  /** Bound on establishing a connection (and, for fail-fast, on the whole first connect). Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** Bound on any single command, including time spent waiting for a reconnection. Default 5 s. */
  readonly commandTimeoutMs?: number;
  /** Reconnection behaviour; see RetryPolicy. Default fail-fast. */
  readonly retry?: RetryPolicy;
  /** How many times acquireLease starts over after losing a race to another node. Default 10 (flannel's raceRetries). */
  readonly maxAcquireAttempts?: number;
  /**
   * Approximate cap on the change stream (XADD MAXLEN ~). A watcher that falls
   * further behind than this lists the leases again (in chunks). It should
   * exceed the number of nodes, so that after the store lost its data every
   * watcher can catch up on the re-asserted leases from the stream. Default 20000.
   */
  readonly streamMaxLen?: number;
  /**
   * The cluster-wide average time between reaps, which turn expired leases
   * into "expired" events. Every node that keeps a lease reaps at random
   * times, on average once every (leases x reapIntervalMs), so the cluster as
   * a whole reaps about once per reapIntervalMs whatever its size; every write
   * also reaps first. Default leaseTtlMs / 48, between 1 s and 30 min.
   */
  readonly reapIntervalMs?: number;
  /** backoff only: close the command connection after this long unused. Default 30 s. */
  readonly commandIdleMs?: number;
  /** Events a watch buffers for a slow consumer before it stops reading from Redis. Default 1024. */
  readonly watchBufferSize?: number;
  /**
   * Replicas that must hold a write before it counts as done. After each
   * acquire, renew, revoke or reserve the store sends `WAIT minReplicas
   * replicationTimeoutMs` on the same connection; fewer acknowledgements
   * fail the call with StoreReplicationError (the write stays on the master,
   * the caller retries). Replication is asynchronous, so without this a
   * failover may promote a replica that never saw a lease the store already
   * reported as acquired. Default 0: no WAIT. See minReplicasFor(url) for the
   * value the daemon and the CLI derive from the URL.
   */
  readonly minReplicas?: number;
  /** How long WAIT may block for the replicas. Default 2 s; must be below commandTimeoutMs. */
  readonly replicationTimeoutMs?: number;
  /** Extra TLS settings (CA, client certificate) for rediss:// URLs. */
  readonly tls?: TlsOptions;
}

/** Backoff settings with every field filled in. */
export interface ResolvedRetry {
  readonly mode: 'fail-fast' | 'backoff';
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly maxAttempts: number;
}

export interface ResolvedOptions {
  readonly url: string;
  readonly logger: Logger;
  readonly keyPrefix: string;
  readonly leaseTtlMs: number;
  readonly renewMarginMs: number;
  readonly connectTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly retry: ResolvedRetry;
  readonly maxAcquireAttempts: number;
  readonly streamMaxLen: number;
  readonly reapIntervalMs: number;
  /** Infinity in fail-fast mode: the connection stays open until close(). */
  readonly commandIdleMs: number;
  readonly watchBufferSize: number;
  readonly minReplicas: number;
  readonly replicationTimeoutMs: number;
  readonly tls: TlsOptions | undefined;
}

const HOUR = 60 * 60 * 1000;

/** The defaults of every optional field of LeaseStoreOptions. */
export const LEASE_STORE_DEFAULTS = Object.freeze({
  keyPrefix: 'miniflannel',
  leaseTtlMs: 24 * HOUR,
  renewMarginMs: 1 * HOUR,
  connectTimeoutMs: 5_000,
  commandTimeoutMs: 5_000,
  retry: Object.freeze({ mode: 'fail-fast' }) as RetryPolicy,
  maxAcquireAttempts: 10,
  streamMaxLen: 20_000,
  commandIdleMs: 30_000,
  watchBufferSize: 1024,
  minReplicas: 0,
  replicationTimeoutMs: 2_000,
});

const BACKOFF_DEFAULTS = { initialDelayMs: 100, maxDelayMs: 10_000, maxAttempts: Infinity };

function positiveInteger(option: string, value: number, min = 1): number {
  if (!Number.isInteger(value) || value < min) {
    throw new OptionsError(option, `${option} must be an integer of at least ${min} (got ${String(value)})`);
  }
  return value;
}

export function resolveRetry(retry: RetryPolicy): ResolvedRetry {
  if (retry.mode === 'fail-fast') return { mode: 'fail-fast', ...BACKOFF_DEFAULTS, maxAttempts: 0 };
  if (retry.mode !== 'backoff') {
    throw new OptionsError('retry.mode', `retry.mode must be "fail-fast" or "backoff" (got ${JSON.stringify((retry as { mode: unknown }).mode)})`);
  }
  const initialDelayMs = positiveInteger('retry.initialDelayMs', retry.initialDelayMs ?? BACKOFF_DEFAULTS.initialDelayMs);
  const maxDelayMs = positiveInteger('retry.maxDelayMs', retry.maxDelayMs ?? BACKOFF_DEFAULTS.maxDelayMs);
  const maxAttempts = retry.maxAttempts ?? BACKOFF_DEFAULTS.maxAttempts;
  if (maxAttempts !== Infinity) positiveInteger('retry.maxAttempts', maxAttempts);
  if (maxDelayMs < initialDelayMs) {
    throw new OptionsError('retry.maxDelayMs', `retry.maxDelayMs (${maxDelayMs}) must not be below retry.initialDelayMs (${initialDelayMs})`);
  }
  return { mode: 'backoff', initialDelayMs, maxDelayMs, maxAttempts };
}

/** Delay before attempt `attempt` (1-based): exponential, capped, with ±25% jitter so reconnecting nodes spread out. */
export function backoffDelay(retry: Pick<ResolvedRetry, 'initialDelayMs' | 'maxDelayMs'>, attempt: number): number {
  const base = Math.min(retry.maxDelayMs, retry.initialDelayMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/** leaseTtlMs / 48 between 1 s and 30 min: with the default day-long TTL, half an hour. */
export function defaultReapInterval(leaseTtlMs: number): number {
  return Math.round(Math.min(30 * 60_000, Math.max(1_000, leaseTtlMs / 48)));
}

export function resolveOptions(options: LeaseStoreOptions): ResolvedOptions {
  if (typeof options.url !== 'string' || options.url === '') {
    throw new OptionsError('url', 'url is required (e.g. redis://127.0.0.1:6379)');
  }
  if (options.logger === undefined || options.logger === null) {
    throw new OptionsError('logger', 'logger is required: pass a pino logger (pino({level: "silent"}) to discard)');
  }
  const d = LEASE_STORE_DEFAULTS;
  const keyPrefix = options.keyPrefix ?? d.keyPrefix;
  if (keyPrefix === '' || /[{}\s]/.test(keyPrefix)) {
    throw new OptionsError('keyPrefix', `keyPrefix must be non-empty without braces or spaces (got ${JSON.stringify(keyPrefix)}); it becomes the hash tag {${keyPrefix}}`);
  }
  const leaseTtlMs = positiveInteger('leaseTtlMs', options.leaseTtlMs ?? d.leaseTtlMs);
  const renewMarginMs = positiveInteger('renewMarginMs', options.renewMarginMs ?? d.renewMarginMs);
  if (renewMarginMs >= leaseTtlMs) {
    throw new OptionsError('renewMarginMs', `renewMarginMs (${renewMarginMs}) must be below leaseTtlMs (${leaseTtlMs}), or a lease would be renewed continuously`);
  }
  const commandTimeoutMs = positiveInteger('commandTimeoutMs', options.commandTimeoutMs ?? d.commandTimeoutMs);
  const minReplicas = positiveInteger('minReplicas', options.minReplicas ?? d.minReplicas, 0);
  const replicationTimeoutMs = positiveInteger('replicationTimeoutMs', options.replicationTimeoutMs ?? d.replicationTimeoutMs);
  // WAIT blocks on the command connection, where commandTimeoutMs would cut it short.
  if (minReplicas > 0 && replicationTimeoutMs >= commandTimeoutMs) {
    throw new OptionsError('replicationTimeoutMs', `replicationTimeoutMs (${replicationTimeoutMs}) must be below commandTimeoutMs (${commandTimeoutMs})`);
  }
  const retry = resolveRetry(options.retry ?? d.retry);
  return {
    url: options.url,
    logger: options.logger,
    keyPrefix,
    leaseTtlMs,
    renewMarginMs,
    connectTimeoutMs: positiveInteger('connectTimeoutMs', options.connectTimeoutMs ?? d.connectTimeoutMs),
    commandTimeoutMs,
    retry,
    maxAcquireAttempts: positiveInteger('maxAcquireAttempts', options.maxAcquireAttempts ?? d.maxAcquireAttempts),
    streamMaxLen: positiveInteger('streamMaxLen', options.streamMaxLen ?? d.streamMaxLen),
    reapIntervalMs: positiveInteger('reapIntervalMs', options.reapIntervalMs ?? defaultReapInterval(leaseTtlMs)),
    commandIdleMs: retry.mode === 'backoff' ? positiveInteger('commandIdleMs', options.commandIdleMs ?? d.commandIdleMs) : Infinity,
    watchBufferSize: positiveInteger('watchBufferSize', options.watchBufferSize ?? d.watchBufferSize),
    minReplicas,
    replicationTimeoutMs,
    tls: options.tls,
  };
}
