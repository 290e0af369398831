// The subnet manager: what the daemon and the CLI use. The allocation policy
// (reuse my lease, else my previous subnet, else a random free one; start
// over a bounded number of times after losing a race) lives here; every
// write goes through the registry's atomic scripts.

import type { Logger } from 'pino';
import { formatCidr, formatIPv4, parseCidr, tryParseIPv4, type Cidr } from '../net/ipv4.js';
import { allocatableCount, fitsConfig, parseNetworkConfig, toNetConf, type NetConf, type NetworkConfig } from './config.js';
import { closeClient, ConnectionFactory, type RedisClient } from './connection.js';
import { parseRedisUrl } from './endpoint.js';
import { ConfigError, ConfigMissingError, LeaseConflictError, LeaseLostError, OptionsError, OutOfSubnetsError } from './errors.js';
import { decodeLease, encodeAttrs, type Lease } from './lease.js';
import { resolveOptions, type LeaseStoreOptions, type ResolvedOptions } from './options.js';
import { pickFreeSubnets } from './policy.js';
import { keyLayout, LeaseRegistry, type CorruptLease, type KeyLayout, type RegistrySnapshot } from './registry.js';
import { LeaseRenewer, type KeepLeaseOptions } from './renewer.js';
import { LeaseWatcher, type LeaseWatch, type WatchOptions } from './watch.js';

/** What a node asks for when it starts. */
export interface AcquireRequest {
  /** The node's underlay address. A lease belongs to a public IP: a node that restarts gets its lease back. */
  readonly publicIP: string;
  /** The node's Kubernetes name, published with the lease. */
  readonly nodeName: string;
  /** Backend data to publish. Default {Port: Backend.Port of the network config}. */
  readonly backendData?: Readonly<Record<string, unknown>>;
  /**
   * The subnet in the node's previous subnet.env, reused if it is still free.
   * Host bits are ignored: FLANNEL_SUBNET=10.5.3.1/24 means 10.5.3.0/24.
   */
  readonly previousSubnet?: string;
}

/** How the lease was obtained, in the order acquireLease tries. */
export type AcquireSource = 'existing' | 'reservation' | 'previous' | 'new';

export interface AcquireResult {
  readonly lease: Lease;
  readonly source: AcquireSource;
}

/** All current leases and the change-stream position the listing corresponds to. */
export interface LeaseListing {
  /** Sorted by subnet address. */
  readonly leases: readonly Lease[];
  /** Stream ID of the last change included. */
  readonly seq: string;
  /** Stored values that are not leases (written by hand, say), left out of `leases`: the hash field and what is wrong. */
  readonly corrupt: readonly CorruptLease[];
}

/** Counters of values the store had to skip. */
export interface LeaseStoreStats {
  /** Stored lease values that could not be decoded (listings). */
  readonly corruptLeases: number;
  /** Change-stream entries that could not be decoded (watches). */
  readonly corruptEvents: number;
}

/** flannel's subnet manager, over Redis. */
export interface SubnetManager {
  /** The masked Redis address, for logs. */
  readonly address: string;
  /** The Redis keys in use. */
  readonly keys: Readonly<KeyLayout>;
  readonly stats: LeaseStoreStats;
  /** Whether the command connection is up right now (for health and metrics). */
  readonly connected: boolean;

  /** The stored network config with defaults filled in. Throws ConfigMissingError or ConfigError. */
  getNetworkConfig(): Promise<NetworkConfig>;
  /** Validates (ConfigError) and stores a net-conf. Returns it with defaults filled in. */
  setNetworkConfig(netConf: string | NetConf): Promise<NetworkConfig>;

