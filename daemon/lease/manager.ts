// The subnet manager: what the daemon and the CLI use. The allocation policy
// is flannel's (reuse my lease, else my previous subnet, else a free one),
// decided inside Redis in one atomic step with no listing (scripts.ts,
// CREATE); this side checks that a lease found for the node still fits the
// config, and starts over, after a jittered pause, when it lost a race.

import type { Logger } from 'pino';
import { parseCidr, tryParseIPv4, type Cidr } from '../net/ipv4.js';
import { formatIPv6, parseCidr6, parseIPv6, type Cidr6 } from '../net/ipv6.js';
import { allocatableCount, allocatableRange, describeAllocatable, layoutChanges, misfitOf, parseNetworkConfig, toNetConf, type NetConf, type NetworkConfig } from './config.js';
import { CommandLink, ConnectionFactory } from './connection.js';
import { parseRedisUrl } from './endpoint.js';
import {
  ConfigChangeRefusedError,
  ConfigError,
  ConfigMissingError,
  layoutChangeUnderLeases,
  LeaseConflictError,
  LeaseLostError,
  OptionsError,
  OutOfSubnetsError,
  type LayoutField,
} from './errors.js';
import { LeaseKeeper, type ClaimOutcome, type KeepLeaseOptions, type LeaseKeeping } from './keeper.js';
import { compareSubnets, decodeLease, encodeAttrs, formatSubnet, holderOf, ownerAddress, ownerLogFields, type Lease } from './lease.js';
import { backoffDelay, resolveOptions, type LeaseStoreOptions, type ResolvedOptions } from './options.js';
import { keyLayout, LeaseRegistry, type CorruptLease, type KeyLayout } from './registry.js';
import { LeaseWatcher, type LeaseWatch, type WatchOptions } from './watch.js';

/** What a node asks for when it starts. */
export interface AcquireRequest {
  /**
   * The node's IPv4 underlay address. A lease belongs to a public IP: a node
   * that restarts gets its lease back. Only a node without one (IPv6-only, over
   * an IPv6 underlay) leaves it out; its lease then belongs to its publicIPv6.
   */
  readonly publicIP?: string;
  /** The node's IPv6 underlay address, published with the lease as PublicIPv6 (RFC 5952 form). Default: none. */
  readonly publicIPv6?: string;
  /** The node's Kubernetes name, published with the lease. */
  readonly nodeName: string;
  /** Backend data to publish. Default {Port: Backend.Port of the network config}. */
  readonly backendData?: Readonly<Record<string, unknown>>;
  /**
   * The subnet in the node's previous subnet.env, reused if it is still free:
   * IPv4, or IPv6 in an IPv6-only network. Host bits are ignored:
   * FLANNEL_SUBNET=10.5.3.1/24 means 10.5.3.0/24.
   */
  readonly previousSubnet?: string;
}

/** How the lease was obtained, in the order acquireLease tries. */
export type AcquireSource = 'existing' | 'reservation' | 'previous' | 'new';

export interface AcquireResult {
  readonly lease: Lease;
  readonly source: AcquireSource;
}

/** What `reserve` did to the subnet. */
export type ReserveOutcome =
  /** A new reservation. */
  | 'created'
  /** The public IP's own lease now never expires (and names the node, if one was given). */
  | 'converted'
  /** The reservation already existed; its node name changed. */
  | 'updated'
  /** The reservation already existed as asked; nothing was written. */
  | 'unchanged';

export interface Reservation {
  /** The reservation as stored after the call. */
  readonly lease: Lease;
  readonly outcome: ReserveOutcome;
}

/** How a config write treats the subnets already handed out. */
export interface ConfigWriteOptions {
  /**
   * Change the subnet layout (Network, SubnetLen, IPv6Network, IPv6SubnetLen,
   * or turn IPv6 off) even though leases exist (their nodes keep their old
   * subnets until they restart). Default false: such a write throws
   * ConfigChangeRefusedError.
   */
  readonly force?: boolean;
  /** Validate and decide, the lease guard included, but store nothing. Default false. */
  readonly dryRun?: boolean;
}

