// Endpoints of either family, and the memory transport as an IPv6 underlay:
// what the data plane relies on before any socket is involved.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidAddressError, parseIPv4 } from '../../daemon/net/ipv4.js';
import { formatIPv6, parseIPv6, type IPv6Address } from '../../daemon/net/ipv6.js';
import { addressFamily, endpointFamily, formatEndpoint, parseEndpoint, type DatagramBatch } from '../../daemon/transport/index.js';
import { MemoryNetwork, type MemoryTransport } from '../../daemon/transport/memory.js';
import { openMmsgTransport } from '../../daemon/transport/mmsg.js';
import { openDgramTransport } from '../../daemon/transport/dgram.js';

describe('parseEndpoint', () => {
  it('keeps a dotted quad as it is, with its number', () => {
    const endpoint = parseEndpoint('198.18.0.1', 8285);
    assert.deepEqual(endpoint, { address: '198.18.0.1', ip: parseIPv4('198.18.0.1'), port: 8285 });
    assert.equal(endpointFamily(endpoint), 4);
    assert.equal(formatEndpoint(endpoint), '198.18.0.1:8285');
  });

  it('writes an IPv6 address in RFC 5952 form, with its words and ip 0', () => {
    const endpoint = parseEndpoint('2001:0002:0000:0000:0000:0000:0000:00A1', 8285);
    assert.deepEqual(endpoint, { address: '2001:2::a1', ip: 0, ip6: [0x20010002, 0, 0, 0xa1], port: 8285 });
    assert.equal(endpointFamily(endpoint), 6);
    assert.equal(formatEndpoint(endpoint), '[2001:2::a1]:8285');
  });

  it('refuses a host name or a zoned address with InvalidAddressError, and a bad port with RangeError', () => {
    assert.throws(() => parseEndpoint('node-a', 8285), InvalidAddressError);
    assert.throws(() => parseEndpoint('fe80::1%eth0', 8285), InvalidAddressError);
    assert.throws(() => parseEndpoint('2001:2::1', 65536), { name: 'RangeError', message: 'endpoint port 65536 is not an integer in 0..65535' });
  });

  it('addressFamily tells a bind address family', () => {
    assert.equal(addressFamily('0.0.0.0'), 4);
    assert.equal(addressFamily('::'), 6);
    assert.equal(addressFamily('2001:2::1'), 6);
    assert.throws(() => addressFamily('localhost'), InvalidAddressError);
  });
});

describe('opening a socket transport on an address of neither family', () => {
  it('mmsg refuses it in one line naming the address and port, before any socket exists', () => {
    assert.throws(() => openMmsgTransport({ bindAddress: 'node-a', port: 8285 }), {
      code: 'EINVAL',
      message: "EINVAL: 'node-a' port 8285 is not an IPv4 or IPv6 address and port (Invalid argument)",
    });
  });

  it('dgram refuses it with InvalidAddressError', async () => {
    await assert.rejects(openDgramTransport({ bindAddress: 'node-a', port: 8285 }), InvalidAddressError);
  });
});

/** Each datagram a transport receives, with its sender as text. */
function recorder(transport: MemoryTransport): Array<{ from: string; data: string }> {
  const seen: Array<{ from: string; data: string }> = [];
  transport.start(
    (batch: DatagramBatch) => {
      for (let i = 0; i < batch.count; i++) {
        const from = batch.sourceIps6 === undefined ? `${batch.sourceIps[i]}` : formatIPv6([...batch.sourceIps6.subarray(4 * i, 4 * i + 4)] as unknown as IPv6Address);
        seen.push({ from: `${from}:${batch.sourcePorts[i]}`, data: batch.buffer.toString('latin1', batch.offsets[i], batch.offsets[i]! + batch.lengths[i]!) });
      }
    },
    (err) => assert.fail(err),
  );
  return seen;
}

describe('the memory transport on an IPv6 underlay', () => {
  it('is IPv6 by its bound address, and its batches carry IPv6 senders only', () => {
    const network = new MemoryNetwork();
    const a = network.open({ ip6: parseIPv6('2001:2::1'), port: 8285 });
    const b = network.open({ ip6: parseIPv6('2001:2::2'), port: 8285 });
    const b2 = network.open({ ip6: parseIPv6('2001:2::2'), port: 9000 });
    assert.equal(a.family, 6);
    const atB = recorder(b);
    const atB2 = recorder(b2);
    const buffer = Buffer.from('one two three four');
    const toB = parseEndpoint('2001:2::2', 8285);
    const toB2 = parseEndpoint('2001:2::2', 9000);
    // Runs to B, B2, B: the queue keeps each destination's 16 bytes and port apart.
    a.send(buffer, 0, 3, toB);
    a.send(buffer, 4, 3, toB2);
    a.send(buffer, 8, 5, toB);
    a.send(buffer, 14, 4, parseEndpoint('2001:2::9', 8285));
    assert.equal(a.flush(), 0);
    assert.deepEqual(atB, [
      { from: '2001:2::1:8285', data: 'one' },
      { from: '2001:2::1:8285', data: 'three' },
    ]);
    assert.deepEqual(atB2, [{ from: '2001:2::1:8285', data: 'two' }]);
    assert.equal(network.lost, 1, 'nothing is bound at [2001:2::9]:8285');
  });

  it('refuses to send to an endpoint of the other family with a RangeError, queueing nothing', () => {
    const network = new MemoryNetwork();
    const six = network.open({ ip6: parseIPv6('2001:2::1'), port: 8285 });
    const four = network.open({ ip: parseIPv4('198.18.0.1'), port: 8285 });
    assert.throws(() => six.send(Buffer.alloc(4), 0, 4, parseEndpoint('198.18.0.1', 8285)), {
      name: 'RangeError',
      message: 'endpoint 198.18.0.1:8285 is not reachable over this IPv6 transport',
    });
    assert.throws(() => four.send(Buffer.alloc(4), 0, 4, parseEndpoint('2001:2::1', 8285)), {
      name: 'RangeError',
      message: 'endpoint [2001:2::1]:8285 is not reachable over this IPv4 transport',
    });
    assert.equal(six.flush(), 0);
    assert.equal(network.lost, 0);
  });

  it('binds an IPv6 address and port once, and again after close', async () => {
    const network = new MemoryNetwork();
    const first = network.open({ ip6: parseIPv6('2001:2::1'), port: 8285 });
    assert.throws(() => network.open({ ip6: parseIPv6('2001:2::1'), port: 8285 }), { message: 'endpoint [2001:2::1]:8285 is already bound on this memory network' });
    network.open({ ip6: parseIPv6('2001:2::1'), port: 8286 });
    await first.close();
    assert.equal(network.open({ ip6: parseIPv6('2001:2::1'), port: 8285 }).family, 6);
  });
});