  /**
   * Gets this node a lease: its existing lease (or reservation) by public IP,
   * else `previousSubnet` if free, else a random free subnet. Atomic against
   * any number of concurrent acquirers. Throws OutOfSubnetsError, or
   * LeaseConflictError when it lost the race maxAcquireAttempts times.
   */
  acquireLease(request: AcquireRequest): Promise<AcquireResult>;
  /** Extends the lease by leaseTtlMs (a reservation keeps no expiry). Throws LeaseLostError if it is gone. */
  renewLease(lease: Lease): Promise<Lease>;
  /** Deletes a lease; with `publicIP`, only if that IP owns it (else LeaseConflictError). False if there was none. */
  revokeLease(subnet: string, options?: { readonly publicIP?: string }): Promise<boolean>;
  /** Reserves `subnet` for `publicIP`: a lease that never expires and only that IP can take. */
  reserve(subnet: string, publicIP: string): Promise<Lease>;
  /** Deletes a reservation. False if there was none; LeaseConflictError if the subnet holds an ordinary lease. */
  unreserve(subnet: string): Promise<boolean>;
  /** Every live lease. */
  listLeases(): Promise<LeaseListing>;
  /** Removes expired leases now, recording an "expired" event for each. Returns how many. */
  reap(): Promise<number>;

  /** A change feed: a snapshot, then every change in order. See LeaseWatch. */
  watchLeases(options?: WatchOptions): LeaseWatch;
  /** Starts renewing `lease` a margin before each expiry; see LeaseRenewer. */
  keepLease(lease: Lease, options?: KeepLeaseOptions): LeaseRenewer;

  /** The Redis clock's current time, estimated from the last reply. Expiries are on this clock. */
  serverNow(): number;
  /** Stops every watch and renewer started from this store, and disconnects. */
  close(): Promise<void>;
}

/** Candidates offered per create attempt (see pickFreeSubnets). */
const CANDIDATES_PER_ATTEMPT = 16;

function canonicalSubnet(option: string, text: string, allowHostBits = false): Cidr {
  if (typeof text !== 'string') throw new OptionsError(option, `${option} must be a CIDR string such as "10.5.3.0/24"`);
  try {
    return parseCidr(text, { allowHostBits });
  } catch (cause) {
    throw new OptionsError(option, `${option}: ${(cause as Error).message}`, { cause });
  }
}

function checkIPv4(option: string, text: string): string {
  if (typeof text !== 'string' || tryParseIPv4(text) < 0) {
    throw new OptionsError(option, `${option} ${JSON.stringify(text)} is not an IPv4 address`);
  }
  return text;
}

class LeaseStore implements SubnetManager {
  readonly address: string;
  readonly keys: KeyLayout;
  private readonly options: ResolvedOptions;
  private readonly factory: ConnectionFactory;
  private readonly client: RedisClient;
  private readonly registry: LeaseRegistry;
  private readonly logger: Logger;
  private readonly watches = new Set<LeaseWatcher>();
  private readonly renewers = new Set<LeaseRenewer>();
  private closed = false;

  get connected(): boolean {
    return this.client.status === 'ready';
  }

  constructor(options: ResolvedOptions, factory: ConnectionFactory, client: RedisClient) {
    this.options = options;
    this.factory = factory;
    this.client = client;
    this.address = factory.address;
    this.logger = options.logger;
    this.keys = keyLayout(options.keyPrefix);
    // Renewals that failed while Redis was away are retried as soon as it is back.
    client.on('ready', () => {
      for (const renewer of this.renewers) renewer.retryNow();
    });
    this.registry = new LeaseRegistry(client, factory, this.keys, options.streamMaxLen, options.logger, {
      minReplicas: options.minReplicas,
      timeoutMs: options.replicationTimeoutMs,
    });
  }

  get stats(): LeaseStoreStats {
    return { ...this.registry.counters };
  }

  serverNow(): number {
    return this.registry.serverNow();
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    const text = await this.registry.getConfigText();
    if (text === null) throw new ConfigMissingError(this.keys.config);
    try {
      return parseNetworkConfig(text);
    } catch (cause) {
      if (!(cause instanceof ConfigError)) throw cause;
      throw new ConfigError(cause.field, `the network config stored at ${this.keys.config} is invalid: ${cause.message}; fix it with \`miniflannel config set\``, { cause });
    }
  }

