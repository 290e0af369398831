/**
 * The node's wiring: the only place where the lease store meets the data
 * plane. Start-up, in flannel's order:
 *   1. acquire: read the network config from Redis and get a lease (this
 *      node's own, else the previous subnet.env's, else a free one),
 *      waiting with backoff, and saying why on /readyz and in the log, while
 *      Redis is unreachable or holds no usable config;
 *   2. open the data path: the TUN (the subnet's address as /32, MTU =
 *      underlay - 28, the whole cluster network routed into it; with IPv6
 *      enabled, the IPv6 subnet's address as /128 and the IPv6 cluster
 *      network routed into it too; an IPv6-only node has the IPv6 side
 *      only) and the UDP transport;
 *   3. publish the node files: subnet.env and the CNI conflist; install the
 *      masquerade rules if asked (ip6tables too, with IPv6);
 *   4. follow: the lease watch feeds the peer table one change at a time, and
 *      the lease keeper renews the lease and re-asserts it, and the config,
 *      when the store loses its data.
 * Static mode (--static-*) skips the store and takes peers from flags.
 * Each step is a function below, and tells NodeStatus (status.ts), the one
 * object behind /readyz, /status and /metrics, what it made.
 *
 * Stopping (SIGTERM) removes the TUN, its routes and the rules but keeps the
 * lease, so a restarted daemon gets the same subnet and pods keep their
 * addresses. Only a revoked lease (or its subnet taken by another node), or
 * a failed data plane, resolves `failed`: the daemon then stops and exits
 * non-zero. Nothing read from Redis otherwise tears pod networking down.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { createSealer, DataPlane, SEAL_OVERHEAD, type AuthKey, type Peer, type Sealer } from '../dataplane/index.js';
import type { DaemonConfig } from '../flags.js';
import { createMetrics } from '../http/metrics.js';
import { startHttpServer } from '../http/server.js';
import {
  connectLeaseStore,
  formatSubnet,
  ownerAddress,
  LeaseStoreError,
  OptionsError,
  StoreAccessError,
  subnetsOfLease,
  toNetConf,
  type Lease,
  type NetworkConfig,
  type SubnetManager,
} from '../lease/index.js';
import { formatCidr, formatIPv4, parseIPv4, type Cidr } from '../net/ipv4.js';
import { formatCidr6, IPV6_MIN_MTU, type Cidr6 } from '../net/ipv6.js';
import { redisConnectionOptions } from '../redis-flags.js';
import { openDgramTransport } from '../transport/dgram.js';
import { DualTransport } from '../transport/dual.js';
import type { PacketTransport } from '../transport/index.js';
import { openMmsgTransport } from '../transport/mmsg.js';
import { openTun } from '../tun/index.js';
import { readAuthKeys, watchAuthKeys } from './auth-keys.js';
import { CNI_CONFLIST_NAME, cniConflist, writeFileAtomic } from './cni.js';
import { installMasquerade, MASQUERADE_IPV4, MASQUERADE_IPV6, masqueradeInstalled, removeMasquerade } from './masquerade.js';
import { backendDataFor, PeerFeed, sealerIdOf } from './peers.js';
import { acceptLocalSource, addHostAddress6, deleteTunDevice, routeNetwork6Into, routeNetworkInto, tunDeviceExists } from './routes.js';
import { NodeStatus, type NodeInfo } from './status.js';
import { readPreviousSubnet, writeSubnetEnv } from './subnet-env.js';
import { encapsulationOverhead, resolveUnderlay, UnderlayError, type Underlay } from './underlay.js';

export interface RunningNode {
  /** Resolves with a reason when the node can no longer do its job. */
  readonly failed: Promise<string>;
  /** Stops everything started, in reverse order; safe to call twice. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Aborts start-up, which may be waiting for Redis; startNode then rejects. */
  signal?: AbortSignal;
  /** Log lines the logger's destination dropped, for /metrics; 0 when not given. */
  logLinesDropped?: () => number;
}