/** What a config write did (with dryRun: would do). */
export interface ConfigWrite {
  /** The config written, defaults filled in. */
  readonly config: NetworkConfig;
  /** The config it replaced: null if none was stored, 'invalid' if the stored one broke the rules. */
  readonly previous: NetworkConfig | null | 'invalid';
  /** The layout fields it changed while leases existed (possible only with force). */
  readonly moved: readonly LayoutField[];
  /** The live leases, reservations included, when it was written. */
  readonly leases: number;
}

/** All current leases. */
export interface LeaseListing {
  /** Sorted by subnet address. */
  readonly leases: readonly Lease[];
  /** Stream ID of the last change before the listing began. */
  readonly seq: string;
  /** Stored values that are not leases (written by hand, say), left out of `leases`: the hash field and what is wrong. */
  readonly corrupt: readonly CorruptLease[];
}

/** Counters of values the store had to skip. */
export interface LeaseStoreStats {
  /** Stored lease values that could not be decoded (listings). */
  readonly corruptLeases: number;
  /** Changes that could not be decoded (watches). */
  readonly corruptEvents: number;
}

/** How the stored network config compares with the one a node runs with; see ensureNetworkConfig. */
export type ConfigCheck =
  | { readonly status: 'stored' }
  | { readonly status: 'same' }
  | { readonly status: 'different'; readonly stored: string; readonly why: string };

/** flannel's subnet manager, over Redis. */
export interface SubnetManager {
  /** The masked Redis address, for logs. */
  readonly address: string;
  /** The Redis keys in use. */
  readonly keys: Readonly<KeyLayout>;
  readonly stats: LeaseStoreStats;
  /** Whether the store's long-lived connection (a watch's, else the command connection) is up right now. */
  readonly connected: boolean;

  /** The stored network config with defaults filled in. Throws ConfigMissingError or ConfigError. */
  getNetworkConfig(): Promise<NetworkConfig>;
  /**
   * Validates (ConfigError) and stores a net-conf, as written. A change of
   * the subnet layout (see layoutChanges) while leases exist throws
   * ConfigChangeRefusedError unless `force`; the check and the write are one
   * atomic step. Turning IPv6 on is not such a change.
   */
  setNetworkConfig(netConf: string | NetConf, options?: ConfigWriteOptions): Promise<ConfigWrite>;
  /**
   * What a running node does when the store may have lost its data: stores
   * `config` if the store holds none, and otherwise says whether the stored
   * one is the same. Never overwrites a stored config.
   */
  ensureNetworkConfig(config: NetworkConfig): Promise<ConfigCheck>;

  /**
   * Gets this node a lease: its existing lease (or reservation) by public IP,
   * else `previousSubnet` if free, else a free subnet. One atomic script in
   * the common case, with no listing. Throws OutOfSubnetsError, or
   * LeaseConflictError when it lost the race maxAcquireAttempts times.
   */
  acquireLease(request: AcquireRequest): Promise<AcquireResult>;
  /**
   * Extends the lease by leaseTtlMs (a reservation keeps no expiry), or puts
   * it back if it is gone without having been revoked. Throws LeaseLostError
   * if it was revoked or another node holds the subnet.
   */
  renewLease(lease: Lease): Promise<Lease>;
  /** Deletes a lease; with `publicIP`, only if that IP owns it (else LeaseConflictError). False if there was none. The owner's node stops. */
  revokeLease(subnet: string, options?: { readonly publicIP?: string }): Promise<boolean>;
  /**
   * Reserves `subnet` for `publicIP` (or, for a node with no IPv4 underlay
   * address, its IPv6 one), in one atomic step: a lease that never expires
   * and only that address can take. `nodeName` names the node until it
   * claims the reservation itself; undefined keeps the stored name. Throws
   * OptionsError if the subnet does not fit the config, LeaseConflictError
   * if another IP holds it or the IP holds another subnet.
   */
  reserve(subnet: string, publicIP: string, nodeName?: string): Promise<Reservation>;
  /** Deletes a reservation. False if there was none; LeaseConflictError if the subnet holds an ordinary lease. */
  unreserve(subnet: string): Promise<boolean>;
  /** Every live lease, read in chunks; writes nothing. */
  listLeases(): Promise<LeaseListing>;
  /** Removes expired leases now, recording an "expired" event for each. Returns how many. */
  reap(): Promise<number>;

