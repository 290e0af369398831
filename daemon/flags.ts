/**
 * miniflanneld's flags. Each has a MINIFLANNELD_* environment twin, as
 * flannel's FLANNELD_*; values are checked right after parsing, and a bad
 * one is a UsageError naming the flag.
 */
import { hostname } from 'node:os';
import { Command, Option, InvalidArgumentError } from 'commander';
import { parseCidr, parseIPv4, type Cidr } from './net/ipv4.js';
import { parseIPv6 } from './net/ipv6.js';
import { minReplicasArg, redisConnectionOptions, type RedisFlags } from './redis-flags.js';
import type { TransportFamily } from './transport/index.js';
import { DEFAULT_TX_QUEUE_LENGTH } from './tun/index.js';
import { UsageError } from './usage.js';

/** Far beyond any use: 100 000 MTU-sized packets are ~150 MB the kernel may hold. */
const MAX_TX_QUEUE_LENGTH = 100_000;

export interface StaticPeer {
  subnet: Cidr;
  address: string;
  port: number;
}

export interface DaemonConfig extends RedisFlags {
  prefix: string;
  iface?: string;
  publicIp?: string;
  /** The node's IPv6 underlay address, published in its lease as PublicIPv6 when the network config enables IPv6. */
  publicIpv6?: string;
  /** The family datagrams between nodes travel over: IPv6 binds --public-ipv6 and sends to the peers' PublicIPv6; dual binds both addresses. */
  underlay: TransportFamily;
  nodeName: string;
  tunName: string;
  tunOffload: boolean;
  /** The TUN's txqueuelen: packets it holds while the daemon is not reading. */
  tunTxQueueLength: number;
  transport: 'mmsg' | 'dgram';
  subnetFile: string;
  cniConfDir: string;
  /** host-local's dataDir in the CNI config; its own default when unset. */
  cniIpamDataDir?: string;
  ipMasq: boolean;
  /** Authenticated encapsulation: the cluster key file and whether packets are also encrypted. */
  auth?: { keyFile: string; mode: 'mac' | 'encrypt' };
  leaseRenewMarginMs: number;
  /** How long a lease lives unless renewed. */
  leaseTtlMs: number;
  /** How long a peer whose lease the store forgot is kept while its node re-asserts it. */
  peerGraceMs: number;
  /** Replicas that must acknowledge each lease write (WAIT); undefined: derived from the URL (minReplicasFor). */
  redisMinReplicas?: number;
  healthzIp: string;
  healthzPort: number;
  /** Per-peer series on /metrics (six per peer): off by default for their cardinality. */
  peerMetrics: boolean;
  logLevel: string;
  /** Static mode: the cluster network, this node's subnet and its peers, with no lease store. */
  static?: { network: Cidr; subnet: Cidr; port: number; peers: StaticPeer[] };
}

/** --healthz-port's default, which the CLI's doctor, trace and status ask at too. */
export const DEFAULT_HEALTHZ_PORT = 8286;

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

function queueLengthArg(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_TX_QUEUE_LENGTH) throw new InvalidArgumentError(`a queue length is a whole number of packets from 1 to ${MAX_TX_QUEUE_LENGTH}`);
  return n;
}

function ipArg(value: string): string {
  try {
    parseIPv4(value);
  } catch {
    throw new InvalidArgumentError(`'${value}' is not an IPv4 address`);
  }
  return value;
}

function ipv6Arg(value: string): string {
  try {
    parseIPv6(value);
  } catch {
    throw new InvalidArgumentError(`'${value}' is not an IPv6 address`);
  }
  return value;
}

/** An address of either family: where a server may listen. */
function listenIpArg(value: string): string {
  return value.includes(':') ? ipv6Arg(value) : ipArg(value);
}

