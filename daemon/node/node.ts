/**
 * The node's wiring: the only place where the lease store meets the data
 * plane. Start-up, in flannel's order:
 *   1. read the network config from Redis;
 *   2. acquire a lease (or reuse this node's, or the previous subnet.env's);
 *   3. create the TUN: the subnet's address as /32, MTU = underlay - 28, and
 *      route the whole cluster network into it;
 *   4. write subnet.env and the CNI conflist;
 *   5. start the data plane, the lease watch that feeds it peers, and the
 *      renewer; install the masquerade rules if asked.
 * Static mode (--static-*) skips the store and takes peers from flags.
 *
 * Stopping (SIGTERM) removes the TUN, its routes and the rules but keeps the
 * lease, so a restarted daemon gets the same subnet and pods keep their
 * addresses. Losing the lease, or a failed data plane, resolves `failed`:
 * the daemon then stops and exits non-zero for the DaemonSet to restart it.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { createSealer, DataPlane, emptyCounters, SEAL_OVERHEAD, type Peer, type Sealer } from '../dataplane/index.js';
import type { DaemonConfig } from '../flags.js';
import { createMetrics } from '../http/metrics.js';
import { startHttpServer } from '../http/server.js';
import { connectLeaseStore, minReplicasFor, parseRedisUrl, type Lease, type LeaseRenewer, type LeaseWatch, type SubnetManager } from '../lease/index.js';
import { formatCidr, formatIPv4, parseCidr, parseIPv4, type Cidr } from '../net/ipv4.js';
import { openDgramTransport } from '../transport/dgram.js';
import { openMmsgTransport } from '../transport/mmsg.js';
import { openTun } from '../tun/index.js';
import { readAuthKeys, watchAuthKeys } from './auth-keys.js';
import { CNI_CONFLIST_NAME, cniConflist, writeFileAtomic } from './cni.js';
import { installMasquerade, masqueradeInstalled, removeMasquerade } from './masquerade.js';
import { feedPeersFromLeases } from './peers.js';
import { acceptLocalSource, deleteTunDevice, routeNetworkInto, tunDeviceExists } from './routes.js';
import { readPreviousSubnet, writeSubnetEnv } from './subnet-env.js';
import { ENCAPSULATION_OVERHEAD, resolveUnderlay } from './underlay.js';

export interface RunningNode {
  /** Resolves with a reason when the node can no longer do its job. */
  readonly failed: Promise<string>;
  /** Stops everything started, in reverse order; safe to call twice. */
  stop(): Promise<void>;
}

/** What the control plane decided for this node. */
interface Assignment {
  network: Cidr;
  subnet: Cidr;
  port: number;
  lease?: Lease;
}

export interface StartOptions {
  /** Aborts start-up, which may be waiting for Redis; startNode then rejects. */
  signal?: AbortSignal;
  /** Log lines the logger's destination dropped, for /metrics; 0 when not given. */
  logLinesDropped?: () => number;
}