  /** A change feed: a snapshot, then every change in order. See LeaseWatch. */
  watchLeases(options?: WatchOptions): LeaseWatch;
  /** Keeps `lease`: renews it, puts it back if the store loses it, and takes a share of the reaping; see LeaseKeeper. */
  keepLease(lease: Lease, options?: KeepLeaseOptions): LeaseKeeper;

  /** The Redis clock's current time, estimated from the last reply. Expiries are on this clock. */
  serverNow(): number;
  /** Stops every watch and keeper started from this store, and disconnects. */
  close(): Promise<void>;
}

/** A subnet of either family: IPv6 ones are the lease keys of IPv6-only networks. */
function canonicalSubnet(option: string, text: string, allowHostBits = false): Cidr | Cidr6 {
  if (typeof text !== 'string') throw new OptionsError(option, `${option} must be a CIDR string such as "10.5.3.0/24"`);
  try {
    return text.includes(':') ? parseCidr6(text, { allowHostBits }) : parseCidr(text, { allowHostBits });
  } catch (cause) {
    throw new OptionsError(option, `${option}: ${(cause as Error).message}`, { cause });
  }
}

/** The address in RFC 5952 form, so one address is always stored as one text. */
function canonicalIPv6Option(option: string, text: string): string {
  if (typeof text !== 'string') throw new OptionsError(option, `${option} must be an IPv6 address string such as "fd00::1"`);
  try {
    return formatIPv6(parseIPv6(text));
  } catch (cause) {
    throw new OptionsError(option, `${option}: ${(cause as Error).message}`, { cause });
  }
}

function checkIPv4Option(option: string, text: string): string {
  if (typeof text !== 'string' || tryParseIPv4(text) < 0) {
    throw new OptionsError(option, `${option} ${JSON.stringify(text)} is not an IPv4 address`);
  }
  return text;
}

/** An owner's address as the store knows it (see ownerAddress): an IPv4 PublicIP, or the RFC 5952 form of an IPv6 one. */
function ownerOption(option: string, text: string): string {
  if (typeof text === 'string' && text.includes(':')) return canonicalIPv6Option(option, text);
  return checkIPv4Option(option, text);
}

/** Config writes that lost a race with another writer before one goes through. */
const CONFIG_WRITE_ATTEMPTS = 5;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long an acquire waits at most for a store that is settling after losing its data (see SETTLE_MS). */
const MAX_SETTLE_WAIT_MS = 120_000;

/** Pause between acquire attempts after a lost race: 50 ms doubling to 1 s, with jitter. */
const ACQUIRE_BACKOFF = { initialDelayMs: 50, maxDelayMs: 1_000 };

/** The subnet an acquire got, before it becomes a Lease. */
interface Held {
  readonly subnet: string;
  readonly cidr: Cidr | Cidr6;
  readonly expiresAt: number | null;
  readonly source: AcquireSource;
}

class LeaseStore implements SubnetManager, LeaseKeeping {
  readonly address: string;
  readonly keys: KeyLayout;
  private readonly options: ResolvedOptions;
  private readonly factory: ConnectionFactory;
  private readonly link: CommandLink;
  private readonly registry: LeaseRegistry;
  private readonly logger: Logger;
  private readonly watches = new Set<LeaseWatcher>();
  private readonly keepers = new Set<LeaseKeeper>();
  /** Leases in the store, as the last write or reap reported: each keeper's share of the reaping depends on it. */
  private leaseCount = 1;
  private closed = false;

  constructor(options: ResolvedOptions, factory: ConnectionFactory, link: CommandLink) {
    this.options = options;
    this.factory = factory;
    this.link = link;
    this.address = factory.address;
    this.logger = options.logger;
    this.keys = keyLayout(options.keyPrefix);
    this.registry = new LeaseRegistry(link, factory, this.keys, options.streamMaxLen, options.logger, { minReplicas: options.minReplicas, timeoutMs: options.replicationTimeoutMs });
  }