/** After the store lost its data, each node re-asserts its lease within this long, at random, so they do not all write at once. */
const REASSERT_SPREAD_MS = 3_000;
/** Waiting for a usable store at start-up: 1 s, doubling to 30 s, with jitter. */
const START_BACKOFF = { initialDelayMs: 1_000, maxDelayMs: 30_000 };

/** Clean-up steps, run in reverse order once. */
class Cleanups {
  private readonly steps: Array<() => unknown> = [];
  private running: Promise<void> | undefined;

  constructor(private readonly logger: Logger) {}

  push(step: () => unknown): void {
    this.steps.push(step);
  }

  run(): Promise<void> {
    return (this.running ??= (async () => {
      for (const step of this.steps.reverse()) {
        try {
          await step();
        } catch (err) {
          this.logger.error({ err }, 'clean-up step failed');
        }
      }
    })());
  }
}

/** What every start-up step is handed: where to log, what to report, what to undo. */
interface StepContext {
  readonly config: DaemonConfig;
  readonly logger: Logger;
  readonly status: NodeStatus;
  readonly cleanups: Cleanups;
}

/** Authenticated encapsulation: the flags, and the keys read from the key file. */
type Auth = NonNullable<DaemonConfig['auth']> & { readonly keys: AuthKey[] };

/** The lease this node holds, the network config it came with, and the store that keeps both. */
interface Leased {
  readonly kind: 'leased';
  readonly store: SubnetManager;
  readonly lease: Lease;
  readonly config: NetworkConfig;
}

/** A cluster network of one family, and this node's subnet of it. */
interface FamilyAssignment<C> {
  readonly network: C;
  readonly subnet: C;
}

/** What step 1 yields: the subnets this node routes for (at least one family), and where they came from. */
interface Assignment {
  /** Absent in an IPv6-only network. */
  readonly ipv4?: FamilyAssignment<Cidr>;
  /** Absent unless the network config enables IPv6 (static mode is IPv4 only); with IPv4 too, the subnet paired with the IPv4 one. */
  readonly ipv6?: FamilyAssignment<Cidr6>;
  readonly port: number;
  readonly source: Leased | { readonly kind: 'static'; readonly peers: readonly Peer[] };
}

export async function startNode(config: DaemonConfig, logger: Logger, options: StartOptions = {}): Promise<RunningNode> {
  const cleanups = new Cleanups(logger);
  let fail!: (reason: string) => void;
  const failed = new Promise<string>((resolve) => (fail = resolve));
  const status = new NodeStatus({ logLinesDropped: options.logLinesDropped });
  const httpServer = await startHttpServer(status, { host: config.healthzIp, port: config.healthzPort, logger, metrics: createMetrics(status, { peerMetrics: config.peerMetrics, leaseStore: !config.static }) });
  cleanups.push(() => httpServer.close());
  const context: StepContext = { config, logger, status, cleanups };

  try {
    // A bad key file fails the start before any lease is taken or device made.
    const auth: Auth | undefined = config.auth && { ...config.auth, keys: await readAuthKeys(config.auth.keyFile) };
    const underlay = await resolveUnderlay(config);
    const assignment = await acquireSubnet(context, underlay, options.signal);
    const { plane, mtu } = await openDataPath(context, underlay, assignment, auth);
    await publishNodeFiles(context, { ipv4: assignment.ipv4, ipv6: assignment.ipv6, mtu });

    plane.start((err) => fail(`data plane failed: ${err.message}`));
    const { source } = assignment;
    if (source.kind === 'leased') {
      follow(context, source, plane, fail);
    } else {
      plane.setPeers(source.peers);
      status.running();
    }
  } catch (err) {
    await cleanups.run();
    throw err;
  }
  return { failed, stop: () => cleanups.run() };
}

