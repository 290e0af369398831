// `miniflannel status` against a stand-in daemon: a loopback HTTP server
// serving a fixed GET /status document of the daemon's shape.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { emptyCounters, PeerEntry } from '../../daemon/dataplane/index.js';
import { createMetrics } from '../../daemon/http/metrics.js';
import { startHttpServer } from '../../daemon/http/server.js';
import { parseCidr } from '../../daemon/net/ipv4.js';
import { NodeStatus } from '../../daemon/node/status.js';
import { parseEndpoint } from '../../daemon/transport/index.js';
import { freePort } from '../../lab/redis.js';
import { oneLineError, runCli } from './helpers.js';

const EXPIRES_AT = Date.now() + 20 * 3600_000 + 30 * 60_000;

const STATUS = {
  node: { publicIP: '198.18.0.2', subnet: '10.244.3.0/24', network: '10.244.0.0/16', tun: 'flannel0', mtu: 1472 },
  lease: { subnet: '10.244.3.0/24', publicIP: '198.18.0.2', nodeName: 'node-b', expiresAt: EXPIRES_AT },
  store: { address: 'redis://10.0.0.5:6379', connected: true },
  peers: [
    { subnet: '10.244.1.0/24', endpoint: '198.18.0.1:8285' },
    { subnet: '10.244.7.0/24', endpoint: '198.18.0.3:8285' },
  ],
  counters: {
    tunPacketsRead: 1200,
    udpPacketsSent: 1197,
    udpBytesSent: 1_572_864,
    udpSendErrors: 0,
    udpPacketsReceived: 1100,
    tunPacketsWritten: 1099,
    tunBytesWritten: 1_400_000,
    icmpErrorsSent: 2,
    egressDrops: { 'not-ipv4': 0, 'no-route': 2, 'too-big': 1 },
    ingressDrops: { 'unknown-sender': 1, 'spoofed-source': 0 },
  },
  uptimeSeconds: 3725,
};

/** A dual-stack node: the IPv6 fields appear beside the IPv4 ones. */
const DUAL_STACK_STATUS = {
  ...STATUS,
  node: { ...STATUS.node, ipv6Subnet: 'fd00:10:244:3::/64', ipv6Network: 'fd00:10:244::/56' },
  lease: { ...STATUS.lease, ipv6Subnet: 'fd00:10:244:3::/64', publicIPv6: '2001:2::2' },
  peers: [
    { subnet: '10.244.1.0/24', ipv6Subnet: 'fd00:10:244:1::/64', endpoint: '198.18.0.1:8285' },
    { subnet: '10.244.7.0/24', endpoint: '198.18.0.3:8285' },
  ],
};

/** The shape before the daemon reported its lease and store (they must be optional), and spelled its node's publicIp so. */
const { publicIP: _spelledNow, ...NODE_WITHOUT_PUBLIC_IP } = STATUS.node;
const OLDER_STATUS = { node: { ...NODE_WITHOUT_PUBLIC_IP, publicIp: '198.18.0.2' }, peers: [], counters: STATUS.counters, uptimeSeconds: 59 };

let server: http.Server;
let base: string;

