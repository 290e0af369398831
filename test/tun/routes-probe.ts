// Runs inside a test namespace (rtnetlink changes the namespace of the
// process that sends them) and prints one JSON line for
// routes.system.test.ts to check. The routing table is read back with `ip`,
// which the test machine has, so the check does not trust the code it checks.
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { openTun } from '../../daemon/tun/index.js';
import { loadNative } from '../../daemon/native.js';
import { parseCidr } from '../../daemon/net/ipv4.js';
import { parseCidr6, parseIPv6 } from '../../daemon/net/ipv6.js';
import { addHostAddress6, deleteTunDevice, routeNetwork6Into, routeNetworkInto, RouteError, routesThrough, tunDeviceExists } from '../../daemon/node/routes.js';

const report = (result: unknown) => process.stdout.write(`${JSON.stringify(result)}\n`);
const network = parseCidr('10.98.0.0/16');
/** The main table's routes to the cluster network, as `ip` prints them. */
const clusterRoutes = () =>
  execFileSync('ip', ['-o', 'route', 'show', 'root', '10.98.0.0/16'])
    .toString()
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.trim());

function refusal(change: () => void) {
  try {
    change();
    return { refused: false };
  } catch (err) {
    const e = err as RouteError;
    return { isRouteError: err instanceof RouteError, name: e.name, code: e.code, causeCode: (e.cause as NodeJS.ErrnoException | undefined)?.code, message: e.message };
  }
}

/** A datagram sent to an address of the cluster network arrives in the TUN. */
async function arrivesInTun(tunName: string): Promise<boolean> {
  const tun = openTun({ name: tunName, mtu: 1400, address: '10.98.9.1', prefixLength: 32 });
  routeNetworkInto(network, tun.name);
  const socket = dgram.createSocket('udp4');
  const arrived = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 2000);
    tun.start(
      (batch) => {
        for (let i = 0; i < batch.count; i++) {
          const at = batch.offsets[i]!;
          // IPv4, destination 10.98.1.1
          if (batch.buffer[at]! >> 4 === 4 && batch.buffer.readUInt32BE(at + 16) === 0x0a620101) {
            clearTimeout(timer);
            resolve(true);
          }
        }
      },
      () => undefined,
    );
    socket.send('into the tun', 9, '10.98.1.1');
  });
  socket.close();
  tun.close();
  return arrived;
}

async function routes(): Promise<void> {
  const other = openTun({ name: 'mfother', mtu: 1400, address: '10.98.8.1', prefixLength: 32 });
  const tun = openTun({ name: 'mfroute', mtu: 1400, address: '10.98.7.1', prefixLength: 32 });
  routeNetworkInto(network, other.name);
  const first = clusterRoutes();
  // A restart routes the same network again, into what may be another device.
  routeNetworkInto(network, tun.name);
  const replaced = clusterRoutes();
  routeNetworkInto(network, tun.name);
  const again = clusterRoutes();
  // What /status reports, read from /proc: the route moved from one device to the other.
  const seenThrough = { mfroute: routesThrough(tun.name), mfother: routesThrough(other.name) };
  other.close();
  tun.close();
  const afterClose = clusterRoutes();

  // A device that outlived its owner: deleting it takes its routes too.
  const leftover = openTun({ name: 'mfleft', mtu: 1400, address: '10.98.6.1', prefixLength: 32 });
  routeNetworkInto(network, leftover.name);
  const beforeDelete = clusterRoutes();
  deleteTunDevice(leftover.name);
  const afterDelete = { routes: clusterRoutes(), exists: await tunDeviceExists(leftover.name) };
  leftover.close();

  const missingDevice = refusal(() => routeNetworkInto(network, 'mfnone'));
  const missingDelete = refusal(() => deleteTunDevice('mfnone'));
  // The kernel's own words come through: a device that is not up cannot carry a route.
  const down = new (loadNative().TunDevice)('mfdown', false);
  const deviceDown = refusal(() => routeNetworkInto(network, 'mfdown'));
  down.close();

  report({ first, replaced, again, seenThrough, afterClose, beforeDelete, afterDelete, missingDevice, missingDelete, deviceDown, arrived: await arrivesInTun('mfarrive') });
}

/** `ip -o` lines without the interface index, whitespace collapsed. */
const ipLines = (...args: string[]) =>
  execFileSync('ip', ['-o', ...args])
    .toString()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.replace(/^\d+: /, '').replace(/\\/g, ' ').replace(/\s+/g, ' ').trim());
/** The device the kernel sends a packet for `address` out of. */
const routedVia = (address: string) => /\bdev (\S+)/.exec(execFileSync('ip', ['-6', 'route', 'get', address]).toString())?.[1];

/**
 * A dual-stack node's TUN: its /128 from the node's IPv6 subnet and the IPv6
 * cluster network routed into it, beside a bridge that holds the subnet as
 * the CNI bridge plugin leaves it (its gateway address, /64).
 */
function routes6(): void {
  const network6 = parseCidr6('fd00:98::/48');
  const tun = openTun({ name: 'mfroute6', mtu: 1400, address: '10.98.7.1', prefixLength: 32 });
  addHostAddress6(tun.name, parseIPv6('fd00:98:0:7::'));
  const address = ipLines('-6', 'addr', 'show', 'dev', tun.name, 'scope', 'global');
  // A restart gives the address again.
  addHostAddress6(tun.name, parseIPv6('fd00:98:0:7::'));
  const addressAgain = ipLines('-6', 'addr', 'show', 'dev', tun.name, 'scope', 'global');
  routeNetwork6Into(network6, tun.name);
  routeNetwork6Into(network6, tun.name);
  const routes = ipLines('-6', 'route', 'show', 'exact', 'fd00:98::/48');
  // /status's reading: the cluster route, not the device's own address, its local route or multicast.
  const seenThrough = routesThrough(tun.name);
  // Another TUN stands in for the bridge: what matters is the address the bridge plugin gives it.
  const bridge = openTun({ name: 'mfbridge6', mtu: 1400, address: '10.98.7.2', prefixLength: 32 });
  execFileSync('ip', ['-6', 'addr', 'add', 'fd00:98:0:7::1/64', 'dev', bridge.name, 'nodad']);
  const via = { ownPod: routedVia('fd00:98:0:7::5'), otherNodesPod: routedVia('fd00:98:0:9::5'), tunAddress: routedVia('fd00:98:0:7::') };
  const missingRoute = refusal(() => routeNetwork6Into(network6, 'mfnone'));
  const missingAddress = refusal(() => addHostAddress6('mfnone', parseIPv6('fd00:98:0:7::')));
  tun.close();
  bridge.close();
  report({ address, addressAgain, routes, seenThrough, via, afterClose: ipLines('-6', 'route', 'show', 'exact', 'fd00:98::/48'), missingRoute, missingAddress });
}

/** Run without CAP_NET_ADMIN; `lo` exists in every namespace. */
function noPermission(): void {
  report({ route: refusal(() => routeNetworkInto(network, 'lo')), routes: clusterRoutes() });
}

const modes: Record<string, () => void | Promise<void>> = { routes, routes6, noPermission };
const mode = modes[process.argv[2] ?? ''];
if (!mode) {
  process.stderr.write(`usage: routes-probe ${Object.keys(modes).join('|')}\n`);
  process.exit(2);
}
await mode();