/** Step 1: the subnet to route for, from the static flags, or leased from the store. */
async function acquireSubnet(context: StepContext, underlay: Underlay, signal: AbortSignal | undefined): Promise<Assignment> {
  const { config, logger, status, cleanups } = context;
  if (config.static) {
    const { network, subnet, port, peers } = config.static;
    return { ipv4: { network, subnet }, port, source: { kind: 'static', peers: peers.map((p) => ({ subnet: p.subnet, endpoint: { address: p.address, ip: parseIPv4(p.address), port: p.port } })) } };
  }
  const store = await connectLeaseStore({
    ...redisConnectionOptions(config),
    keyPrefix: config.prefix,
    leaseTtlMs: config.leaseTtlMs,
    renewMarginMs: config.leaseRenewMarginMs,
    // A daemon outlives Redis restarts: it keeps forwarding and keeps retrying.
    retry: { mode: 'backoff' },
    logger,
  });
  cleanups.push(() => store.close());
  status.storeOpened(store);
  const leased = await acquireLease(context, store, underlay, signal);
  const { ipv4, ipv6 } = leased.config;
  const subnets = subnetsOfLease(leased.config, leased.lease.cidr);
  if (config.publicIpv6 !== undefined && ipv6 === undefined && underlay.family === 4) {
    logger.warn({ publicIPv6: config.publicIpv6 }, '--public-ipv6 is not published: the network config does not enable IPv6');
  }
  status.leaseAcquired(leased, subnets.ipv6);
  return {
    ...(ipv4 && subnets.ipv4 ? { ipv4: { network: ipv4.network, subnet: subnets.ipv4 } } : {}),
    ...(ipv6 && subnets.ipv6 ? { ipv6: { network: ipv6.network, subnet: subnets.ipv6 } } : {}),
    port: leased.config.backend.port,
    source: { kind: 'leased', store, ...leased },
  };
}

/**
 * Reads the network config and takes a lease, trying again with backoff for
 * as long as Redis is unreachable or holds nothing usable (no config, an
 * invalid one, no free subnet): a DaemonSet pod that waits, and says why, is
 * better than one that crash-loops. Wrong credentials, an untrusted
 * certificate and bad options are not waited out: they need a new flag.
 */
async function acquireLease(
  { config, logger, status }: StepContext,
  store: SubnetManager,
  underlay: Underlay,
  signal: AbortSignal | undefined,
): Promise<{ config: NetworkConfig; lease: Lease }> {
  const previous = await readPreviousSubnet(config.subnetFile);
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      // SIGTERM must not wait for a connection attempt to time out.
      return await abortable(signal, async () => {
        const network = await store.getNetworkConfig();
        // Peers send to PublicIPv6 over an IPv6 underlay; a dual-stack network publishes it as flannel does.
        const publicIPv6 = network.ipv6 || underlay.family !== 4 ? config.publicIpv6 : undefined;
        const { lease } = await store.acquireLease({
          publicIP: underlay.address,
          publicIPv6,
          backendData: backendDataFor(network.backend.port, underlay.family, publicIPv6 !== undefined),
          nodeName: config.nodeName,
          previousSubnet: previous ? formatSubnet(previous) : undefined,
        });
        return { config: network, lease };
      });
    } catch (err) {
      signal?.throwIfAborted();
      if (!(err instanceof LeaseStoreError) || err instanceof StoreAccessError || err instanceof OptionsError) throw err;
      const delay = backoffDelay(attempt);
      status.waiting(err.message);
      logger.warn({ err: err.message, kind: err.name, attempt, retryInMs: delay }, 'waiting for the lease store');
      await sleep(delay, signal);
    }
  }
}