  get connected(): boolean {
    if (this.watches.size > 0) return [...this.watches].some((watch) => watch.connected);
    return this.link.connected;
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
    return this.parseStoredConfig(text);
  }

  private parseStoredConfig(text: string): NetworkConfig {
    try {
      return parseNetworkConfig(text);
    } catch (cause) {
      if (!(cause instanceof ConfigError)) throw cause;
      throw new ConfigError(cause.field, `the network config stored at ${this.keys.config} is invalid: ${cause.message}; fix it with \`miniflannel config set\``, { cause });
    }
  }

  async setNetworkConfig(netConf: string | NetConf, options?: ConfigWriteOptions): Promise<ConfigWrite> {
    const doc: unknown = typeof netConf === 'string' ? parseJsonForConfig(netConf) : netConf;
    const config = parseNetworkConfig(doc);
    const force = options?.force === true;
    const dryRun = options?.dryRun === true;
    // Stored as written (flannel keeps defaults implicit), so later defaults still apply.
    const text = JSON.stringify(doc);
    for (let attempt = 1; attempt <= CONFIG_WRITE_ATTEMPTS; attempt++) {
      const storedText = await this.registry.getConfigText();
      const previous = storedText === null ? null : this.tryParseStoredConfig(storedText);
      const changes = previous === null || previous === 'invalid' ? [] : layoutChanges(previous, config);
      const result = await this.registry.writeConfigText(storedText, text, changes.length > 0 && !force, dryRun);
      if (result.status === 'changed') continue;
      if (result.status === 'refused') throw new ConfigChangeRefusedError(changes, result.leases);
      const moved = result.leases > 0 ? changes : [];
      if (!dryRun) {
        this.logger.info({ key: this.keys.config, config: toNetConf(config) }, 'network config stored');
        if (moved.length > 0) this.logger.warn({ key: this.keys.config, moved, leases: result.leases }, `forced a change of ${layoutChangeUnderLeases(moved, result.leases)}`);
      }
      return { config, previous, moved, leases: result.leases };
    }
    throw new LeaseConflictError(`the network config at ${this.keys.config} changed during each of ${CONFIG_WRITE_ATTEMPTS} attempts to write it; try again`);
  }

  private tryParseStoredConfig(text: string): NetworkConfig | 'invalid' {
    try {
      return parseNetworkConfig(text);
    } catch (err) {
      if (err instanceof ConfigError) return 'invalid';
      throw err;
    }
  }

  async ensureNetworkConfig(config: NetworkConfig): Promise<ConfigCheck> {
    const mine = JSON.stringify(toNetConf(config));
    const result = await this.registry.ensureConfigText(mine);
    if (result.stored) return { status: 'stored' };
    let stored: NetworkConfig;
    try {
      stored = parseNetworkConfig(result.current);
    } catch (err) {
      return { status: 'different', stored: result.current, why: `it is invalid: ${(err as Error).message}` };
    }
    const theirs = JSON.stringify(toNetConf(stored));
    if (theirs === mine) return { status: 'same' };
    return { status: 'different', stored: theirs, why: `it is ${theirs}, this node runs with ${mine}` };
  }