export async function startNode(config: DaemonConfig, logger: Logger, options: StartOptions = {}): Promise<RunningNode> {
  const { signal, logLinesDropped = () => 0 } = options;
  const startedAt = Date.now();
  const cleanups: Array<() => unknown> = [];
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      for (const cleanup of cleanups.reverse()) {
        try {
          await cleanup();
        } catch (err) {
          logger.error({ err }, 'clean-up step failed');
        }
      }
    })());
  let fail!: (reason: string) => void;
  const failed = new Promise<string>((resolve) => (fail = resolve));

  let ready = false;
  let dataplane: DataPlane | undefined;
  let store: SubnetManager | undefined;
  let lease: Lease | undefined;
  let nodeInfo: Record<string, unknown> = {};

  const httpServer = await startHttpServer(
    {
      ready: () => ready,
      status: () => ({
        node: nodeInfo,
        lease: lease ? { subnet: lease.subnet, publicIP: lease.publicIP, nodeName: lease.nodeName, expiresAt: lease.expiresAt } : null,
        store: store ? { address: store.address, connected: store.connected } : null,
        peers: dataplane ? [...dataplane.peerTable.peers()].map((p) => ({ subnet: formatCidr(p.subnet), endpoint: `${p.endpoint.address}:${p.endpoint.port}` })) : [],
        counters: dataplane?.snapshot() ?? null,
        uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      }),
    },
    {
      host: config.healthzIp,
      port: config.healthzPort,
      logger,
      metrics: createMetrics({
        counters: () => dataplane?.snapshot() ?? emptyCounters(),
        peers: () => dataplane?.peerTable.size ?? 0,
        leaseExpiry: () => (lease ? (lease.expiresAt ?? 0) / 1000 : undefined),
        storeConnected: () => store?.connected,
        logLinesDropped,
      }),
    },
  );
  cleanups.push(() => httpServer.close());

  try {
    // A bad key file fails the start before any lease is taken or device made.
    const auth = config.auth && { ...config.auth, keys: await readAuthKeys(config.auth.keyFile) };
    const underlay = await resolveUnderlay(config);
    let assignment: Assignment;
    if (config.static) {
      assignment = config.static;
    } else {
      store = await connectLeaseStore({
        url: config.redisUrl,
        keyPrefix: config.prefix,
        leaseTtlMs: config.leaseTtlMs,
        renewMarginMs: config.leaseRenewMarginMs,
        minReplicas: config.redisMinReplicas ?? minReplicasFor(parseRedisUrl(config.redisUrl)),
        ...(config.redisCa !== undefined ? { tls: { ca: config.redisCa } } : {}),
        // A daemon outlives Redis restarts: it keeps forwarding and keeps retrying.
        retry: { mode: 'backoff' },
        logger,
        signal,
      });
      cleanups.push(() => store!.close());
      const network = await store.getNetworkConfig();
      const previous = await readPreviousSubnet(config.subnetFile);
      const acquired = await store.acquireLease({
        publicIP: underlay.address,
        nodeName: config.nodeName,
        previousSubnet: previous ? formatCidr(previous) : undefined,
      });
      lease = acquired.lease;
      logger.info({ subnet: lease.subnet, how: acquired.source, expiresAt: lease.expiresAt }, 'lease acquired');
      assignment = { network: network.network, subnet: parseCidr(lease.subnet), port: network.backend.port, lease };
    }

    const { network, subnet, port } = assignment;
    // Sealed datagrams carry SEAL_OVERHEAD more bytes, so the pods' MTU gives them up.
    const mtu = underlay.mtu - ENCAPSULATION_OVERHEAD - (auth ? SEAL_OVERHEAD : 0);
    let sealer: Sealer | undefined;
    if (auth) {
      const keyed = createSealer({ mode: auth.mode, localIp: parseIPv4(underlay.address), keys: auth.keys });
      cleanups.push(watchAuthKeys(auth.keyFile, (keys) => keyed.setKeys(keys), logger));
      sealer = keyed;
    }
    nodeInfo = { name: config.nodeName, publicIp: underlay.address, iface: underlay.iface, subnet: formatCidr(subnet), network: formatCidr(network), tun: config.tunName, mtu, port };
    logger.info({ ...nodeInfo, transport: config.transport, tunOffload: config.tunOffload, tunTxQueueLength: config.tunTxQueueLength, auth: auth?.mode ?? 'off' }, 'configuring the node');

    // A predecessor that was killed (SIGKILL, OOM) ran no clean-up; whatever it left must not outlive this run.
    await removeLeftovers(config, logger);
    const tun = openTun({ name: config.tunName, offload: config.tunOffload, txQueueLength: config.tunTxQueueLength, mtu, address: formatIPv4(subnet.network), prefixLength: 32 });
    let transport;
    try {
      await routeNetworkInto(formatCidr(network), tun.name);
      await acceptLocalSource(tun.name);
      const bind = { bindAddress: underlay.address, port };
      transport = config.transport === 'mmsg' ? openMmsgTransport(bind) : await openDgramTransport(bind);
    } catch (err) {
      tun.close();
      throw err;
    }
    const plane = new DataPlane({ tun, transport, localSubnet: subnet, overlayAddress: subnet.network, maxPacket: mtu, logger, sealer });
    dataplane = plane;
    // Closing the TUN deletes the interface, and the kernel drops its routes with it.
    cleanups.push(() => plane.stop());

    await writeSubnetEnv(config.subnetFile, { network, subnet, mtu, ipMasq: config.ipMasq });
    const conflist = cniConflist({ subnet: formatCidr(subnet), network: formatCidr(network), mtu, ipamDataDir: config.cniIpamDataDir });
    await writeFileAtomic(path.join(config.cniConfDir, CNI_CONFLIST_NAME), `${JSON.stringify(conflist, null, 2)}\n`);
    if (config.ipMasq) {
      cleanups.push(() => removeMasquerade());
      await installMasquerade(network, subnet);
    }

    plane.start((err) => fail(`data plane failed: ${err.message}`));
    if (config.static) {
      plane.setPeers(config.static.peers.map((p): Peer => ({ subnet: p.subnet, endpoint: { address: p.address, ip: parseIPv4(p.address), port: p.port } })));
      ready = true;
    } else {
      followLeases(store!, lease!, plane, port, config, logger, {
        onReady: () => (ready = true),
        onRenewed: (renewed) => (lease = renewed),
        fail,
        cleanups,
      });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { failed, stop };
}

/**
 * What a crashed predecessor may leave behind. Its TUN normally dies with its
 * file descriptor, but a device that outlived it (made persistent, or still
 * held by a dying process) would make this run's TUNSETIFF fail or share the
 * name; the kernel drops its routes with it. Its masquerade chain always
 * survives a crash: with --ip-masq installMasquerade replaces it, without it
 * the chain must go.
 */
async function removeLeftovers(config: DaemonConfig, logger: Logger): Promise<void> {
  if (await tunDeviceExists(config.tunName)) {
    logger.warn({ tun: config.tunName }, 'removing a TUN device left by a previous run');
    await deleteTunDevice(config.tunName);
  }
  if (!config.ipMasq && (await masqueradeInstalled())) {
    logger.warn('removing masquerade rules left by a previous run (--ip-masq is off)');
    await removeMasquerade();
  }
}

function followLeases(
  store: SubnetManager,
  lease: Lease,
  plane: DataPlane,
  port: number,
  config: DaemonConfig,
  logger: Logger,
  hooks: { onReady(): void; onRenewed(lease: Lease): void; fail(reason: string): void; cleanups: Array<() => unknown> },
): void {
  const subnet = parseCidr(lease.subnet);
  const watch: LeaseWatch = store.watchLeases();
  hooks.cleanups.push(() => watch.close());
  feedPeersFromLeases(watch, {
    ownSubnet: lease.subnet,
    ownPublicIp: lease.publicIP,
    subnetLength: subnet.prefixLength,
    defaultPort: port,
    logger,
    onPeers: (peers) => {
      plane.setPeers(peers);
      hooks.onReady();
    },
    onOwnLeaseLost: (reason) => hooks.fail(`lease ${lease.subnet} lost: ${reason}`),
  }).catch((err: Error) => hooks.fail(`lease watch failed: ${err.message}`));

  const renewer: LeaseRenewer = store.keepLease(lease, { renewMarginMs: config.leaseRenewMarginMs });
  hooks.cleanups.push(() => renewer.stop());
  renewer.on('renewed', (renewed) => hooks.onRenewed(renewed));
  renewer.on('renewFailed', (err, retryInMs) => logger.warn({ err: err.message, retryInMs }, 'lease renewal failed; retrying'));
  renewer.on('lost', (err) => hooks.fail(`lease ${lease.subnet} lost: ${err.message}`));
}
