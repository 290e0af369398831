/**
 * miniflanneld's flags. Each has a MINIFLANNELD_* environment twin, as
 * flannel's FLANNELD_*; values are checked right after parsing, and a bad
 * one is a UsageError naming the flag.
 */
import { Command, Option, InvalidArgumentError } from 'commander';
import { parseCidr, parseIPv4, type Cidr } from './net/ipv4.js';

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface StaticPeer {
  subnet: Cidr;
  address: string;
  port: number;
}

export interface DaemonConfig {
  iface?: string;
  publicIp?: string;
  tunName: string;
  port: number;
  transport: 'mmsg' | 'dgram';
  tunOffload: boolean;
  healthzIp: string;
  healthzPort: number;
  logLevel: string;
  /** Static mode: the cluster network, this node's subnet and its peers, without a lease store. */
  staticNetwork?: Cidr;
  staticSubnet?: Cidr;
  staticPeers: StaticPeer[];
}

function cidrArg(flag: string) {
  return (value: string): Cidr => {
    try {
      return parseCidr(value);
    } catch (err) {
      throw new InvalidArgumentError(`${flag} wants a CIDR such as 10.244.0.0/16: ${(err as Error).message}`);
    }
  };
}

function portArg(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError('a port is a whole number from 1 to 65535');
  return port;
}

function ipArg(value: string): string {
  try {
    parseIPv4(value);
  } catch {
    throw new InvalidArgumentError(`'${value}' is not an IPv4 address`);
  }
  return value;
}

function staticPeerArg(value: string, previous: StaticPeer[] = []): StaticPeer[] {
  const match = /^([^=]+)=([^:]+)(?::(\d+))?$/.exec(value);
  if (!match) throw new InvalidArgumentError(`'${value}' is not SUBNET=IP[:PORT], e.g. 10.244.2.0/24=198.18.0.2`);
  const subnet = cidrArg('--static-peer')(match[1]!);
  const address = ipArg(match[2]!);
  const port = match[3] ? portArg(match[3]) : 8285;
  return [...previous, { subnet, address, port }];
}

export function daemonCommand(): Command {
  const env = (name: string) => `MINIFLANNELD_${name}`;
  return new Command('miniflanneld')
    .description("miniflannel's node daemon: leases a subnet and carries pod traffic between nodes over UDP")
    .addOption(new Option('--iface <name>', 'underlay interface to send and receive on (default: the default route\'s)').env(env('IFACE')))
    .addOption(new Option('--public-ip <ip>', 'underlay address peers send to (default: --iface\'s address)').env(env('PUBLIC_IP')).argParser(ipArg))
    .addOption(new Option('--tun-name <name>', 'name of the TUN device').env(env('TUN_NAME')).default('flannel0'))
    .addOption(new Option('--port <port>', 'UDP port of the overlay').env(env('PORT')).default(8285).argParser(portArg))
    .addOption(new Option('--transport <kind>', 'UDP I/O: mmsg (batched recvmmsg/sendmmsg, native) or dgram (node:dgram, portable)').env(env('TRANSPORT')).default('mmsg').choices(['mmsg', 'dgram']))
    .addOption(new Option('--tun-offload <on|off>', 'TCP segmentation offload on the TUN: read 64 KiB TCP super-packets and cut them in user space').env(env('TUN_OFFLOAD')).default('on').choices(['on', 'off']))
    .addOption(new Option('--healthz-ip <ip>', 'address of the health, readiness and status endpoint').env(env('HEALTHZ_IP')).default('0.0.0.0').argParser(ipArg))
    .addOption(new Option('--healthz-port <port>', 'port of the health, readiness and status endpoint (0 picks one)').env(env('HEALTHZ_PORT')).default(8286).argParser((v) => (v === '0' ? 0 : portArg(v))))
    .addOption(new Option('--log-level <level>', 'log level').env(env('LOG_LEVEL')).default('info').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal']))
    .addOption(new Option('--static-network <cidr>', 'static mode: the cluster network').env(env('STATIC_NETWORK')).argParser(cidrArg('--static-network')))
    .addOption(new Option('--static-subnet <cidr>', "static mode: this node's subnet").env(env('STATIC_SUBNET')).argParser(cidrArg('--static-subnet')))
    .addOption(new Option('--static-peer <subnet=ip[:port]>', 'static mode: a peer node; repeat for each').argParser(staticPeerArg).default([]))
    .showHelpAfterError()
    .exitOverride();
}

export function parseDaemonFlags(argv: string[]): DaemonConfig {
  const command = daemonCommand();
  command.parse(argv);
  const o = command.opts();
  const config: DaemonConfig = {
    iface: o.iface,
    publicIp: o.publicIp,
    tunName: o.tunName,
    port: Number(o.port),
    transport: o.transport,
    tunOffload: o.tunOffload === 'on',
    healthzIp: o.healthzIp,
    healthzPort: Number(o.healthzPort),
    logLevel: o.logLevel,
    staticNetwork: o.staticNetwork,
    staticSubnet: o.staticSubnet,
    staticPeers: o.staticPeer,
  };
  if (!config.staticNetwork || !config.staticSubnet) {
    throw new UsageError('--static-network and --static-subnet are required until the lease store is wired in');
  }
  if (config.tunName.length > 15) throw new UsageError(`--tun-name '${config.tunName}' is longer than 15 bytes`);
  return config;
}
