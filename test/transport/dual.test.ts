// The dual transport: one socket of each family on one port, reached as one,
// over the in-memory underlay (no root).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4 } from '../../daemon/net/ipv4.js';
import { formatIPv6, parseIPv6 } from '../../daemon/net/ipv6.js';
import { DualTransport } from '../../daemon/transport/dual.js';
import { parseEndpoint, type DatagramBatch } from '../../daemon/transport/index.js';
import { MemoryNetwork, type MemoryTransport } from '../../daemon/transport/memory.js';

/** Starts `transport` and returns what it receives, as "sender payload" lines. */
function collect(transport: { start: MemoryTransport['start'] }): string[] {
  const seen: string[] = [];
  transport.start((batch: DatagramBatch) => {
    for (let i = 0; i < batch.count; i++) {
      const payload = batch.buffer.toString('utf8', batch.offsets[i]!, batch.offsets[i]! + batch.lengths[i]!);
      const from = batch.sourceIps6 === undefined ? `${batch.sourceIps[i]! >>> 24}.${(batch.sourceIps[i]! >>> 16) & 255}.${(batch.sourceIps[i]! >>> 8) & 255}.${batch.sourceIps[i]! & 255}` : `[${formatIPv6([...batch.sourceIps6.subarray(4 * i, 4 * i + 4)] as never)}]`;
      seen.push(`${from}:${batch.sourcePorts[i]} ${payload}`);
    }
  }, (err) => assert.fail(err));
  return seen;
}

describe('DualTransport', () => {
  const network = new MemoryNetwork();
  const dual = new DualTransport(network.open({ ip: parseIPv4('198.18.0.1'), port: 8285 }), network.open({ ip6: parseIPv6('2001:2::1'), port: 8285 }));
  const peer4 = network.open({ ip: parseIPv4('198.18.0.2'), port: 8285 });
  const peer6 = network.open({ ip6: parseIPv6('2001:2::3'), port: 8285 });
  const atDual = collect(dual);
  const at4 = collect(peer4);
  const at6 = collect(peer6);

  it('is one port reaching both families', () => {
    assert.equal(dual.family, 'dual');
    assert.equal(dual.port, 8285);
  });

  it('sends each datagram over the family of its destination, and flushes both', () => {
    const out = Buffer.from('to-v4to-v6');
    assert.ok(dual.send(out, 0, 5, parseEndpoint('198.18.0.2', 8285)));
    assert.ok(dual.send(out, 5, 5, parseEndpoint('2001:2::3', 8285)));
    assert.equal(dual.flush(), 0);
    assert.deepEqual(at4, ['198.18.0.1:8285 to-v4']);
    assert.deepEqual(at6, ['[2001:2::1]:8285 to-v6']);
  });

  it('hands on what either socket receives, each batch with its own family of sender', () => {
    peer4.send(Buffer.from('from-v4'), 0, 7, parseEndpoint('198.18.0.1', 8285));
    peer4.flush();
    peer6.send(Buffer.from('from-v6'), 0, 7, parseEndpoint('2001:2::1', 8285));
    peer6.flush();
    assert.deepEqual(atDual, ['198.18.0.2:8285 from-v4', '[2001:2::3]:8285 from-v6']);
  });

  it('refuses to join two transports of one family, or of two ports', () => {
    const other = new MemoryNetwork();
    const v4 = other.open({ ip: parseIPv4('198.18.0.9'), port: 8285 });
    assert.throws(() => new DualTransport(v4, other.open({ ip: parseIPv4('198.18.0.10'), port: 8285 })), /joins an IPv4 and an IPv6 transport, not IPv4 and IPv4/);
    assert.throws(() => new DualTransport(v4, other.open({ ip6: parseIPv6('2001:2::9'), port: 9000 })), /share one port, not 8285 and 9000/);
  });
});