  async acquireLease(request: AcquireRequest): Promise<AcquireResult> {
    if (request.publicIP === undefined && request.publicIPv6 === undefined) throw new OptionsError('publicIP', 'publicIP is required unless the node has a publicIPv6');
    const publicIP = request.publicIP === undefined ? {} : { publicIP: checkIPv4Option('publicIP', request.publicIP) };
    if (typeof request.nodeName !== 'string') throw new OptionsError('nodeName', 'nodeName must be a string');
    const backendData = request.backendData;
    if (backendData !== undefined && (typeof backendData !== 'object' || backendData === null || Array.isArray(backendData))) {
      throw new OptionsError('backendData', 'backendData must be a JSON object such as {"Port": 8285}');
    }
    const publicIPv6 = request.publicIPv6 === undefined ? {} : { publicIPv6: canonicalIPv6Option('publicIPv6', request.publicIPv6) };
    const previous = request.previousSubnet === undefined ? undefined : canonicalSubnet('previousSubnet', request.previousSubnet, true);
    const config = await this.getNetworkConfig();
    const attrs = {
      ...publicIP,
      ...publicIPv6,
      nodeName: request.nodeName,
      backendType: config.backend.type,
      backendData: backendData ?? { Port: config.backend.port },
    };
    const attrsJson = encodeAttrs(attrs);
    const owner = ownerAddress(attrs);
    let previousText: string | undefined;
    if (previous !== undefined) {
      previousText = formatSubnet(previous);
      const misfit = misfitOf(config, previous, false);
      if (misfit !== undefined) {
        this.logger.info({ previousSubnet: previousText, misfit }, 'previous subnet does not fit the network config; not reusing it');
        previousText = undefined;
      }
    }
    const range = allocatableRange(config);
    const ttl = this.options.leaseTtlMs;
    const settleBy = Date.now() + MAX_SETTLE_WAIT_MS;
    for (let attempt = 1; attempt <= this.options.maxAcquireAttempts; attempt++) {
      const created = await this.registry.create(owner, attrsJson, ttl, previousText, range, Math.floor(Math.random() * range.count));
      let result: Held | undefined;
      switch (created.status) {
        case 'full':
          throw this.outOfSubnets(config);
        case 'settling': {
          // The running nodes are putting back what the store lost: a free-looking subnet may still be theirs.
          if (Date.now() >= settleBy) throw new LeaseConflictError(`the store is still being rebuilt by its nodes after losing its data (more than ${MAX_SETTLE_WAIT_MS / 1000} s); try again`);
          this.logger.info({ ...ownerLogFields(attrs), waitMs: created.waitMs }, 'the store lost its data and its nodes are putting their leases back; waiting before taking a new subnet');
          await sleep(created.waitMs + Math.random() * 500);
          attempt--;
          continue;
        }
        case 'ok':
          this.leaseCount = created.leases;
          if (previousText !== undefined && created.source === 'new') {
            this.logger.info({ previousSubnet: previousText }, 'previous subnet is held by another node; not reusing it');
          }
          result = { subnet: created.subnet, cidr: created.cidr, expiresAt: created.expiresAt, source: created.source };
          break;
        case 'ip-held':
          result = await this.reuseHeld(config, created.subnet, created.cidr, created.reservation, owner, attrsJson);
          if (result === undefined && this.logger.isLevelEnabled('debug')) this.logger.debug({ ...ownerLogFields(attrs), attempt }, 'lost a race for this node\'s own lease; starting over');
          break;
      }
      if (result !== undefined) {
        const lease: Lease = { subnet: result.subnet, cidr: result.cidr, ...attrs, expiresAt: result.expiresAt };
        this.logger.info({ subnet: lease.subnet, ...ownerLogFields(attrs), source: result.source, expiresAt: lease.expiresAt, attempt }, 'lease acquired');
        return { lease, source: result.source };
      }
      await sleep(backoffDelay(ACQUIRE_BACKOFF, attempt));
    }
    throw new LeaseConflictError(
      `could not acquire a lease for ${owner}: other writers changed its lease during each of ${this.options.maxAcquireAttempts} attempts (maxAcquireAttempts)`,
    );
  }

  /**
   * The lease (or reservation) this owner already holds: claimed if it
   * still fits the config, else released so the next attempt allocates anew.
   * Undefined: start over.
   */
  private async reuseHeld(config: NetworkConfig, subnet: string, cidr: Cidr | Cidr6, reservation: boolean, owner: string, attrsJson: string): Promise<Held | undefined> {
    const misfit = misfitOf(config, cidr, reservation);
    if (misfit === undefined) {
      const claimed = await this.registry.claim(subnet, owner, attrsJson, this.options.leaseTtlMs, reservation ? 'reservation' : 'lease');
      if (claimed.status !== 'ok') return undefined;
      this.leaseCount = claimed.leases;
      return { subnet, cidr, expiresAt: claimed.expiresAt, source: reservation ? 'reservation' : 'existing' };
    }
    if (reservation) {
      throw new LeaseConflictError(
        `subnet ${subnet} is reserved for ${owner} but does not fit the network config (${misfit}); remove the reservation or fix the config`,
      );
    }
    this.logger.info({ subnet, [owner.includes(':') ? 'publicIPv6' : 'publicIP']: owner, misfit }, 'lease for this node does not fit the network config; releasing it');
    await this.registry.remove(subnet, owner, 'any', false);
    return undefined;
  }