  async setNetworkConfig(netConf: string | NetConf): Promise<NetworkConfig> {
    const doc: unknown = typeof netConf === 'string' ? parseJsonForConfig(netConf) : netConf;
    const config = parseNetworkConfig(doc);
    // Stored as written (flannel keeps defaults implicit), so later defaults still apply.
    await this.registry.setConfigText(JSON.stringify(doc));
    this.logger.info({ key: this.keys.config, config: toNetConf(config) }, 'network config stored');
    return config;
  }

  async acquireLease(request: AcquireRequest): Promise<AcquireResult> {
    const publicIP = checkIPv4('publicIP', request.publicIP);
    if (typeof request.nodeName !== 'string') throw new OptionsError('nodeName', 'nodeName must be a string');
    const backendData = request.backendData;
    if (backendData !== undefined && (typeof backendData !== 'object' || backendData === null || Array.isArray(backendData))) {
      throw new OptionsError('backendData', 'backendData must be a JSON object such as {"Port": 8285}');
    }
    const previous = request.previousSubnet === undefined ? undefined : canonicalSubnet('previousSubnet', request.previousSubnet, true);
    const config = await this.getNetworkConfig();
    const attrs = {
      publicIP,
      nodeName: request.nodeName,
      backendType: config.backend.type,
      backendData: backendData ?? { Port: config.backend.port },
    };
    const attrsJson = encodeAttrs(attrs);
    for (let attempt = 1; attempt <= this.options.maxAcquireAttempts; attempt++) {
      const snapshot = await this.registry.snapshot();
      const result = await this.tryAcquire(config, snapshot, publicIP, attrsJson, previous);
      if (result !== undefined) {
        const lease: Lease = { subnet: result.subnet, ...attrs, expiresAt: result.expiresAt };
        this.logger.info({ subnet: lease.subnet, publicIP, source: result.source, expiresAt: lease.expiresAt, attempt }, 'lease acquired');
        return { lease, source: result.source };
      }
      this.logger.debug({ publicIP, attempt }, 'lost an allocation race; starting over');
    }
    throw new LeaseConflictError(
      `could not acquire a lease for ${publicIP}: other nodes changed the lease table during each of ${this.options.maxAcquireAttempts} attempts (maxAcquireAttempts)`,
    );
  }

  /** One pass of flannel's policy against one listing. Undefined: lost a race, start over. */
  private async tryAcquire(
    config: NetworkConfig,
    snapshot: RegistrySnapshot,
    publicIP: string,
    attrsJson: string,
    previous: Cidr | undefined,
  ): Promise<{ subnet: string; expiresAt: number | null; source: AcquireSource } | undefined> {
    const ttl = this.options.leaseTtlMs;

    // 1. A lease (or reservation) this public IP already holds.
    const mine = [...snapshot.leases.values()].find((l) => l.publicIP === publicIP);
    if (mine !== undefined) {
      const reservation = mine.expiresAt === null;
      if (fitsConfig(config, parseCidr(mine.subnet), reservation)) {
        const claimed = await this.registry.claim(mine.subnet, publicIP, attrsJson, ttl);
        if (claimed.status !== 'ok') return undefined;
        return { subnet: mine.subnet, expiresAt: claimed.expiresAt, source: reservation ? 'reservation' : 'existing' };
      }
      if (reservation) {
        throw new LeaseConflictError(
          `subnet ${mine.subnet} is reserved for ${publicIP} but does not fit the network config ` +
            `(Network ${formatCidr(config.network)}, SubnetLen ${config.subnetLen}); remove the reservation or fix the config`,
        );
      }
      this.logger.info({ subnet: mine.subnet, publicIP }, 'lease for this public IP does not fit the network config; revoking it');
      await this.registry.remove(mine.subnet, publicIP, 'any');
    }

    // 2. The subnet this node had before, if nobody holds it.
    let candidates: string[] | undefined;
    let source: AcquireSource = 'new';
    if (previous !== undefined) {
      const text = formatCidr(previous);
      if (!fitsConfig(config, previous, false)) {
        this.logger.info({ previousSubnet: text }, 'previous subnet does not fit the network config; not reusing it');
      } else if (snapshot.occupied.has(text)) {
        this.logger.info({ previousSubnet: text }, 'previous subnet is held by another node; not reusing it');
      } else {
        candidates = [text];
        source = 'previous';
      }
    }

    // 3. A random free subnet.
    if (candidates === undefined) {
      const occupied = new Set<number>();
      for (const text of snapshot.occupied) {
        const address = tryParseIPv4(text.slice(0, text.indexOf('/')));
        if (address >= 0) occupied.add(address);
      }
      const picks = pickFreeSubnets(config, occupied, CANDIDATES_PER_ATTEMPT);
      if (picks.length === 0) throw this.outOfSubnets(config);
      candidates = picks.map((network) => formatCidr({ network, prefixLength: config.subnetLen }));
    }

    const created = await this.registry.create(publicIP, attrsJson, ttl, candidates);
    if (created.status !== 'ok') return undefined;
    return { subnet: created.subnet, expiresAt: created.expiresAt, source };
  }