before(async () => {
  server = http.createServer((req, res) => {
    const send = (code: number, body: string) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(body);
    };
    switch (req.url) {
      case '/status':
        return send(200, JSON.stringify(STATUS));
      case '/dual/status':
        return send(200, JSON.stringify(DUAL_STACK_STATUS));
      case '/older/status':
        return send(200, JSON.stringify(OLDER_STATUS));
      case '/misshapen/status':
        return send(200, JSON.stringify({ node: 5, lease: 'x', store: [], peers: 'none', counters: null, uptimeSeconds: 59 }));
      case '/garbage/status':
        return send(200, '<html>');
      case '/silent/status':
        return; // never answers
      default:
        return send(404, 'not found\n');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  return new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('status', () => {
  it("shows the daemon's node, lease, store, peers, counters, drops and uptime", async () => {
    const result = await runCli(['status', '--daemon', base]);
    assert.equal(result.code, 0, result.stderr);
    const out = result.stdout;
    assert.match(out, new RegExp(`^Daemon:\\s+${base}$`, 'm'));
    assert.match(out, /^Uptime:\s+1h02m$/m);
    assert.match(out, /^Node\n {2}Public IP:\s+198\.18\.0\.2\n {2}Subnet:\s+10\.244\.3\.0\/24\n {2}Network:\s+10\.244\.0\.0\/16\n {2}TUN:\s+flannel0 \(MTU 1472\)$/m);
    assert.match(out, /^Lease\n {2}Subnet:\s+10\.244\.3\.0\/24\n {2}Public IP:\s+198\.18\.0\.2\n {2}Node:\s+node-b\n {2}Expires:\s+(\S+) \(in 20h(29|30)m\)$/m);
    assert.equal(/Expires:\s+(\S+)/.exec(out)![1], new Date(EXPIRES_AT).toISOString());
    assert.match(out, /^Store\n {2}Address:\s+redis:\/\/10\.0\.0\.5:6379\n {2}Connected:\s+yes$/m);
    assert.match(out, /^Peers \(2\)\n {2}SUBNET\s+ENDPOINT\n {2}10\.244\.1\.0\/24\s+198\.18\.0\.1:8285\n {2}10\.244\.7\.0\/24\s+198\.18\.0\.3:8285$/m);
    assert.match(out, /^ {2}TUN packets read:\s+1200$/m);
    assert.match(out, /^ {2}UDP packets sent:\s+1197$/m);
    assert.match(out, /^ {2}UDP bytes sent:\s+1572864 \(1\.5 MiB\)$/m);
    assert.match(out, /^ {2}UDP packets received:\s+1100$/m);
    assert.match(out, /^ {2}ICMP errors sent:\s+2$/m);
    // Only the reasons that dropped something.
    assert.match(out, /^Drops\n {2}egress no-route:\s+2\n {2}egress too-big:\s+1\n {2}ingress unknown-sender:\s+1$/m);
    assert.doesNotMatch(out, /not-ipv4|spoofed-source/);
  });

  it("shows a dual-stack node's IPv6 subnets, its IPv6 network and its public IPv6", async () => {
    const result = await runCli(['status', '--daemon', `${base}/dual`]);
    assert.equal(result.code, 0, result.stderr);
    const out = result.stdout;
    assert.match(out, /^Node\n {2}Public IP:\s+198\.18\.0\.2\n {2}Subnet:\s+10\.244\.3\.0\/24\n {2}Network:\s+10\.244\.0\.0\/16\n {2}IPv6 subnet:\s+fd00:10:244:3::\/64\n {2}IPv6 network:\s+fd00:10:244::\/56\n {2}TUN:/m);
    assert.match(out, /^Lease\n {2}Subnet:\s+10\.244\.3\.0\/24\n {2}IPv6 subnet:\s+fd00:10:244:3::\/64\n {2}Public IP:\s+198\.18\.0\.2\n {2}Public IPv6:\s+2001:2::2\n {2}Node:/m);
    assert.match(out, /^Peers \(2\)\n {2}SUBNET\s+IPV6 SUBNET\s+ENDPOINT\n {2}10\.244\.1\.0\/24\s+fd00:10:244:1::\/64\s+198\.18\.0\.1:8285\n {2}10\.244\.7\.0\/24\s+-\s+198\.18\.0\.3:8285$/m);
  });

  it('prints the status document as JSON, with the daemon URL first', async () => {
    const result = await runCli(['status', '--daemon', base, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const doc = JSON.parse(result.stdout);
    assert.deepEqual(doc, { daemon: base, ...STATUS });
    assert.deepEqual(Object.keys(doc), ['daemon', ...Object.keys(STATUS)]);
  });

  it('renders an older daemon\'s status: without lease and store, with no peers and no drops, and its node\'s publicIp', async () => {
    const url = `${base}/older`;
    const result = await runCli(['status', '--daemon', url]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^ {2}Public IP:\s+198\.18\.0\.2$/m);
    assert.doesNotMatch(result.stdout, /^Lease|^Store/m);
    assert.match(result.stdout, /^Peers \(0\)$/m);
    assert.match(result.stdout, /^Uptime:\s+59s$/m);
    assert.match(result.stdout, /^ {2}TUN packets written:\s+1099$/m);
  });

  it('shows sections of the wrong shape as absent instead of failing', async () => {
    const result = await runCli(['status', '--daemon', `${base}/misshapen`]);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout, /^Lease|^Store/m);
    assert.match(result.stdout, /^Peers \(0\)$/m);
    assert.match(result.stdout, /^Counters\s+none/m);
    assert.match(result.stdout, /^ {2}Subnet:\s+-$/m);
  });

  it("reads the document the daemon's own NodeStatus serves", async () => {
    const status = new NodeStatus();
    status.storeOpened({ address: 'redis://10.0.0.5:6379', connected: true });
    const lease = { subnet: '10.244.3.0/24', cidr: parseCidr('10.244.3.0/24'), publicIP: '198.18.0.2', nodeName: 'node-b', backendType: 'udp', backendData: {}, expiresAt: null };
    status.leaseAcquired({ lease });
    const counters = { ...emptyCounters(), tunPacketsRead: 5, egressDrops: { ...emptyCounters().egressDrops, 'no-route': 3 } };
    const node = { name: 'node-b', publicIP: '198.18.0.2', iface: 'eth0', subnet: '10.244.3.0/24', network: '10.244.0.0/16', tun: 'flannel0', mtu: 1472, port: 8285 };
    status.dataPathOpened(node, { snapshot: () => counters, peerTable: { size: 0, peers: () => [].values() } });
    const daemon = await startHttpServer(status, { host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), metrics: createMetrics(status) });
    try {
      const url = `http://127.0.0.1:${daemon.port}`;
      const result = await runCli(['status', '--daemon', url]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Node\n {2}Public IP:\s+198\.18\.0\.2\n {2}Subnet:\s+10\.244\.3\.0\/24\n {2}Network:\s+10\.244\.0\.0\/16\n {2}TUN:\s+flannel0 \(MTU 1472\)$/m);
      assert.match(result.stdout, /^Lease\n {2}Subnet:\s+10\.244\.3\.0\/24\n {2}Public IP:\s+198\.18\.0\.2\n {2}Node:\s+node-b\n {2}Expires:\s+never \(reserved\)$/m);
      assert.match(result.stdout, /^Store\n {2}Address:\s+redis:\/\/10\.0\.0\.5:6379\n {2}Connected:\s+yes$/m);
      assert.match(result.stdout, /^Peers \(0\)$/m);
      assert.match(result.stdout, /^ {2}TUN packets read:\s+5$/m);
      assert.match(result.stdout, /^Drops\n {2}egress no-route:\s+3$/m);
      const json = await runCli(['status', '--daemon', url, '--json']);
      const { daemon: shown, uptimeSeconds, ...doc } = JSON.parse(json.stdout);
      assert.equal(shown, url);
      assert.equal(typeof uptimeSeconds, 'number');
      const { uptimeSeconds: _, ...expected } = status.status();
      assert.deepEqual(doc, JSON.parse(JSON.stringify(expected)));
    } finally {
      await daemon.close();
    }
  });

  it('--peers: one row per peer with its traffic, in a table and in JSON', async () => {
    const status = new NodeStatus();
    const node = { name: 'node-b', publicIP: '198.18.0.2', iface: 'eth0', subnet: '10.244.3.0/24', network: '10.244.0.0/16', tun: 'flannel0', mtu: 1472, port: 8285 };
    const heard = { packetsSent: 12, bytesSent: 3_000_000, packetsReceived: 9, bytesReceived: 900, drops: 4, lastReceivedAt: Date.now() - 5_000 };
    const entries = [
      new PeerEntry({ subnet: parseCidr('10.244.7.0/24'), endpoint: parseEndpoint('198.18.0.7', 8285) }, heard),
      new PeerEntry({ subnet: parseCidr('10.244.8.0/24'), endpoint: parseEndpoint('198.18.0.8', 8285) }),
    ];
    status.dataPathOpened(node, { snapshot: () => emptyCounters(), peerTable: { size: 2, peers: () => entries.values() } });
    const daemon = await startHttpServer(status, { host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), metrics: createMetrics(status) });
    try {
      const url = `http://127.0.0.1:${daemon.port}`;
      const result = await runCli(['status', '--daemon', url, '--peers']);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^SUBNET\s+NODE\s+ENDPOINT\s+SENT\s+SENT BYTES\s+RECEIVED\s+RECEIVED BYTES\s+DROPS\s+LAST RECEIVED$/m);
      assert.match(result.stdout, /^10\.244\.7\.0\/24\s+-\s+198\.18\.0\.7:8285\s+12\s+2\.9 MiB\s+9\s+900 B\s+4\s+\d+s ago$/m);
      assert.match(result.stdout, /^10\.244\.8\.0\/24\s+-\s+198\.18\.0\.8:8285\s+0\s+0 B\s+0\s+0 B\s+0\s+never$/m);
      const json = JSON.parse((await runCli(['status', '--daemon', url, '--peers', '--json'])).stdout);
      assert.deepEqual(json.peers.map((p: { traffic: { packetsSent: number } }) => p.traffic.packetsSent), [12, 0]);
      assert.equal(json.peers[1].traffic.lastReceivedAt, null);
    } finally {
      await daemon.close();
    }
  });

  it('takes the daemon URL from MINIFLANNEL_DAEMON', async () => {
    const result = await runCli(['status', '--json'], { env: { MINIFLANNEL_DAEMON: base } });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).daemon, base);
  });

  it('fails with exit 1 and one line naming the URL when no daemon listens', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const result = await runCli(['status', '--daemon', url]);
    assert.equal(result.code, 1);
    assert.equal(oneLineError(result), `miniflannel: daemon unreachable at ${url}: ECONNREFUSED`);
    assert.equal(result.stdout, '');
  });

  it('fails with exit 1 within --timeout when the daemon does not answer', async () => {
    const url = `${base}/silent`;
    const started = Date.now();
    const result = await runCli(['status', '--daemon', url, '--timeout', '300']);
    assert.equal(result.code, 1);
    assert.equal(oneLineError(result), `miniflannel: daemon at ${url} did not answer within 300 ms (--timeout)`);
    assert.ok(Date.now() - started < 2_500, `took ${Date.now() - started} ms`);
  });

  it('fails with exit 1 on an answer that is not a status', async () => {
    const notFound = await runCli(['status', '--daemon', `${base}/nothing`]);
    assert.equal(notFound.code, 1);
    assert.match(oneLineError(notFound), /answered 404 Not Found for \/nothing\/status/);
    const garbage = await runCli(['status', '--daemon', `${base}/garbage`]);
    assert.equal(garbage.code, 1);
    assert.match(oneLineError(garbage), /sent a status that is not JSON/);
  });

  it('refuses a --daemon that is not an http URL with exit 2', async () => {
    for (const url of ['localhost:8286', 'ftp://127.0.0.1/']) {
      const result = await runCli(['status', '--daemon', url]);
      assert.equal(result.code, 2, url);
      assert.match(oneLineError(result), /^miniflannel: --daemon /);
    }
  });
});