/** "90s", "60m", "2h", or a bare number of minutes as flannel's --subnet-lease-renew-margin takes. */
function durationArg(value: string): number {
  const match = /^(\d+)(ms|s|m|h)?$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`'${value}' is not a duration such as 60m, 90s or 2h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 'm') as 'ms' | 's' | 'm' | 'h'];
  const ms = Number(match[1]) * unit;
  if (ms <= 0) throw new InvalidArgumentError('the duration must be above zero');
  return ms;
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
  const option = (flags: string, description: string, name: string) => new Option(flags, description).env(env(name));
  return new Command('miniflanneld')
    .description("miniflannel's node daemon: leases a subnet from Redis and carries pod traffic between nodes over UDP")
    .addOption(option('--redis-url <url>', 'lease store: redis://, rediss://, redis+sentinel:// or redis+cluster:// (see docs/redis.md)', 'REDIS_URL').default('redis://127.0.0.1:6379'))
    .addOption(option('--prefix <prefix>', 'Redis key prefix, as flannel\'s --etcd-prefix', 'PREFIX').default('miniflannel'))
    .addOption(option('--iface <name>', 'underlay interface (default: the default route\'s)', 'IFACE'))
    .addOption(option('--public-ip <ip>', 'underlay address peers send to (default: --iface\'s address)', 'PUBLIC_IP').argParser(ipArg))
    .addOption(option('--public-ipv6 <ip>', 'IPv6 underlay address, published in the lease (PublicIPv6) when the network config enables IPv6; peers send to it with --underlay ipv6 or dual', 'PUBLIC_IPV6').argParser(ipv6Arg))
    .addOption(
      option(
        '--underlay <family>',
        'what datagrams between nodes travel over: ipv4 (--public-ip), ipv6 (--public-ipv6, the peers\' PublicIPv6), or dual (both; each peer over the family both nodes have, IPv4 first)',
        'UNDERLAY',
      )
        .default('ipv4')
        .choices(['ipv4', 'ipv6', 'dual']),
    )
    .addOption(option('--node-name <name>', 'Kubernetes node name, published with the lease', 'NODE_NAME').default(hostname()))
    .addOption(option('--tun-name <name>', 'name of the TUN device', 'TUN_NAME').default('flannel0'))
    .addOption(option('--tun-offload <on|off>', 'TCP and UDP segmentation offload on the TUN (read 64 KiB super-packets, cut them in user space; UDP from Linux 6.2)', 'TUN_OFFLOAD').default('on').choices(['on', 'off']))
    .addOption(option('--tun-txqueuelen <packets>', 'packets the TUN holds while the daemon is not reading; more absorbs longer scheduling gaps, at the cost of queueing delay under overload', 'TUN_TXQUEUELEN').default(DEFAULT_TX_QUEUE_LENGTH).argParser(queueLengthArg))
    .addOption(option('--transport <kind>', 'UDP I/O: mmsg (batched recvmmsg/sendmmsg, native) or dgram (node:dgram)', 'TRANSPORT').default('mmsg').choices(['mmsg', 'dgram']))
    .addOption(option('--subnet-file <path>', 'where to write subnet.env', 'SUBNET_FILE').default('/run/miniflannel/subnet.env'))
    .addOption(option('--cni-conf-dir <dir>', 'where to write the CNI conflist', 'CNI_CONF_DIR').default('/etc/cni/net.d'))
    .addOption(option('--cni-ipam-data-dir <dir>', 'host-local IPAM data directory in the CNI config (default: the plugin\'s own)', 'CNI_IPAM_DATA_DIR'))
    .addOption(option('--ip-masq', 'masquerade pod traffic leaving the cluster network (iptables)', 'IP_MASQ').default(false))
    .addOption(option('--auth-key-file <path>', 'cluster key file: authenticate every datagram (AES-256-GCM) and drop the rest; off by default, flannel-compatible (docs/security.md)', 'AUTH_KEY_FILE'))
    .addOption(option('--auth-mode <mode>', 'with --auth-key-file: mac (packets in clear, authenticated) or encrypt', 'AUTH_MODE').default('mac').choices(['mac', 'encrypt']))
    .addOption(option('--redis-ca-file <path>', 'PEM file of the CA that signed the Redis server certificate, for rediss:// URLs', 'REDIS_CA_FILE'))
    .addOption(option('--redis-min-replicas <n|auto>', 'replicas that must acknowledge each lease write (WAIT); auto: 1 with redis+sentinel://, else 0', 'REDIS_MIN_REPLICAS').default('auto').argParser(minReplicasArg))
    .addOption(option('--lease-renew-margin <duration>', 'renew the lease this long before it expires', 'LEASE_RENEW_MARGIN').default(60 * 60_000, '60m').argParser(durationArg))
    .addOption(option('--lease-ttl <duration>', 'how long a lease lives unless renewed (short ones for tests)', 'LEASE_TTL').default(24 * 3_600_000, '24h').argParser(durationArg))
    .addOption(option('--peer-grace <duration>', 'after the lease store lost its data, keep forwarding to a peer this long while its node re-asserts its lease', 'PEER_GRACE').default(5 * 60_000, '5m').argParser(durationArg))
    .addOption(option('--healthz-ip <ip>', 'address of /healthz, /readyz, /metrics and /status (IPv4 or IPv6; :: on a node without IPv4)', 'HEALTHZ_IP').default('0.0.0.0').argParser(listenIpArg))
    .addOption(option('--healthz-port <port>', 'port of /healthz, /readyz, /metrics and /status (0 picks one)', 'HEALTHZ_PORT').default(DEFAULT_HEALTHZ_PORT).argParser((v) => (v === '0' ? 0 : portArg(v))))
    .addOption(option('--peer-metrics', 'also export per-peer traffic on /metrics: six series per peer, 30,000 at 5,000 nodes (/status shows it regardless)', 'PEER_METRICS').default(false))
    .addOption(option('--log-level <level>', 'log level', 'LOG_LEVEL').default('info').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal']))
    .addOption(option('--static-network <cidr>', 'static mode, no lease store: the cluster network', 'STATIC_NETWORK').argParser(cidrArg('--static-network')))
    .addOption(option('--static-subnet <cidr>', "static mode: this node's subnet", 'STATIC_SUBNET').argParser(cidrArg('--static-subnet')))
    .addOption(option('--static-port <port>', 'static mode: the overlay UDP port', 'STATIC_PORT').default(8285).argParser(portArg))
    .addOption(new Option('--static-peer <subnet=ip[:port]>', 'static mode: a peer node; repeat for each').argParser(staticPeerArg).default([]))
    .addHelpText('after', `
Example (a DaemonSet passes the same through MINIFLANNELD_* variables):
  miniflanneld --redis-url redis://10.0.0.5:6379 --iface eth0 --node-name node-a --ip-masq`)
    .exitOverride();
}

