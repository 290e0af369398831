// Runs inside a test namespace (rtnetlink changes the namespace of the
// process that sends them) and prints one JSON line for
// routes.system.test.ts to check. The routing table is read back with `ip`,
// which the test machine has, so the check does not trust the code it checks.
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { openTun } from '../../daemon/tun/index.js';
import { loadNative } from '../../daemon/native.js';
import { parseCidr } from '../../daemon/net/ipv4.js';
import { deleteTunDevice, routeNetworkInto, RouteError, tunDeviceExists } from '../../daemon/node/routes.js';

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

  report({ first, replaced, again, afterClose, beforeDelete, afterDelete, missingDevice, missingDelete, deviceDown, arrived: await arrivesInTun('mfarrive') });
}

/** Run without CAP_NET_ADMIN; `lo` exists in every namespace. */
function noPermission(): void {
  report({ route: refusal(() => routeNetworkInto(network, 'lo')), routes: clusterRoutes() });
}

const modes: Record<string, () => void | Promise<void>> = { routes, noPermission };
const mode = modes[process.argv[2] ?? ''];
if (!mode) {
  process.stderr.write(`usage: routes-probe ${Object.keys(modes).join('|')}\n`);
  process.exit(2);
}
await mode();