  private outOfSubnets(config: NetworkConfig): OutOfSubnetsError {
    const count = allocatableCount(config);
    return new OutOfSubnetsError(
      `out of subnets: all ${count} subnets of /${config.subnetLen} from SubnetMin ${formatIPv4(config.subnetMin)} ` +
        `to SubnetMax ${formatIPv4(config.subnetMax)} in Network ${formatCidr(config.network)} are leased or reserved; ` +
        `revoke unused leases or widen the range`,
    );
  }

  async renewLease(lease: Lease): Promise<Lease> {
    const result = await this.registry.claim(lease.subnet, lease.publicIP, encodeAttrs(lease), this.options.leaseTtlMs);
    switch (result.status) {
      case 'ok':
        return { ...lease, expiresAt: result.expiresAt };
      case 'missing':
        throw new LeaseLostError(lease.subnet, 'missing', `the lease on ${lease.subnet} for ${lease.publicIP} is gone: it was revoked or it expired`);
      case 'taken':
        throw new LeaseLostError(lease.subnet, 'taken', `the lease on ${lease.subnet} now belongs to ${result.owner || 'another node'}, not ${lease.publicIP}`);
    }
  }

  async revokeLease(subnet: string, options?: { readonly publicIP?: string }): Promise<boolean> {
    const text = formatCidr(canonicalSubnet('subnet', subnet));
    const publicIP = options?.publicIP === undefined ? null : checkIPv4('publicIP', options.publicIP);
    const result = await this.registry.remove(text, publicIP, 'any');
    if (result.status === 'taken') {
      throw new LeaseConflictError(`the lease on ${text} belongs to ${result.owner || 'another node'}, not ${publicIP ?? ''}; not revoked`);
    }
    if (result.status === 'ok') this.logger.info({ subnet: text }, 'lease revoked');
    return result.status === 'ok';
  }

  async reserve(subnet: string, publicIP: string): Promise<Lease> {
    const cidr = canonicalSubnet('subnet', subnet);
    const text = formatCidr(cidr);
    checkIPv4('publicIP', publicIP);
    const config = await this.getNetworkConfig();
    if (!fitsConfig(config, cidr, true)) {
      throw new OptionsError('subnet', `subnet ${text} does not fit the network config: it must be a /${config.subnetLen} inside ${formatCidr(config.network)}`);
    }
    const attrsJson = encodeAttrs({ publicIP, nodeName: '', backendType: config.backend.type, backendData: { Port: config.backend.port } });
    const result = await this.registry.reserve(text, publicIP, attrsJson);
    switch (result.status) {
      case 'taken':
        throw new LeaseConflictError(`subnet ${text} is leased to ${result.owner || 'another node'}; revoke that lease before reserving it for ${publicIP}`);
      case 'ip-held':
        throw new LeaseConflictError(`${publicIP} already holds ${result.subnet}; reserve that subnet, or revoke it first`);
      case 'ok': {
        const decoded = decodeLease(text, result.attrsJson, null);
        if (!decoded.ok) throw new LeaseConflictError(`subnet ${text} is held by ${publicIP} but its stored value is corrupt (${decoded.reason}); revoke it first`);
        this.logger.info({ subnet: text, publicIP, change: result.change }, 'subnet reserved');
        return decoded.lease;
      }
    }
  }