  private outOfSubnets(config: NetworkConfig): OutOfSubnetsError {
    const count = allocatableCount(config);
    return new OutOfSubnetsError(
      `out of subnets: all ${count} subnets of /${(config.ipv4 ?? config.ipv6)!.subnetLen} from ${describeAllocatable(config)} are leased or reserved; ` +
        `revoke unused leases or widen the range`,
    );
  }

  async claimLease(lease: Lease): Promise<ClaimOutcome> {
    const kind = lease.expiresAt === null ? 'reservation' : 'lease';
    const owner = ownerAddress(lease);
    const result = await this.registry.claim(lease.subnet, owner, encodeAttrs(lease), this.options.leaseTtlMs, kind);
    switch (result.status) {
      case 'ok':
        this.leaseCount = result.leases;
        return { lease: { ...lease, expiresAt: result.expiresAt }, change: result.change, leases: result.leases };
      case 'revoked':
        throw new LeaseLostError(lease.subnet, 'revoked', `the lease on ${lease.subnet} for ${owner} was revoked`);
      case 'taken':
        throw new LeaseLostError(lease.subnet, 'taken', `the lease on ${lease.subnet} now belongs to ${result.owner || 'another node'}, not ${owner}`);
    }
  }

  async renewLease(lease: Lease): Promise<Lease> {
    return (await this.claimLease(lease)).lease;
  }

  async reapExpired(): Promise<{ reaped: number; leases: number }> {
    const result = await this.registry.reap();
    this.leaseCount = result.leases;
    return result;
  }

  async revokeLease(subnet: string, options?: { readonly publicIP?: string }): Promise<boolean> {
    const text = formatSubnet(canonicalSubnet('subnet', subnet));
    const publicIP = options?.publicIP === undefined ? null : ownerOption('publicIP', options.publicIP);
    const result = await this.registry.remove(text, publicIP, 'any', true);
    if (result.status === 'taken') {
      throw new LeaseConflictError(`the lease on ${text} belongs to ${result.owner || 'another node'}, not ${publicIP ?? ''}; not revoked`);
    }
    if (result.status === 'ok') this.logger.info({ subnet: text }, 'lease revoked');
    return result.status === 'ok';
  }

  async reserve(subnet: string, publicIP: string, nodeName?: string): Promise<Reservation> {
    const cidr = canonicalSubnet('subnet', subnet);
    const text = formatSubnet(cidr);
    const owner = ownerOption('publicIP', publicIP);
    if (nodeName !== undefined && typeof nodeName !== 'string') throw new OptionsError('nodeName', 'nodeName must be a string');
    const config = await this.getNetworkConfig();
    const misfit = misfitOf(config, cidr, true);
    if (misfit !== undefined) throw new OptionsError('subnet', misfit);
    const address = owner.includes(':') ? { publicIPv6: owner } : { publicIP: owner };
    const attrsJson = encodeAttrs({ ...address, nodeName: nodeName ?? '', backendType: config.backend.type, backendData: { Port: config.backend.port } });
    const result = await this.registry.reserve(text, owner, attrsJson, nodeName);
    switch (result.status) {
      case 'taken': {
        const { holder } = result;
        if (holder === undefined) throw new LeaseConflictError(`subnet ${text} is already taken by another node (its stored value is corrupt); revoke it first`);
        throw new LeaseConflictError(`subnet ${text} is already taken: it is ${holder.expiresAt === null ? 'reserved for' : 'leased to'} ${holderOf(holder)}; revoke it first`);
      }
      case 'ip-held':
        throw new LeaseConflictError(`${owner} already holds ${result.subnet}; reserve that subnet, or revoke it first`);
      case 'unnamed':
        throw new LeaseConflictError(`subnet ${text} is held by ${owner}, but its stored value is not in the form miniflannel writes, so its node cannot be renamed; revoke it and reserve it again`);
      case 'ok': {
        const decoded = decodeLease(text, result.attrsJson, null);
        if (!decoded.ok) throw new LeaseConflictError(`subnet ${text} is held by ${owner} but its stored value is corrupt (${decoded.reason}); revoke it first`);
        this.logger.info({ subnet: text, ...address, nodeName: decoded.lease.nodeName, outcome: result.change }, 'subnet reserved');
        return { lease: decoded.lease, outcome: result.change };
      }
    }
  }

