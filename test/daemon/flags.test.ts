import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommanderError } from 'commander';
import { daemonCommand, parseDaemonFlags } from '../../daemon/flags.js';
import { formatCidr } from '../../daemon/net/ipv4.js';
import { UsageError } from '../../daemon/usage.js';

const argv = (...args: string[]) => ['node', 'miniflanneld', ...args];

function withEnv<T>(env: Record<string, string>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test('defaults follow flannel', () => {
  const config = parseDaemonFlags(argv());
  assert.equal(config.redisUrl, 'redis://127.0.0.1:6379');
  assert.equal(config.prefix, 'miniflannel');
  assert.equal(config.subnetFile, '/run/miniflannel/subnet.env');
  assert.equal(config.cniConfDir, '/etc/cni/net.d');
  assert.equal(config.tunName, 'flannel0');
  assert.equal(config.leaseRenewMarginMs, 60 * 60_000);
  assert.equal(config.ipMasq, false);
  assert.equal(config.static, undefined);
});

test('every flag has a MINIFLANNELD_* environment twin but the repeatable --static-peer', () => {
  for (const option of daemonCommand().options) {
    if (option.long === '--help' || option.long === '--static-peer') continue;
    const expected = `MINIFLANNELD_${option.long!.slice(2).toUpperCase().replace(/-/g, '_')}`;
    assert.equal(option.envVar, expected, option.long);
  }
});

test('environment values are read and checked like flags', () => {
  const config = withEnv({ MINIFLANNELD_IP_MASQ: 'true', MINIFLANNELD_LEASE_RENEW_MARGIN: '90s', MINIFLANNELD_PUBLIC_IP: '198.18.0.7' }, () => parseDaemonFlags(argv()));
  assert.equal(config.ipMasq, true);
  assert.equal(config.leaseRenewMarginMs, 90_000);
  assert.equal(config.publicIp, '198.18.0.7');
  assert.throws(() => withEnv({ MINIFLANNELD_PUBLIC_IP: '198.18.0.700' }, () => parseDaemonFlags(argv())), CommanderError);
});

test('durations: units, and bare minutes as flannel takes them', () => {
  assert.equal(parseDaemonFlags(argv('--lease-renew-margin', '2h')).leaseRenewMarginMs, 7_200_000);
  assert.equal(parseDaemonFlags(argv('--lease-renew-margin', '30')).leaseRenewMarginMs, 1_800_000);
  assert.throws(() => parseDaemonFlags(argv('--lease-renew-margin', 'soon')), CommanderError);
  assert.throws(() => parseDaemonFlags(argv('--lease-renew-margin', '0')), CommanderError);
});

test('the TUN queue length: 2000 by default, a whole number of packets within bounds', () => {
  assert.equal(parseDaemonFlags(argv()).tunTxQueueLength, 2000);
  assert.equal(parseDaemonFlags(argv('--tun-txqueuelen', '5000')).tunTxQueueLength, 5000);
  assert.equal(withEnv({ MINIFLANNELD_TUN_TXQUEUELEN: '750' }, () => parseDaemonFlags(argv())).tunTxQueueLength, 750);
  for (const bad of ['0', '-1', '1.5', 'lots', '100001']) {
    assert.throws(() => parseDaemonFlags(argv('--tun-txqueuelen', bad)), CommanderError, bad);
  }
});

test('static mode needs both the network and the subnet, and parses peers', () => {
  assert.throws(() => parseDaemonFlags(argv('--static-network', '10.244.0.0/16')), UsageError);
  const config = parseDaemonFlags(
    argv('--static-network', '10.244.0.0/16', '--static-subnet', '10.244.1.0/24', '--static-peer', '10.244.2.0/24=198.18.0.2', '--static-peer', '10.244.3.0/24=198.18.0.3:9000'),
  );
  assert.equal(formatCidr(config.static!.network), '10.244.0.0/16');
  assert.deepEqual(config.static!.peers.map((p) => [formatCidr(p.subnet), p.address, p.port]), [
    ['10.244.2.0/24', '198.18.0.2', 8285],
    ['10.244.3.0/24', '198.18.0.3', 9000],
  ]);
  assert.throws(() => parseDaemonFlags(argv('--static-peer', '10.244.2.0/24')), CommanderError);
});

test('the health server listens on an address of either family: an IPv6-only node has no IPv4 one', () => {
  assert.equal(parseDaemonFlags(argv()).healthzIp, '0.0.0.0');
  assert.equal(parseDaemonFlags(argv('--healthz-ip', '::')).healthzIp, '::');
  assert.equal(parseDaemonFlags(argv('--healthz-ip', '2001:2::1')).healthzIp, '2001:2::1');
  assert.throws(() => parseDaemonFlags(argv('--healthz-ip', '2001:2::zz')), /'2001:2::zz' is not an IPv6 address/);
  assert.throws(() => parseDaemonFlags(argv('--healthz-ip', '198.18.0.300')), /'198.18.0.300' is not an IPv4 address/);
});

test('bad values are refused with the flag named', () => {
  assert.throws(() => parseDaemonFlags(argv('--tun-name', 'a-very-long-tun-name')), /--tun-name/);
  assert.throws(() => parseDaemonFlags(argv('--healthz-port', '70000')), CommanderError);
  assert.throws(() => parseDaemonFlags(argv('--transport', 'carrier-pigeon')), CommanderError);
});

test('lease TTL, replica count and Redis CA: checked against each other and the URL', () => {
  assert.equal(parseDaemonFlags(argv()).leaseTtlMs, 24 * 3_600_000);
  assert.equal(parseDaemonFlags(argv()).redisMinReplicas, undefined, 'auto: derived from the URL when connecting');
  assert.equal(parseDaemonFlags(argv('--redis-min-replicas', '2')).redisMinReplicas, 2);
  assert.equal(parseDaemonFlags(argv('--redis-min-replicas', 'auto')).redisMinReplicas, undefined);
  assert.throws(() => parseDaemonFlags(argv('--redis-min-replicas', 'two')), CommanderError);
  const short = parseDaemonFlags(argv('--lease-ttl', '30s', '--lease-renew-margin', '20s'));
  assert.deepEqual([short.leaseTtlMs, short.leaseRenewMarginMs], [30_000, 20_000]);
  assert.throws(() => parseDaemonFlags(argv('--lease-ttl', '30s')), /--lease-renew-margin .* must be below --lease-ttl/);
  assert.throws(() => parseDaemonFlags(argv('--redis-url', 'redis://127.0.0.1', '--redis-ca-file', '/etc/hostname')), /--redis-ca-file is only used with TLS/);
  assert.throws(() => parseDaemonFlags(argv('--redis-url', 'rediss://127.0.0.1', '--redis-ca-file', '/nonexistent/ca.pem')), /--redis-ca-file \/nonexistent\/ca\.pem: cannot read it \(ENOENT\)/);
  assert.throws(() => parseDaemonFlags(argv('--redis-url', 'redis://u:hunter2@host:port')), (err: Error) => err instanceof UsageError && /--redis-url: .*u:\*\*\*@/.test(err.message) && !err.message.includes('hunter2'));
});

test('an on/off variable means what it says: MINIFLANNELD_IP_MASQ=false is off, a typo is refused', () => {
  for (const [value, expected] of [['true', true], ['1', true], ['false', false], ['0', false], ['off', false]] as const) {
    assert.equal(withEnv({ MINIFLANNELD_IP_MASQ: value }, () => parseDaemonFlags(argv())).ipMasq, expected, value);
  }
  assert.equal(withEnv({ MINIFLANNELD_IP_MASQ: 'false' }, () => parseDaemonFlags(argv('--ip-masq'))).ipMasq, true, 'the flag wins');
  assert.throws(() => withEnv({ MINIFLANNELD_IP_MASQ: 'flase' }, () => parseDaemonFlags(argv())), /MINIFLANNELD_IP_MASQ="flase" is not a switch/);
});

test('--public-ipv6 and its twin: an IPv6 address, published in the lease as PublicIPv6; none by default', () => {
  assert.equal(parseDaemonFlags(argv()).publicIpv6, undefined);
  assert.equal(parseDaemonFlags(argv('--public-ipv6', 'fd00:198:18::7')).publicIpv6, 'fd00:198:18::7');
  assert.equal(withEnv({ MINIFLANNELD_PUBLIC_IPV6: '2001:db8::7' }, () => parseDaemonFlags(argv())).publicIpv6, '2001:db8::7');
  for (const bad of ['198.18.0.7', 'fd00::1::2', 'fd00::1/64', 'fe80::1%eth0', '']) {
    assert.throws(() => parseDaemonFlags(argv('--public-ipv6', bad)), (err: Error) => err instanceof CommanderError && /--public-ipv6/.test(err.message) && /is not an IPv6 address/.test(err.message), bad);
  }
  assert.throws(
    () => withEnv({ MINIFLANNELD_PUBLIC_IPV6: 'fd00::zz' }, () => parseDaemonFlags(argv())),
    (err: Error) => err instanceof CommanderError && /MINIFLANNELD_PUBLIC_IPV6/.test(err.message) && /'fd00::zz' is not an IPv6 address/.test(err.message),
  );
});

test('--underlay and its twin: IPv4 by default; IPv6 needs --public-ipv6, and is refused in static mode', () => {
  assert.equal(parseDaemonFlags(argv()).underlay, 4);
  assert.equal(parseDaemonFlags(argv('--underlay', 'ipv6', '--public-ipv6', '2001:2::1')).underlay, 6);
  assert.equal(withEnv({ MINIFLANNELD_UNDERLAY: 'ipv6', MINIFLANNELD_PUBLIC_IPV6: '2001:2::1' }, () => parseDaemonFlags(argv())).underlay, 6);
  const usage = (args: string[], pattern: RegExp) => assert.throws(() => parseDaemonFlags(argv(...args)), (err: Error) => err instanceof UsageError && pattern.test(err.message), args.join(' '));
  usage(['--underlay', 'ipv6'], /^--underlay ipv6 needs --public-ipv6/);
  usage(['--underlay', 'ipv6', '--public-ipv6', '2001:2::1', '--static-network', '10.244.0.0/16', '--static-subnet', '10.244.1.0/24'], /not available in static mode/);
  assert.throws(() => parseDaemonFlags(argv('--underlay', 'ip6')), (err: Error) => err instanceof CommanderError && /--underlay/.test(err.message));
  assert.equal(parseDaemonFlags(argv('--underlay', 'dual', '--public-ipv6', '2001:2::1')).underlay, 'dual');
  usage(['--underlay', 'dual'], /^--underlay dual needs --public-ipv6/);
  usage(['--underlay', 'dual', '--public-ipv6', '2001:2::1', '--static-network', '10.244.0.0/16', '--static-subnet', '10.244.1.0/24'], /^--underlay dual is not available in static mode/);
});

test('--peer-metrics is off unless asked for, by flag or by MINIFLANNELD_PEER_METRICS', () => {
  assert.equal(parseDaemonFlags(argv()).peerMetrics, false);
  assert.equal(parseDaemonFlags(argv('--peer-metrics')).peerMetrics, true);
  assert.equal(withEnv({ MINIFLANNELD_PEER_METRICS: 'true' }, () => parseDaemonFlags(argv())).peerMetrics, true);
  assert.equal(withEnv({ MINIFLANNELD_PEER_METRICS: 'false' }, () => parseDaemonFlags(argv())).peerMetrics, false);
  assert.throws(() => withEnv({ MINIFLANNELD_PEER_METRICS: 'maybe' }, () => parseDaemonFlags(argv())), /MINIFLANNELD_PEER_METRICS="maybe" is not a switch/);
});