  async unreserve(subnet: string): Promise<boolean> {
    const text = formatCidr(canonicalSubnet('subnet', subnet));
    const result = await this.registry.remove(text, null, 'reservation');
    if (result.status === 'not-reserved') {
      throw new LeaseConflictError(`subnet ${text} holds an ordinary lease, not a reservation; use revoke to delete it`);
    }
    if (result.status === 'ok') this.logger.info({ subnet: text }, 'reservation removed');
    return result.status === 'ok';
  }

  async listLeases(): Promise<LeaseListing> {
    const snapshot = await this.registry.snapshot();
    const leases = [...snapshot.leases.values()].sort((a, b) => parseCidr(a.subnet).network - parseCidr(b.subnet).network);
    return { leases, seq: snapshot.streamId, corrupt: snapshot.corrupt };
  }

  reap(): Promise<number> {
    return this.registry.reap();
  }

  watchLeases(options?: WatchOptions): LeaseWatch {
    this.assertOpen();
    const watch = new LeaseWatcher(this.registry, this.factory, this.options, options ?? {}, () => this.watches.delete(watch));
    this.watches.add(watch);
    return watch;
  }

  keepLease(lease: Lease, options?: KeepLeaseOptions): LeaseRenewer {
    this.assertOpen();
    const renewer = new LeaseRenewer(this, lease, {
      ...options,
      renewMarginMs: options?.renewMarginMs ?? this.options.renewMarginMs,
      logger: options?.logger ?? this.logger,
    });
    renewer.once('stopped', () => this.renewers.delete(renewer));
    this.renewers.add(renewer);
    renewer.start();
    return renewer;
  }

  private assertOpen(): void {
    if (this.closed) throw new OptionsError('close', 'the lease store is closed');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const renewer of this.renewers) renewer.stop();
    await Promise.all([...this.watches].map((w) => w.close()));
    closeClient(this.client);
    this.logger.info({ address: this.address }, 'lease store closed');
  }
}

function parseJsonForConfig(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new ConfigError('(document)', `the network config is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Connects to Redis and returns the subnet manager. With retry "fail-fast"
 * an unreachable Redis fails within connectTimeoutMs (StoreUnavailableError
 * naming the address); with "backoff" it keeps trying until `signal` aborts.
 */
export async function connectLeaseStore(options: LeaseStoreOptions): Promise<SubnetManager> {
  const resolved = resolveOptions(options);
  const factory = new ConnectionFactory(parseRedisUrl(resolved.url), resolved);
  const logger = resolved.logger;
  const client = factory.create('command', `miniflannel:${process.pid}`);
  let ready = false;
  client.on('error', (err: Error) => logger.debug({ address: factory.address, err: err.message }, 'Redis connection error'));
  client.on('close', () => {
    if (ready) logger.warn({ address: factory.address }, 'Redis connection lost');
    ready = false;
  });
  client.on('ready', () => {
    if (!ready) logger.info({ address: factory.address }, 'Redis connection ready');
    ready = true;
  });
  await factory.connect(client, logger, resolved.signal);
  logger.info({ address: factory.address, keyPrefix: resolved.keyPrefix, retry: resolved.retry.mode, minReplicas: resolved.minReplicas }, 'lease store connected');
  return new LeaseStore(resolved, factory, client);
}
