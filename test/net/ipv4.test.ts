import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  blockSize,
  cidrContains,
  formatCidr,
  formatIPv4,
  InvalidAddressError,
  lastAddress,
  maskOf,
  parseCidr,
  parseIPv4,
  tryParseIPv4,
} from '../../daemon/net/ipv4.js';

/** A deliberately naive reference parser. */
function referenceParse(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

/** Naive containment: compare the first prefixLength bits as binary strings. */
function referenceContains(network: number, prefixLength: number, address: number): boolean {
  const bits = (n: number): string => n.toString(2).padStart(32, '0');
  return bits(network).slice(0, prefixLength) === bits(address).slice(0, prefixLength);
}

describe('parseIPv4 / formatIPv4', () => {
  it('parses dotted quads to unsigned numbers', () => {
    assert.equal(parseIPv4('0.0.0.0'), 0);
    assert.equal(parseIPv4('10.5.0.1'), 0x0a050001);
    assert.equal(parseIPv4('255.255.255.255'), 0xffffffff);
    assert.equal(parseIPv4('200.1.2.3'), 0xc8010203);
    assert.ok(parseIPv4('200.1.2.3') > parseIPv4('10.0.0.0'), 'high addresses stay positive');
  });

  it('formats unsigned and signed 32-bit forms alike', () => {
    assert.equal(formatIPv4(0xc8010203), '200.1.2.3');
    assert.equal(formatIPv4(0xc8010203 | 0), '200.1.2.3');
    assert.equal(formatIPv4(0), '0.0.0.0');
  });

  for (const bad of ['', '1.2.3', '1.2.3.4.5', '1.2.3.256', '01.2.3.4', '1..3.4', '1.2.3.4 ', ' 1.2.3.4', 'a.b.c.d', '1.2.3.-4', '1.2.3.4/24', '1.2.3.', '.1.2.3', '1234.1.1.1']) {
    it(`rejects ${JSON.stringify(bad)} with InvalidAddressError`, () => {
      assert.throws(() => parseIPv4(bad), (err: unknown) => err instanceof InvalidAddressError && err.input === bad);
      assert.equal(tryParseIPv4(bad), -1);
    });
  }

  it('round-trips every address', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => parseIPv4(formatIPv4(n)) === n));
  });

  it('agrees with a naive parser on arbitrary dotted strings', () => {
    const piece = fc.oneof(fc.constantFrom('0', '00', '1', '01', '255', '256', '999', '', '-1', 'x'), fc.integer({ min: 0, max: 300 }).map(String));
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 6 }), (parts) => {
        const text = parts.join('.');
        const expected = referenceParse(text);
        assert.equal(tryParseIPv4(text), expected ?? -1, text);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('maskOf', () => {
  it('gives the netmask of each prefix length', () => {
    assert.equal(maskOf(0), 0);
    assert.equal(maskOf(1), 0x80000000);
    assert.equal(maskOf(24), 0xffffff00);
    assert.equal(maskOf(32), 0xffffffff);
    for (let p = 0; p <= 32; p++) assert.ok(maskOf(p) >= 0, `mask /${p} is unsigned`);
  });

  it('rejects lengths outside 0..32', () => {
    for (const bad of [-1, 33, 1.5, NaN]) assert.throws(() => maskOf(bad), InvalidAddressError);
  });
});

describe('parseCidr / formatCidr / cidrContains', () => {
  it('parses a network', () => {
    assert.deepEqual(parseCidr('10.5.0.0/16'), { network: 0x0a050000, prefixLength: 16 });
    assert.deepEqual(parseCidr('0.0.0.0/0'), { network: 0, prefixLength: 0 });
    assert.deepEqual(parseCidr('192.168.1.7/32'), { network: 0xc0a80107, prefixLength: 32 });
    assert.equal(formatCidr(parseCidr('172.16.0.0/12')), '172.16.0.0/12');
  });

  it('rejects host bits unless asked, and then returns the network', () => {
    assert.throws(() => parseCidr('10.5.3.7/24'), (err: unknown) => err instanceof InvalidAddressError && /host bits/.test(err.message));
    assert.deepEqual(parseCidr('10.5.3.7/24', { allowHostBits: true }), { network: 0x0a050300, prefixLength: 24 });
  });

  for (const bad of ['10.5.0.0', '10.5.0.0/', '10.5.0.0/33', '10.5.0.0/08', '10.5.0.0/1a', '10.5.0/16', '/16', '10.5.0.0/16/1']) {
    it(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseCidr(bad), InvalidAddressError);
    });
  }

  it('contains exactly the addresses a naive bit comparison says', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 0xffffffff }), (seed, prefixLength, address) => {
        const network = (seed & maskOf(prefixLength)) >>> 0;
        return cidrContains({ network, prefixLength }, address) === referenceContains(network, prefixLength, address);
      }),
      { numRuns: 3000 },
    );
    const net = parseCidr('10.5.0.0/16');
    assert.ok(cidrContains(net, parseIPv4('10.5.255.255')));
    assert.ok(!cidrContains(net, parseIPv4('10.6.0.0')));
  });

  it('computes block sizes and last addresses', () => {
    assert.equal(blockSize(24), 256);
    assert.equal(blockSize(0), 2 ** 32);
    assert.equal(formatIPv4(lastAddress(parseCidr('10.5.0.0/16'))), '10.5.255.255');
    assert.equal(lastAddress(parseCidr('0.0.0.0/0')), 0xffffffff);
  });
});
