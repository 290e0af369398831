/**
 * The node's wiring: the only place where the control plane (peers, for now
 * given statically) meets the data plane. Start-up order:
 *   1. resolve the underlay (address peers reach us on, its MTU);
 *   2. create the TUN: the subnet's address as /32, MTU = underlay - 28;
 *   3. route the whole cluster network into the TUN;
 *   4. bind the UDP transport and start the data plane with the peers.
 */
import type { Logger } from 'pino';
import { DataPlane, type CountersSnapshot, type Peer } from '../dataplane/index.js';
import type { DaemonConfig } from '../flags.js';
import { formatCidr, formatIPv4, parseIPv4 } from '../net/ipv4.js';
import { openDgramTransport } from '../transport/dgram.js';
import { openMmsgTransport } from '../transport/mmsg.js';
import { openTun } from '../tun/index.js';
import { startHttpServer } from '../http/server.js';
import { createMetrics } from '../http/metrics.js';
import { acceptLocalSource, routeNetworkInto } from './routes.js';
import { ENCAPSULATION_OVERHEAD, resolveUnderlay } from './underlay.js';

export interface RunningNode {
  counters(): CountersSnapshot;
  stop(): Promise<void>;
}

export async function startNode(config: DaemonConfig, logger: Logger): Promise<RunningNode> {
  const network = config.staticNetwork!;
  const subnet = config.staticSubnet!;
  const underlay = await resolveUnderlay(config);
  const mtu = underlay.mtu - ENCAPSULATION_OVERHEAD;
  logger.info({ underlay, subnet: formatCidr(subnet), network: formatCidr(network), mtu, transport: config.transport, tunOffload: config.tunOffload }, 'starting');

  const tun = openTun({ name: config.tunName, offload: config.tunOffload, mtu, address: formatIPv4(subnet.network), prefixLength: 32 });
  let transport;
  try {
    await routeNetworkInto(formatCidr(network), tun.name);
    await acceptLocalSource(tun.name);
    const bind = { bindAddress: underlay.address, port: config.port };
    transport = config.transport === 'mmsg' ? openMmsgTransport(bind) : await openDgramTransport(bind);
  } catch (err) {
    tun.close();
    throw err;
  }

  const dataplane = new DataPlane({
    tun,
    transport,
    localSubnet: subnet,
    overlayAddress: subnet.network,
    maxPacket: mtu,
    logger,
  });
  const peers: Peer[] = config.staticPeers.map((p) => ({
    subnet: p.subnet,
    endpoint: { address: p.address, ip: parseIPv4(p.address), port: p.port },
  }));
  dataplane.setPeers(peers);
  dataplane.start((err) => {
    logger.fatal({ err }, 'data plane failed');
    process.exit(1);
  });

  const startedAt = Date.now();
  const httpServer = await startHttpServer(
    {
      ready: () => true,
      status: () => ({
        node: { publicIp: underlay.address, subnet: formatCidr(subnet), network: formatCidr(network), tun: tun.name, mtu },
        peers: [...dataplane.peerTable.peers()].map((p) => ({ subnet: formatCidr(p.subnet), endpoint: `${p.endpoint.address}:${p.endpoint.port}` })),
        counters: dataplane.snapshot(),
        uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      }),
    },
    {
      host: config.healthzIp,
      port: config.healthzPort,
      logger,
      metrics: createMetrics({
        counters: () => dataplane.snapshot(),
        peers: () => dataplane.peerTable.size,
        leaseExpiry: () => undefined,
        storeConnected: () => undefined,
      }),
    },
  );

  return {
    counters: () => dataplane.snapshot(),
    stop: async () => {
      await httpServer.close();
      // Closing the TUN deletes the interface, and the kernel drops its routes with it.
      await dataplane.stop();
    },
  };
}