function backoffDelay(attempt: number): number {
  const base = Math.min(START_BACKOFF.maxDelayMs, START_BACKOFF.initialDelayMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/** Runs `work`, but rejects as soon as `signal` aborts (the work itself is left to finish or fail on its own). */
function abortable<T>(signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
  if (signal === undefined) return work();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work().then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Step 2: the TUN (the subnet's address as /32, the cluster network routed
 * into it; with IPv6, the IPv6 subnet's address as /128 and the IPv6 cluster
 * network routed into it) and the UDP transport, joined by a data plane that
 * is not started yet.
 */
async function openDataPath(context: StepContext, underlay: Underlay, assignment: Assignment, auth: Auth | undefined): Promise<{ plane: DataPlane; mtu: number }> {
  const { config, logger, status, cleanups } = context;
  const { ipv4, ipv6, port } = assignment;
  // Sealed datagrams carry SEAL_OVERHEAD more bytes, so the pods' MTU gives them up.
  const mtu = underlay.mtu - encapsulationOverhead(underlay) - (auth ? SEAL_OVERHEAD : 0);
  if (ipv6 && mtu < IPV6_MIN_MTU) {
    throw new UnderlayError(
      `the overlay MTU ${mtu} (underlay ${underlay.iface}'s ${underlay.mtu} less encapsulation${auth ? ' and authentication' : ''}) is below IPv6's minimum of ${IPV6_MIN_MTU}; raise the underlay MTU or set EnableIPv6 false`,
    );
  }
  let sealer: Sealer | undefined;
  if (auth) {
    // What peers name this node by in its nonces: its lease's sealer ID (static mode has no lease, and always a public IP).
    const { source } = assignment;
    const localIp = source.kind === 'leased' ? sealerIdOf(source.lease) : parseIPv4(underlay.address!);
    const keyed = createSealer({ mode: auth.mode, localIp, keys: auth.keys });
    cleanups.push(watchAuthKeys(auth.keyFile, (keys) => keyed.setKeys(keys), logger));
    sealer = keyed;
  }
  const info: NodeInfo = {
    name: config.nodeName,
    ...(underlay.address ? { publicIP: underlay.address } : {}),
    iface: underlay.iface,
    ...(ipv4 ? { subnet: formatCidr(ipv4.subnet), network: formatCidr(ipv4.network) } : {}),
    ...(ipv6 ? { ipv6Subnet: formatCidr6(ipv6.subnet), ipv6Network: formatCidr6(ipv6.network) } : {}),
    tun: config.tunName,
    mtu,
    port,
  };
  logger.info({ ...info, transport: config.transport, tunOffload: config.tunOffload, tunTxQueueLength: config.tunTxQueueLength, auth: auth?.mode ?? 'off' }, 'configuring the node');

  // A predecessor that was killed (SIGKILL, OOM) ran no clean-up; whatever it left must not outlive this run.
  await removeLeftovers(config, { ipv4: ipv4 !== undefined, ipv6: ipv6 !== undefined }, logger);
  const address4 = ipv4 ? { address: formatIPv4(ipv4.subnet.network), prefixLength: 32 } : {};
  const tun = openTun({ name: config.tunName, offload: config.tunOffload, txQueueLength: config.tunTxQueueLength, mtu, ...address4 });
  logger.info({ tun: tun.name, tunOffload: config.tunOffload, udpSegmentation: tun.udpSegmentation }, 'TUN device opened');
  let transport;
  try {
    if (ipv4) {
      routeNetworkInto(ipv4.network, tun.name);
      acceptLocalSource(tun.name);
    }
    if (ipv6) {
      // The subnet's first address, as for IPv4: host-local never hands it out (its
      // ranges start one above it, at the bridge's gateway), so no pod or bridge
      // can hold it; a /128, so the subnet itself stays routed to the bridge.
      addHostAddress6(tun.name, ipv6.subnet.network);
      routeNetwork6Into(ipv6.network, tun.name);
    }
    transport = await openTransport(config, underlay, port);
  } catch (err) {
    tun.close();
    throw err;
  }
  const plane = new DataPlane({
    tun,
    transport,
    ...(ipv4 ? { localSubnet: ipv4.subnet, overlayAddress: ipv4.subnet.network } : {}),
    localSubnet6: ipv6?.subnet,
    overlayAddress6: ipv6?.subnet.network,
    maxPacket: mtu,
    logger,
    sealer,
  });
  // Closing the TUN deletes the interface, and the kernel drops its routes with it.
  cleanups.push(() => plane.stop());
  status.dataPathOpened(info, plane);
  return { plane, mtu };
}

/** The UDP transport on each underlay address: one socket, or one of each family joined as a dual transport. */
async function openTransport(config: DaemonConfig, underlay: Underlay, port: number): Promise<PacketTransport> {
  const open = (bindAddress: string) => (config.transport === 'mmsg' ? openMmsgTransport({ bindAddress, port }) : openDgramTransport({ bindAddress, port }));
  const { 4: address4, 6: address6 } = underlay.bindAddresses;
  if (address4 === undefined || address6 === undefined) return open((address4 ?? address6)!);
  const ipv4 = await open(address4);
  let ipv6: PacketTransport | undefined;
  try {
    ipv6 = await open(address6);
    return new DualTransport(ipv4, ipv6);
  } catch (err) {
    await Promise.all([ipv4.close(), ipv6?.close()]);
    throw err;
  }
}

/** Step 3: subnet.env and the CNI conflist, for the pods; the masquerade rules if asked. */
async function publishNodeFiles(
  { config, cleanups }: StepContext,
  node: { ipv4: FamilyAssignment<Cidr> | undefined; ipv6: FamilyAssignment<Cidr6> | undefined; mtu: number },
): Promise<void> {
  const { ipv4, ipv6, mtu } = node;
  await writeSubnetEnv(config.subnetFile, { ipv4, ipv6, mtu, ipMasq: config.ipMasq });
  const scope = ipv4 && { network: formatCidr(ipv4.network), subnet: formatCidr(ipv4.subnet) };
  const scope6 = ipv6 && { network: formatCidr6(ipv6.network), subnet: formatCidr6(ipv6.subnet) };
  const conflist = cniConflist({ ipv4: scope, ipv6: scope6, mtu, ipamDataDir: config.cniIpamDataDir });
  await writeFileAtomic(path.join(config.cniConfDir, CNI_CONFLIST_NAME), `${JSON.stringify(conflist, null, 2)}\n`);
  if (config.ipMasq) {
    if (scope) {
      cleanups.push(() => removeMasquerade(MASQUERADE_IPV4));
      await installMasquerade(MASQUERADE_IPV4, scope);
    }
    if (scope6) {
      cleanups.push(() => removeMasquerade(MASQUERADE_IPV6));
      await installMasquerade(MASQUERADE_IPV6, scope6);
    }
  }
}

/**
 * What a crashed predecessor may leave behind. Its TUN normally dies with its
 * file descriptor, but a device that outlived it (made persistent, or still
 * held by a dying process) would make this run's TUNSETIFF fail or share the
 * name; the kernel drops its routes with it. Its masquerade chain always
 * survives a crash: with --ip-masq installMasquerade replaces it, without it
 * the chain must go. The same holds for each family's chain, which must also
 * go when the network config no longer has that family.
 */
async function removeLeftovers(config: DaemonConfig, families: { ipv4: boolean; ipv6: boolean }, logger: Logger): Promise<void> {
  if (await tunDeviceExists(config.tunName)) {
    logger.warn({ tun: config.tunName }, 'removing a TUN device left by a previous run');
    deleteTunDevice(config.tunName);
  }
  if (!(config.ipMasq && families.ipv4) && (await masqueradeInstalled(MASQUERADE_IPV4))) {
    logger.warn(`removing masquerade rules left by a previous run (${config.ipMasq ? 'the network config is IPv6-only' : '--ip-masq is off'})`);
    await removeMasquerade(MASQUERADE_IPV4);
  }
  if (!(config.ipMasq && families.ipv6) && (await masqueradeInstalled(MASQUERADE_IPV6))) {
    logger.warn(`removing IPv6 masquerade rules left by a previous run (${config.ipMasq ? 'the network config does not enable IPv6' : '--ip-masq is off'})`);
    await removeMasquerade(MASQUERADE_IPV6);
  }
}

/**
 * Step 4, in lease mode: the watch feeds the peer table, the keeper keeps
 * the lease. When the store loses its data, the node re-asserts its lease
 * and the network config, and keeps forwarding to the peers it knows.
 */
function follow(
  { config, logger, status, cleanups }: StepContext,
  leased: Leased,
  plane: DataPlane,
  fail: (reason: string) => void,
): void {
  const { store, lease, config: networkConfig } = leased;
  const keeper = store.keepLease(lease, { renewMarginMs: config.leaseRenewMarginMs });
  cleanups.push(() => keeper.stop());
  keeper.on('restored', () => status.leaseRestored());
  keeper.on('lost', (err) => fail(`lease ${lease.subnet} lost: ${err.message}`));

  const configGuard = new ConfigGuard(store, networkConfig, logger);
  const feed = new PeerFeed({
    ownSubnet: lease.subnet,
    ownOwner: ownerAddress(lease),
    ...(config.auth ? { ownSealerId: sealerIdOf(lease) } : {}),
    network: networkConfig,
    underlay: config.underlay,
    graceMs: config.peerGraceMs,
    logger,
    sink: plane,
    onReady: () => status.running(),
    onOwnLeaseInDoubt: (reason) => keeper.reassert(reason),
    onStoreReset: () => {
      keeper.reassert('the store lost its data', Math.random() * REASSERT_SPREAD_MS);
      configGuard.check('the store lost its data', Math.random() * REASSERT_SPREAD_MS);
    },
    onConfigChanged: () => configGuard.check('the stored network config changed', 0),
  });
  cleanups.push(() => feed.stop());

  const watch = store.watchLeases();
  cleanups.push(() => watch.close());
  status.following({ keeper, feed, watch });
  void (async () => {
    for await (const event of watch) feed.handle(event);
  })().catch((err: Error) => fail(`lease watch failed: ${err.message}`));
}

/**
 * Keeps the stored network config in step with the one this node runs with:
 * puts it back when the store lost it, and says once, as an error, when an
 * operator stored a different one (this node keeps forwarding with its own
 * until it is restarted; it never tears pod networking down over it).
 */
class ConfigGuard {
  private lastDifferent: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: SubnetManager,
    private readonly config: NetworkConfig,
    private readonly logger: Logger,
  ) {}

  check(why: string, delayMs: number, attempt = 1): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.run(why, attempt), delayMs);
    this.timer.unref();
  }

  private async run(why: string, attempt: number): Promise<void> {
    const mine = toNetConf(this.config);
    try {
      const check = await this.store.ensureNetworkConfig(this.config);
      if (check.status === 'stored') {
        this.logger.warn({ key: this.store.keys.config, config: mine, why }, 'the network config was missing from the store: stored the one this node runs with');
        this.lastDifferent = undefined;
      } else if (check.status === 'same') {
        this.lastDifferent = undefined;
      } else if (check.stored !== this.lastDifferent) {
        this.lastDifferent = check.stored;
        this.logger.error(
          { key: this.store.keys.config, stored: check.stored, config: mine },
          `the stored network config differs from the one this node runs with (${check.why}); it keeps forwarding with its own; restart it to adopt the stored one`,
        );
      }
    } catch (err) {
      const delay = Math.min(30_000, 1_000 * 2 ** attempt);
      this.logger.warn({ err: (err as Error).message, retryInMs: delay }, 'could not check the stored network config; trying again');
      this.check(why, delay, attempt + 1);
    }
  }
}
