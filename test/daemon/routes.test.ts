// Reading the routes through a device from /proc, on the kernel's own text
// (captured from a namespace with a TUN holding 10.244.1.0/32 and
// fd00:10:244:1::/128, the two cluster networks routed into it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { routesThrough } from '../../daemon/node/routes.js';

const PROC: Record<string, string> = {
  '/proc/net/route': [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'eth0\t00000000\tFE0012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0',
    'eth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    'tunx\t0000F40A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0',
    '',
  ].join('\n'),
  '/proc/net/ipv6_route': [
    'fd000010024400010000000000000000 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     tunx',
    'fd000010024400000000000000000000 38 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001     tunx',
    '00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo',
    'fd000010024400010000000000000000 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001     tunx',
    'fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     tunx',
    'ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     tunx',
    '',
  ].join('\n'),
};
const read = (file: string) => PROC[file] ?? '';

test('the routes through a device: its IPv4 routes, and its IPv6 ones less its own address, local routes, link-local and multicast', () => {
  assert.deepEqual(routesThrough('tunx', read), ['10.244.0.0/16', 'fd00:10:244::/56']);
  assert.deepEqual(routesThrough('eth0', read), ['0.0.0.0/0', '198.18.0.0/24']);
  assert.deepEqual(routesThrough('flannel0', read), []);
});

test('a table that cannot be read gives no routes rather than an error', () => {
  assert.deepEqual(routesThrough('tunx', () => {
    throw new Error('ENOENT');
  }), []);
});