/** An on/off environment twin: commander turns a switch on whenever its variable is set, even to "false". */
function envSwitch(name: string): boolean {
  const value = (process.env[name] ?? '').trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['', '0', 'false', 'no', 'off'].includes(value)) return false;
  throw new UsageError(`${name}="${process.env[name]}" is not a switch: use true or false`);
}

export function parseDaemonFlags(argv: string[]): DaemonConfig {
  const command = daemonCommand();
  command.parse(argv);
  const o = command.opts();
  if (o.tunName.length > 15) throw new UsageError(`--tun-name '${o.tunName}' is longer than 15 bytes`);
  const isStatic = o.staticNetwork !== undefined || o.staticSubnet !== undefined || o.staticPeer.length > 0;
  if (isStatic && (!o.staticNetwork || !o.staticSubnet)) {
    throw new UsageError('static mode needs both --static-network and --static-subnet');
  }
  const underlay: TransportFamily = o.underlay === 'ipv6' ? 6 : o.underlay === 'dual' ? 'dual' : 4;
  if (underlay !== 4) {
    if (o.publicIpv6 === undefined) throw new UsageError(`--underlay ${o.underlay} needs --public-ipv6: the IPv6 address peers send to`);
    if (isStatic) throw new UsageError(`--underlay ${o.underlay} is not available in static mode: peers are named by IPv4 address there`);
  }
  if (o.leaseRenewMargin >= o.leaseTtl) {
    throw new UsageError(`--lease-renew-margin (${o.leaseRenewMargin} ms) must be below --lease-ttl (${o.leaseTtl} ms), or the lease would be renewed continuously`);
  }
  const config: DaemonConfig = {
    redisUrl: o.redisUrl,
    redisCaFile: o.redisCaFile,
    prefix: o.prefix,
    iface: o.iface,
    publicIp: o.publicIp,
    publicIpv6: o.publicIpv6,
    underlay,
    nodeName: o.nodeName,
    tunName: o.tunName,
    tunOffload: o.tunOffload === 'on',
    tunTxQueueLength: o.tunTxqueuelen,
    transport: o.transport,
    subnetFile: o.subnetFile,
    cniConfDir: o.cniConfDir,
    cniIpamDataDir: o.cniIpamDataDir,
    ipMasq: command.getOptionValueSource('ipMasq') === 'env' ? envSwitch('MINIFLANNELD_IP_MASQ') : o.ipMasq === true,
    auth: o.authKeyFile ? { keyFile: o.authKeyFile, mode: o.authMode } : undefined,
    leaseRenewMarginMs: o.leaseRenewMargin,
    leaseTtlMs: o.leaseTtl,
    peerGraceMs: o.peerGrace,
    redisMinReplicas: o.redisMinReplicas === 'auto' ? undefined : o.redisMinReplicas,
    healthzIp: o.healthzIp,
    healthzPort: Number(o.healthzPort),
    peerMetrics: command.getOptionValueSource('peerMetrics') === 'env' ? envSwitch('MINIFLANNELD_PEER_METRICS') : o.peerMetrics === true,
    logLevel: o.logLevel,
    static: isStatic ? { network: o.staticNetwork, subnet: o.staticSubnet, port: o.staticPort, peers: o.staticPeer } : undefined,
  };
  // Checked now, so that a mistake exits 2 before anything starts; startNode builds the same options again to connect.
  if (!isStatic) redisConnectionOptions(config);
  return config;
}
