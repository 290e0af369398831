// Building ioredis clients for an endpoint, waiting for them to be ready, and
// turning ioredis failures into the store's error classes.
//
// Two kinds of client:
// - "command": every store operation. A CommandLink opens it when there is
//   work and, in a daemon, closes it again after commandIdleMs without any,
//   so that an idle node holds one connection to Redis, not two.
// - "subscriber": one per watch, the long-lived connection that Redis pushes
//   changes down. It never reconnects by itself: the watch replaces it, so
//   that it can catch up on what it missed after every reconnection.

import { Cluster, Redis, ReplyError, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { describeEndpoint, type HostPort, type RedisEndpoint } from './endpoint.js';
import { LeaseStoreError, OptionsError, StoreAccessError, StoreCommandError, StoreUnavailableError } from './errors.js';
import type { ResolvedOptions } from './options.js';

export type RedisClient = Redis | Cluster;


/**
 * Reply errors that mean "not now" rather than "wrong": the cure is to retry
 * later. MOVED and ASK reach the store only when a redirection could not be
 * followed: the slot is moving (a failover, a resharding).
 */
const TRANSIENT_REPLY_CODES = new Set(['LOADING', 'READONLY', 'MASTERDOWN', 'CLUSTERDOWN', 'TRYAGAIN', 'BUSY', 'MOVED', 'ASK']);

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
  /** What the server said when it last turned a connection away (see watchForRefusal). */
  private refusal: string | undefined;

  constructor(endpoint: RedisEndpoint, options: ResolvedOptions) {
    this.endpoint = endpoint;
    this.address = describeEndpoint(endpoint);
    this.options = options;
  }

  /** The options every connection shares: timeouts, keepalive, credentials, TLS. */
  private commonOptions(connectionName: string): RedisOptions {
    const o = this.options;
    const e = this.endpoint;
    const tls = e.tls ? { ...(o.tls ?? {}) } : undefined;
    return {
      lazyConnect: true,
      connectTimeout: o.connectTimeoutMs,
      connectionName,
      // TCP keepalive: idle 30 s, then libuv probes every second, ten times.
      // A connection whose server vanished without a FIN is dropped within
      // about 40 s, at no cost in Redis commands.
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
  }

  /**
   * A command client that has not started connecting yet; see CommandLink.
   * It never reconnects and never queues: a command is written only to a
   * connection that is up, and fails at once otherwise. A command queued
   * for a connection that comes back later would run after its caller was
   * told it failed, and do what nobody is waiting for any more (a renewal
   * that puts a lease back unseen, say). The caller retries, on a new
   * connection.
   */
  createCommandClient(connectionName: string): RedisClient {
    const o = this.options;
    const e = this.endpoint;
    const retryStrategy = () => null;
    const common: RedisOptions = {
      ...this.commonOptions(connectionName),
      commandTimeout: o.commandTimeoutMs,
      // A command timeout alone leaves a dead (silent) socket in place; this destroys it.
      socketTimeout: o.commandTimeoutMs,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // The ready check is an INFO on every new connection, which costs Redis as much as half a
      // renewal; a Redis still loading answers the first command with LOADING, retried the same way.
      enableReadyCheck: false,
    };
    switch (e.kind) {
      case 'standalone':
        return this.watchForRefusal(new Redis({ ...common, host: e.node.host, port: e.node.port, db: e.db, retryStrategy }));
      case 'sentinel':
        return this.watchForRefusal(new Redis({ ...common, ...this.sentinelOptions(), db: e.db, retryStrategy, sentinelRetryStrategy: retryStrategy }));
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
   * A subscriber client that has not started connecting yet. On Redis
   * Cluster it goes to `node`, the master that holds the store's slot, since
   * only that node sees (and reports) changes to the store's keys.
   */
  createSubscriber(connectionName: string, node?: HostPort): Redis {
    const e = this.endpoint;
    const common: RedisOptions = {
      ...this.commonOptions(connectionName),
      retryStrategy: () => null,
      enableOfflineQueue: true,
      autoResubscribe: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      // The ready check is an INFO per connection; the watch's first read
      // answers LOADING as well, and is retried the same way.
      enableReadyCheck: false,
    };
    switch (e.kind) {
      case 'standalone':
        return this.watchForRefusal(new Redis({ ...common, host: e.node.host, port: e.node.port, db: e.db }));
      case 'sentinel':
        return this.watchForRefusal(new Redis({ ...common, ...this.sentinelOptions(), db: e.db, sentinelRetryStrategy: () => null }));
      case 'cluster':
        if (node === undefined) throw new Error('a Redis Cluster subscriber needs the node that holds the store');
        return new Redis({ ...common, host: node.host, port: node.port });
    }
  }

  private sentinelOptions(): RedisOptions {
    const e = this.endpoint;
    if (e.kind !== 'sentinel') return {};
    return {
      sentinels: e.sentinels.map((s) => ({ host: s.host, port: s.port })),
      name: e.masterName,
      sentinelCommandTimeout: this.options.connectTimeoutMs,
      ...(e.sentinelUsername !== undefined ? { sentinelUsername: e.sentinelUsername } : {}),
      ...(e.sentinelPassword !== undefined ? { sentinelPassword: e.sentinelPassword } : {}),
      ...(e.tls ? { enableTLSForSentinelMode: true, sentinelTLS: { ...(this.options.tls ?? {}) } } : {}),
    };
  }

  /**
   * Connects `client` and resolves once it is ready: one attempt, bounded by
   * connectTimeoutMs in total (a server that accepts the TCP connection but
   * never answers counts as unreachable). Retrying is the caller's business:
   * each caller knows what it is waiting for and says so in its own log.
   */
  async connect(client: RedisClient, signal?: AbortSignal): Promise<void> {
    const deadlineMs = this.options.connectTimeoutMs;
    await new Promise<void>((resolve, reject) => {
      let lastError: Error | undefined;
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
        const refused = this.accessDenied(err) ?? this.noSuchDatabase(err);
        if (refused !== undefined) return fail(refused);
        lastError = err;
      };
      const onEnd = (): void => fail(this.refusal === undefined ? this.unreachable(lastError) : this.refused(this.refusal));
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
      timer = setTimeout(() => {
        const why = lastError ?? new Error(`no reply within ${deadlineMs} ms (connectTimeoutMs)`);
        fail(this.unreachable(why));
      }, deadlineMs);
      // Failures arrive as "error"/"end" events; the promise itself adds nothing.
      client.connect().catch(() => undefined);
    });
  }

  /**
   * An OptionsError if `err` is the server refusing the URL's database.
   * ioredis selects it on connecting and only reports the refusal as an
   * error event, then goes on in database 0: without this, every key
   * would silently land there.
   */
  noSuchDatabase(err: Error): OptionsError | undefined {
    if (!isReplyError(err) || !/^ERR DB index is out of range/.test(err.message)) return undefined;
    const db = this.endpoint.kind === 'cluster' ? 0 : this.endpoint.db;
    return new OptionsError('url', `Redis at ${this.address} has no database ${db} (it answered "${err.message}"): use one below its 'databases' setting (16 by default) in the URL, e.g. /0`);
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

  /**
   * Notes what the server says first on each new connection of `client`. A
   * server that turns away every client from elsewhere (protected mode)
   * sends DENIED the moment it accepts the connection, and closes it; ioredis
   * takes that for the reply to its first command, which it discards, and
   * reports only "Connection is closed". The last word of the server is kept
   * here (undefined once a connection is not turned away) for the errors
   * that follow.
   */
  private watchForRefusal(client: Redis): Redis {
    client.on('connect', () => {
      client.stream?.once('data', (chunk: Buffer) => {
        this.refusal = chunk.subarray(0, 8).toString('latin1') === '-DENIED ' ? chunk.toString('utf8', 1, chunk.indexOf('\r\n')) : undefined;
      });
    });
    return client;
  }

  /** The server turned the connection away (its DENIED reply): what it said, first sentence, and what to do. */
  refused(reply: string): StoreAccessError {
    const reason = /^[^.]*\./.exec(reply)?.[0] ?? reply;
    return new StoreAccessError(
      this.address,
      `Redis at ${this.address} refused the connection: ${reason} Give its default user a password (requirepass) and put it in the URL, or set protected-mode no on a Redis that only the cluster can reach`,
      { cause: new Error(reply) },
    );
  }

  unreachable(cause: Error | undefined): StoreUnavailableError {
    const detail = cause === undefined ? 'connection closed' : errorSummary(cause);
    return new StoreUnavailableError(this.address, `Redis unreachable at ${this.address}: ${detail}`, { cause });
  }

  /** Maps a failure of a command to the store's error classes. */
  wrap(err: unknown, what: string): LeaseStoreError {
    if (err instanceof LeaseStoreError) return err;
    // A server that wants a password says so at the first command, not at the connection.
    const denied = err instanceof Error ? this.accessDenied(err) : undefined;
    if (denied !== undefined) return denied;
    if (isReplyError(err)) {
      const code = err.message.split(' ', 1)[0] ?? '';
      if (TRANSIENT_REPLY_CODES.has(code)) {
        return new StoreUnavailableError(this.address, `Redis at ${this.address} cannot serve ${what} right now: ${err.message}`, { cause: err });
      }
      return new StoreCommandError(`Redis at ${this.address} rejected ${what}: ${err.message}`, { cause: err });
    }
    if (this.refusal !== undefined) return this.refused(this.refusal);
    const cause = err instanceof Error ? err : new Error(String(err));
    return new StoreUnavailableError(this.address, `Redis unreachable at ${this.address} during ${what}: ${errorSummary(cause)}`, { cause });
  }
}

/**
 * The command connection, opened on first use. With an idle timeout it is
 * closed again after that long without a command: a daemon renews about once
 * a day and reaps its share now and then, so an idle node need not hold a
 * second connection to Redis beside its watch.
 */
export class CommandLink {
  private client: RedisClient | undefined;
  private connecting: Promise<RedisClient> | undefined;
  private users = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly factory: ConnectionFactory,
    private readonly logger: Logger,
    private readonly connectionName: string,
    /** Close after this long unused; Infinity keeps it open until close(). */
    private readonly idleMs: number,
  ) {}

  /** Whether the connection is up right now (it is down between uses when idle-closed). */
  get connected(): boolean {
    return this.client?.status === 'ready';
  }

  /**
   * Runs `use` on a connected client, connecting first if needed (one
   * attempt, bounded by connectTimeoutMs; the caller decides whether to try
   * again). Rejects with StoreUnavailableError or StoreAccessError.
   */
  async run<T>(use: (client: RedisClient) => Promise<T>): Promise<T> {
    this.users++;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    try {
      return await use(await this.open());
    } finally {
      if (--this.users === 0) this.armIdleClose();
    }
  }

  private open(): Promise<RedisClient> {
    if (this.closed) return Promise.reject(new LeaseStoreError('the lease store is closed'));
    const client = this.client;
    if (client !== undefined && client.status === 'ready') return Promise.resolve(client);
    // Anything else is a connection that went away: a new one, shared by whoever asks meanwhile.
    this.connecting ??= this.connectNew().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connectNew(): Promise<RedisClient> {
    if (this.client !== undefined) closeClient(this.client);
    const client = this.factory.createCommandClient(this.connectionName);
    client.on('error', (err: Error) => this.logger.debug({ address: this.factory.address, err: err.message }, 'Redis command connection error'));
    this.client = client;
    try {
      await this.factory.connect(client);
    } catch (err) {
      // connect() closed it; a client left between retries would hold commands forever.
      if (this.client === client) this.client = undefined;
      throw err;
    }
    this.logger.debug({ address: this.factory.address }, 'Redis command connection ready');
    return client;
  }

  private armIdleClose(): void {
    if (!Number.isFinite(this.idleMs) || this.closed) return;
    this.idleTimer = setTimeout(() => {
      if (this.users > 0 || this.client === undefined) return;
      closeClient(this.client);
      this.client = undefined;
      this.logger.debug({ address: this.factory.address, idleMs: this.idleMs }, 'Redis command connection closed while idle');
    }, this.idleMs);
    this.idleTimer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    if (this.client !== undefined) closeClient(this.client);
    this.client = undefined;
  }
}

/** The Redis Cluster hash slot of a key (CRC16/XMODEM of its hash tag, mod 16384). */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  const tagged = open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  for (const byte of Buffer.from(tagged)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
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
