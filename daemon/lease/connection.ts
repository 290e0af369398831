// Building ioredis clients for an endpoint, waiting for them to be ready, and
// turning ioredis failures into the store's error classes.
//
// Two kinds of client:
// - "command": shared by every store operation; reconnects per the retry policy.
// - "blocking": one per watch, for XREAD BLOCK. It never reconnects by itself:
//   the watch loop replaces it, so that it can check its stream position
//   after every reconnection.

import { Cluster, Redis, ReplyError, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { describeEndpoint, type RedisEndpoint } from './endpoint.js';
import { LeaseStoreError, StoreAccessError, StoreCommandError, StoreUnavailableError } from './errors.js';
import { backoffDelay, type ResolvedOptions } from './options.js';

export type RedisClient = Redis | Cluster;

export type ClientPurpose = 'command' | 'blocking';

/** Reply errors that mean "not now" rather than "wrong": the cure is to retry later. */
const TRANSIENT_REPLY_CODES = new Set(['LOADING', 'READONLY', 'MASTERDOWN', 'CLUSTERDOWN', 'TRYAGAIN', 'BUSY']);

/** Reply errors to AUTH (or to the first command without it) that no retry can cure. */
const ACCESS_REPLY_CODES = new Set(['WRONGPASS', 'NOAUTH', 'NOPERM']);

/** Node's codes for a server certificate that does not verify (node:tls, OpenSSL). */
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export class ConnectionFactory {
  readonly endpoint: RedisEndpoint;
  /** The endpoint as text with the password masked. */
  readonly address: string;
  private readonly options: ResolvedOptions;

  constructor(endpoint: RedisEndpoint, options: ResolvedOptions) {
    this.endpoint = endpoint;
    this.address = describeEndpoint(endpoint);
    this.options = options;
  }

  /** A client that has not started connecting yet; call `connect` on it. */
  create(purpose: ClientPurpose, connectionName: string, extra?: { blockMs?: number }): RedisClient {
    const o = this.options;
    const e = this.endpoint;
    const reconnects = purpose === 'command' && o.retry.mode === 'backoff';
    const retryStrategy = reconnects
      ? (times: number) => (times > o.retry.maxAttempts ? null : backoffDelay(o.retry, times))
      : () => null;
    const tls = e.tls ? { ...(o.tls ?? {}) } : undefined;
    const common: RedisOptions = {
      lazyConnect: true,
      connectTimeout: o.connectTimeoutMs,
      connectionName,
      keepAlive: 30_000,
      // After our FIN, how long to wait for the server's before destroying the
      // socket; the timer is not unref'd, so a CLI would linger this long.
      disconnectTimeout: 200,
      // The library tags itself with CLIENT SETINFO, which Redis < 7.2 rejects noisily.
      disableClientInfo: true,
      ...(e.username !== undefined ? { username: e.username } : {}),
      ...(e.password !== undefined ? { password: e.password } : {}),
      ...(tls !== undefined ? { tls } : {}),
    };
    if (purpose === 'command') {
      Object.assign(common, {
        commandTimeout: o.commandTimeoutMs,
        // A command timeout alone leaves a dead (silent) socket in place; this
        // destroys it so the retry strategy reconnects.
        socketTimeout: o.commandTimeoutMs,
        enableOfflineQueue: reconnects,
        maxRetriesPerRequest: reconnects ? null : 0,
        // A write followed by WAIT must not be replayed on a new connection:
        // a WAIT sent there would count the replicas of nothing. The caller
        // sees the failure and retries the whole write instead.
        ...(o.minReplicas > 0 ? { autoResendUnfulfilledCommands: false } : {}),
      } satisfies RedisOptions);
    } else {
      // A command timeout would cut every XREAD BLOCK short; blockingTimeout
      // is the safety net for a connection that died without a FIN.
      Object.assign(common, {
        blockingTimeout: extra?.blockMs ?? o.watchBlockMs,
        blockingTimeoutGrace: o.commandTimeoutMs,
        enableOfflineQueue: false,
        autoResendUnfulfilledCommands: false,
        maxRetriesPerRequest: 0,
      } satisfies RedisOptions);
    }

    switch (e.kind) {
      case 'standalone':
        return new Redis({ ...common, host: e.node.host, port: e.node.port, db: e.db, retryStrategy });
      case 'sentinel':
        return new Redis({
          ...common,
          sentinels: e.sentinels.map((s) => ({ host: s.host, port: s.port })),
          name: e.masterName,
          db: e.db,
          retryStrategy,
          sentinelRetryStrategy: reconnects ? retryStrategy : () => null,
          sentinelCommandTimeout: o.connectTimeoutMs,
          ...(e.sentinelUsername !== undefined ? { sentinelUsername: e.sentinelUsername } : {}),
          ...(e.sentinelPassword !== undefined ? { sentinelPassword: e.sentinelPassword } : {}),
          ...(e.tls ? { enableTLSForSentinelMode: true, sentinelTLS: { ...(o.tls ?? {}) } } : {}),
        });
      case 'cluster': {
        const { enableOfflineQueue, ...nodeOptions } = common;
        const clusterOptions: ClusterOptions = {
          lazyConnect: true,
          enableOfflineQueue: enableOfflineQueue ?? false,
          clusterRetryStrategy: retryStrategy,
          slotsRefreshTimeout: o.connectTimeoutMs,
          redisOptions: nodeOptions,
        };
        return new Cluster(
          e.nodes.map((n) => ({ host: n.host, port: n.port })),
          clusterOptions,
        );
      }
    }
  }

  /**
   * Connects `client` and resolves once it is ready. fail-fast, or a client
   * that does not reconnect by itself (`once`): one attempt, bounded by
   * connectTimeoutMs in total (a server that accepts the TCP connection but
   * never answers counts as unreachable). backoff: waits as long as the client
   * keeps retrying, logging each failure, until `signal` aborts.
   */
  async connect(client: RedisClient, logger: Logger, signal?: AbortSignal, once = false): Promise<void> {
    const failFast = this.options.retry.mode === 'fail-fast' || once;
    const deadlineMs = failFast ? this.options.connectTimeoutMs : undefined;
    await new Promise<void>((resolve, reject) => {
      let lastError: Error | undefined;
      let failures = 0;
      let timer: NodeJS.Timeout | undefined;
      const cleanup = (): void => {
        client.off('ready', onReady);
        client.off('error', onError);
        client.off('end', onEnd);
        signal?.removeEventListener('abort', onAbort);
        if (timer !== undefined) clearTimeout(timer);
      };
      const fail = (err: Error): void => {
        cleanup();
        closeClient(client);
        reject(err);
      };
      const onReady = (): void => {
        cleanup();
        resolve();
      };
      const onError = (err: Error): void => {
        const denied = this.accessDenied(err);
        if (denied !== undefined) return fail(denied);
        lastError = err;
        failures++;
        if (!failFast) {
          logger.warn({ address: this.address, attempt: failures, err: errorSummary(err) }, 'Redis connection attempt failed; retrying');
        }
      };
      const onEnd = (): void => fail(this.unreachable(lastError));
      const onAbort = (): void =>
        fail(new StoreUnavailableError(this.address, `connecting to Redis at ${this.address} was aborted`, { cause: signal?.reason }));
      if (signal?.aborted === true) {
        onAbort();
        return;
      }
      client.on('ready', onReady);
      client.on('error', onError);
      client.on('end', onEnd);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (deadlineMs !== undefined) {
        timer = setTimeout(() => {
          const why = lastError ?? new Error(`no reply within ${deadlineMs} ms (connectTimeoutMs)`);
          fail(this.unreachable(why));
        }, deadlineMs);
      }
      // Failures arrive as "error"/"end" events; the promise itself adds nothing.
      client.connect().catch(() => undefined);
    });
  }

  /**
   * A StoreAccessError if `err` says the credentials or the server's
   * certificate were refused. The cause is rebuilt from the message alone:
   * ioredis attaches the AUTH command, password included, to its error.
   */
  accessDenied(err: Error): StoreAccessError | undefined {
    // Redis ends some replies with a full stop; the hint follows after a semicolon.
    const message = err.message.replace(/\.$/, '');
    const code = (err as Error & { code?: unknown }).code;
    if (isReplyError(err)) {
      const reply = err.message.split(' ', 1)[0] ?? '';
      if (!ACCESS_REPLY_CODES.has(reply)) return undefined;
      if (reply === 'NOPERM') {
        return new StoreAccessError(this.address, `Redis at ${this.address} denied a command to this user: ${message}; grant it the keys and commands docs/redis.md lists`, { cause: new Error(message) });
      }
      const hint =
        this.endpoint.password === undefined
          ? 'put the user and password in the URL (redis://user:password@host:port)'
          : 'check the user and password in the URL';
      return new StoreAccessError(this.address, `Redis at ${this.address} refused the credentials: ${message}; ${hint}`, { cause: new Error(message) });
    }
    if (typeof code === 'string' && TLS_VERIFY_CODES.has(code)) {
      return new StoreAccessError(
        this.address,
        `the TLS certificate of Redis at ${this.address} is not trusted: ${message} (${code}); give the CA that signed it (--redis-ca-file, option tls.ca)`,
        { cause: new Error(message) },
      );
    }
    return undefined;
  }

  unreachable(cause: Error | undefined): StoreUnavailableError {
    const detail = cause === undefined ? 'connection closed' : errorSummary(cause);
    return new StoreUnavailableError(this.address, `Redis unreachable at ${this.address}: ${detail}`, { cause });
  }

  /** Maps a failure of a command to the store's error classes. */
  wrap(err: unknown, what: string): LeaseStoreError {
    if (err instanceof LeaseStoreError) return err;
    if (isReplyError(err)) {
      const code = err.message.split(' ', 1)[0] ?? '';
      if (TRANSIENT_REPLY_CODES.has(code)) {
        return new StoreUnavailableError(this.address, `Redis at ${this.address} cannot serve ${what} right now: ${err.message}`, { cause: err });
      }
      return new StoreCommandError(`Redis at ${this.address} rejected ${what}: ${err.message}`, { cause: err });
    }
    const cause = err instanceof Error ? err : new Error(String(err));
    return new StoreUnavailableError(this.address, `Redis unreachable at ${this.address} during ${what}: ${errorSummary(cause)}`, { cause });
  }
}

/**
 * Disconnects unless already ended. ioredis arms a (referenced) timer on
 * every disconnect() and clears it when the socket closes, so a second call
 * on a closed socket would keep the process alive for disconnectTimeout.
 */
export function closeClient(client: RedisClient): void {
  if (client.status !== 'end' && client.status !== 'close') client.disconnect();
}

/** An error reply from Redis (as opposed to a connection failure). ioredis types ReplyError as any. */
export function isReplyError(err: unknown): err is Error {
  return err instanceof (ReplyError as ErrorConstructor);
}

/** "ECONNREFUSED" for socket errors (the code says it all), the message otherwise. */
export function errorSummary(err: Error): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  return err.message;
}