  async unreserve(subnet: string): Promise<boolean> {
    const text = formatSubnet(canonicalSubnet('subnet', subnet));
    const result = await this.registry.remove(text, null, 'reservation', true);
    if (result.status === 'not-reserved') {
      throw new LeaseConflictError(`subnet ${text} holds an ordinary lease, not a reservation; use revoke to delete it`);
    }
    if (result.status === 'ok') this.logger.info({ subnet: text }, 'reservation removed');
    return result.status === 'ok';
  }

  async listLeases(): Promise<LeaseListing> {
    const position = await this.registry.position();
    const listing = await this.registry.list();
    const leases = [...listing.leases.values()].sort((a, b) => compareSubnets(a.cidr, b.cidr));
    return { leases, seq: position.streamId, corrupt: listing.corrupt };
  }

  async reap(): Promise<number> {
    return (await this.reapExpired()).reaped;
  }

  watchLeases(options?: WatchOptions): LeaseWatch {
    this.assertOpen();
    const watch = new LeaseWatcher(this.registry, this.factory, this.options, options ?? {}, {
      // The subscription is back, so Redis is: claims that failed meanwhile are retried now.
      onReconnected: () => {
        for (const keeper of this.keepers) keeper.retryNow();
      },
      onClosed: () => this.watches.delete(watch),
    });
    this.watches.add(watch);
    return watch;
  }

  keepLease(lease: Lease, options?: KeepLeaseOptions): LeaseKeeper {
    this.assertOpen();
    const keeper = new LeaseKeeper(this, lease, {
      ...options,
      renewMarginMs: options?.renewMarginMs ?? this.options.renewMarginMs,
      leaseTtlMs: this.options.leaseTtlMs,
      reapIntervalMs: this.options.reapIntervalMs,
      leases: this.leaseCount,
      logger: options?.logger ?? this.logger,
    });
    keeper.once('stopped', () => this.keepers.delete(keeper));
    this.keepers.add(keeper);
    keeper.start();
    return keeper;
  }

  private assertOpen(): void {
    if (this.closed) throw new OptionsError('close', 'the lease store is closed');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const keeper of this.keepers) keeper.stop();
    await Promise.all([...this.watches].map((w) => w.close()));
    this.link.close();
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
 * Opens the subnet manager. With retry "fail-fast" it connects at once, and
 * an unreachable Redis fails within connectTimeoutMs (StoreUnavailableError
 * naming the address). With "backoff" nothing connects until the first
 * operation, and each operation fails (to be retried by its caller) while
 * Redis is away.
 */
export async function connectLeaseStore(options: LeaseStoreOptions): Promise<SubnetManager> {
  const resolved = resolveOptions(options);
  const factory = new ConnectionFactory(parseRedisUrl(resolved.url), resolved);
  const link = new CommandLink(factory, resolved.logger, `miniflannel:${process.pid}`, resolved.commandIdleMs);
  // fail-fast: Redis unreachable, or refusing us, is said at once (a PING also meets a missing password).
  if (resolved.retry.mode === 'fail-fast') {
    await link.run((client) => client.ping()).catch((err: unknown) => {
      link.close();
      throw factory.wrap(err, 'connecting');
    });
  }
  resolved.logger.info({ address: factory.address, keyPrefix: resolved.keyPrefix, retry: resolved.retry.mode, minReplicas: resolved.minReplicas }, 'lease store opened');
  return new LeaseStore(resolved, factory, link);
}
