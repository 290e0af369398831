import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { InvalidAddressError } from '../../daemon/net/ipv4.js';
import {
  cidr6Contains,
  cidr6ContainsAt,
  formatCidr6,
  formatIPv6,
  nthSubnet6,
  parseCidr6,
  parseIPv6,
  readIPv6,
  subnetIndex6,
  writeIPv6,
} from '../../daemon/net/ipv6.js';
import type { IPv6Address } from '../../daemon/net/ipv6.js';

const group = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 0xff }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
/** Eight 16-bit groups, zero-heavy so that runs of zeros (and ties between them) are common. */
const groups = fc.array(group, { minLength: 8, maxLength: 8 });

function wordsOf(g: readonly number[]): IPv6Address {
  const word = (i: number): number => ((g[i]! << 16) | g[i + 1]!) >>> 0;
  return [word(0), word(2), word(4), word(6)];
}

const anyAddress = groups.map(wordsOf);

function toBigInt(address: IPv6Address): bigint {
  return address.reduce((sum, word) => (sum << 32n) | BigInt(word), 0n);
}

function fromBigInt(value: bigint): IPv6Address {
  const word = (i: number): number => Number((value >> BigInt(32 * i)) & 0xffffffffn);
  return [word(3), word(2), word(1), word(0)];
}

function isMapped(address: IPv6Address): boolean {
  return address[0] === 0 && address[1] === 0 && address[2] === 0xffff;
}

/** Node's own canonical form: WHATWG URL serialisation, without the brackets. */
function whatwg(text: string): string {
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

describe('parseIPv6', () => {
  const cases: Array<[string, IPv6Address]> = [
    ['2001:db8:0:0:0:0:2:1', [0x20010db8, 0, 0, 0x00020001]],
    ['2001:0DB8:0000:0000:0000:0000:0002:0001', [0x20010db8, 0, 0, 0x00020001]],
    ['2001:db8::2:1', [0x20010db8, 0, 0, 0x00020001]],
    ['::', [0, 0, 0, 0]],
    ['::1', [0, 0, 0, 1]],
    ['fe80::', [0xfe800000, 0, 0, 0]],
    ['1:2:3:4:5:6:7::', [0x00010002, 0x00030004, 0x00050006, 0x00070000]],
    ['::2:3:4:5:6:7:8', [0x00000002, 0x00030004, 0x00050006, 0x00070008]],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]],
    ['::ffff:198.18.0.1', [0, 0, 0xffff, 0xc6120001]],
    ['64:ff9b::198.18.0.1', [0x0064ff9b, 0, 0, 0xc6120001]],
    ['1:2:3:4:5:6:198.18.0.1', [0x00010002, 0x00030004, 0x00050006, 0xc6120001]],
  ];
  for (const [text, words] of cases) {
    it(`parses ${text}`, () => assert.deepEqual(parseIPv6(text), words));
  }

  const rejections: Array<[string, RegExp]> = [
    ['', /is empty/],
    ['fe80::1%eth0', /zone IDs/],
    ['fe80::%1', /zone IDs/],
    ['1::2::3', /more than one "::"/],
    ['1:::2', /more than one "::"/],
    ['12345::', /"12345" has more than 4 hex digits/],
    ['1:2:3:4:5:6:7', /7 groups, not 8/],
    ['1:2:3:4:5:6:7:8:9', /more than 8 groups/],
    ['1:2:3:4:5:6:7:8::', /more than 8 groups|8 groups and a "::"/],
    ['1:2:3:4::5:6:7:8', /8 groups and a "::"/],
    [':1:2:3:4:5:6:7', /starts with a single ":"/],
    ['1:2:3:4:5:6:7:', /ends with a single ":"/],
    ['198.18.0.1', /it is an IPv4 address/],
    ['::ffff:198.18.0', /"198.18.0" is not a dotted quad/],
    ['::ffff:198.018.0.1', /is not a dotted quad/],
    ['1:2:3:4:5:6:7:198.18.0.1', /must be the last 32 bits/],
    ['::198.18.0.1:1', /is not a dotted quad/],
    ['[::1]', /unexpected "\[" at position 0/],
    [' ::1', /unexpected " "/],
    ['::1 ', /unexpected " "/],
    ['g::1', /unexpected "g"/],
    ['fd00::/8', /unexpected "\/"/],
  ];
  for (const [bad, why] of rejections) {
    it(`rejects ${JSON.stringify(bad)}: ${why.source}`, () => {
      assert.throws(
        () => parseIPv6(bad),
        (err: unknown) => err instanceof InvalidAddressError && err.input === bad && why.test(err.message) && err.message.includes('not an IPv6 address'),
      );
      // Node accepts zone IDs; a config or a packet has no use for one.
      assert.equal(isIPv6(bad), bad.includes('%'), 'Node agrees, zone IDs apart');
    });
  }

  it('accepts exactly what Node accepts, and reads the same address as WHATWG, on arbitrary colon strings', () => {
    const piece = fc.oneof(
      fc.constantFrom('', '', '0', '00000', 'ffff', 'FFFF', 'fffff', 'g', '1.2.3.4', '198.18.0.01', '1.2.3', ' ', '::'),
      fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16)),
    );
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 10 }), (parts) => {
        const text = parts.join(':');
        let parsed: IPv6Address | undefined;
        try {
          parsed = parseIPv6(text);
        } catch (err) {
          assert.ok(err instanceof InvalidAddressError, text);
        }
        assert.equal(parsed !== undefined, isIPv6(text), text);
        if (parsed !== undefined) assert.equal(toBigInt(parsed), toBigInt(parseIPv6(whatwg(text))), text);
      }),
      { numRuns: 5000 },
    );
  });

  it('reads every text form of an address (upper case, leading zeros, any zero run compressed, dotted tail) as that address', () => {
    const form = fc.record({
      upper: fc.boolean(),
      pad: fc.boolean(),
      compress: fc.nat(),
      dottedTail: fc.boolean(),
    });
    fc.assert(
      fc.property(groups, form, (g, { upper, pad, compress, dottedTail }) => {
        let texts = g.map((n) => (pad ? n.toString(16).padStart(4, '0') : n.toString(16)));
        if (upper) texts = texts.map((t) => t.toUpperCase());
        if (dottedTail) texts.splice(6, 2, `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`);
        // Compress some run of zero groups (not the dotted tail), if there is one.
        const zeroStarts = texts.map((_, i) => i).filter((i) => g[i] === 0 && !(dottedTail && i >= 6));
        let text = texts.join(':');
        if (zeroStarts.length > 0) {
          const start = zeroStarts[compress % zeroStarts.length]!;
          let end = start;
          while (end < texts.length && g[end] === 0 && !(dottedTail && end >= 6)) end++;
          text = `${texts.slice(0, start).join(':')}::${texts.slice(end).join(':')}`;
        }
        assert.deepEqual(parseIPv6(text), wordsOf(g), text);
        assert.ok(isIPv6(text), text);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('formatIPv6 (RFC 5952)', () => {
  const examples: Array<[string, string]> = [
    ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'], // 4.2.1: shorten as much as possible
    ['2001:0db8::0001', '2001:db8::1'], // 4.1: no leading zeros
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // 4.2.3: the first of equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // 4.2.2: a single zero group stays
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // 4.2.3: the longest run
    ['2001:DB8::AAAA', '2001:db8::aaaa'], // 4.3: lower case
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['0:1:0:1:0:1:0:1', '0:1:0:1:0:1:0:1'],
    ['::ffff:198.18.0.1', '::ffff:198.18.0.1'], // 5: IPv4-mapped in mixed notation
    ['::ffff:c612:1', '::ffff:198.18.0.1'],
    ['::198.18.0.1', '::c612:1'], // deprecated IPv4-compatible: hex
    ['::fffe:c612:1', '::fffe:c612:1'],
  ];
  for (const [input, canonical] of examples) {
    it(`writes ${input} as ${canonical}`, () => assert.equal(formatIPv6(parseIPv6(input)), canonical));
  }

  it('round-trips every address', () => {
    fc.assert(fc.property(anyAddress, (address) => assert.deepEqual(parseIPv6(formatIPv6(address)), address)), { numRuns: 3000 });
  });

  it('matches WHATWG URL serialisation (Node), which differs only by writing IPv4-mapped addresses in hex', () => {
    fc.assert(
      fc.property(anyAddress, (address) => {
        const ours = formatIPv6(address);
        if (isMapped(address)) {
          assert.match(ours, /^::ffff:\d+\.\d+\.\d+\.\d+$/);
          assert.match(whatwg(ours), /^::ffff:[0-9a-f]+:[0-9a-f]+$/);
          assert.deepEqual(parseIPv6(whatwg(ours)), address);
        } else {
          assert.equal(ours, whatwg(ours));
        }
      }),
      { numRuns: 3000 },
    );
    assert.equal(whatwg('::ffff:198.18.0.1'), '::ffff:c612:1');
  });
});

describe('parseCidr6 / formatCidr6', () => {
  it('parses and formats blocks', () => {
    assert.deepEqual(parseCidr6('fd00:10:244::/48'), { network: [0xfd000010, 0x02440000, 0, 0], prefixLength: 48 });
    assert.deepEqual(parseCidr6('::/0'), { network: [0, 0, 0, 0], prefixLength: 0 });
    assert.deepEqual(parseCidr6('fd00::1/128'), { network: [0xfd000000, 0, 0, 1], prefixLength: 128 });
    assert.equal(formatCidr6(parseCidr6('FD00:0010:0244:0000::/64')), 'fd00:10:244::/64');
  });

  it('rejects host bits, naming the network, unless allowHostBits masks them', () => {
    assert.throws(
      () => parseCidr6('fd00:10:244:1::5/64'),
      (err: unknown) => err instanceof InvalidAddressError && /host bits set; the network is fd00:10:244:1::\/64/.test(err.message),
    );
    assert.throws(() => parseCidr6('fd00::4000:0:0:0/65'), /the network is fd00::\/65/);
    assert.equal(formatCidr6(parseCidr6('fd00:10:244:1::5/64', { allowHostBits: true })), 'fd00:10:244:1::/64');
    assert.equal(formatCidr6(parseCidr6('fd00:ffff:ffff:ffff:ffff::/33', { allowHostBits: true })), 'fd00:ffff:8000::/33');
    assert.equal(formatCidr6(parseCidr6('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/0', { allowHostBits: true })), '::/0');
  });

  const rejections: Array<[string, RegExp]> = [
    ['fd00::', /no "\/prefix"/],
    ['fd00::/', /prefix length is not a number in 0..128/],
    ['fd00::/129', /prefix length/],
    ['fd00::/064', /prefix length/],
    ['fd00::/6a', /prefix length/],
    ['fd00::/-1', /prefix length/],
    ['fd00::1%eth0/64', /zone IDs/],
    ['fd00:::/64', /more than one "::"/],
    ['10.0.0.0/8', /it is an IPv4 address/],
  ];
  for (const [bad, why] of rejections) {
    it(`rejects ${JSON.stringify(bad)}: ${why.source}`, () => {
      assert.throws(
        () => parseCidr6(bad),
        (err: unknown) => err instanceof InvalidAddressError && err.input === bad && why.test(err.message) && err.message.includes('not an IPv6 CIDR block'),
      );
    });
  }

  it('round-trips every block', () => {
    fc.assert(
      fc.property(anyAddress, fc.integer({ min: 0, max: 128 }), (address, prefixLength) => {
        const cidr = parseCidr6(`${formatIPv6(address)}/${prefixLength}`, { allowHostBits: true });
        assert.deepEqual(parseCidr6(formatCidr6(cidr)), cidr);
      }),
    );
  });
});

describe('cidr6Contains / cidr6ContainsAt / readIPv6 / writeIPv6', () => {
  /** Naive containment: compare the first prefixLength bits as binary strings. */
  function referenceContains(network: IPv6Address, prefixLength: number, address: IPv6Address): boolean {
    const bits = (a: IPv6Address): string => toBigInt(a).toString(2).padStart(128, '0');
    return bits(network).slice(0, prefixLength) === bits(address).slice(0, prefixLength);
  }

  it('decides examples at word boundaries', () => {
    const pods = parseCidr6('fd00:10:244:1::/64');
    assert.equal(cidr6Contains(pods, parseIPv6('fd00:10:244:1:ffff:ffff:ffff:ffff')), true);
    assert.equal(cidr6Contains(pods, parseIPv6('fd00:10:244:2::')), false);
    assert.equal(cidr6Contains(pods, parseIPv6('fd00:10:244:0:ffff::')), false);
    assert.equal(cidr6Contains(parseCidr6('::/0'), parseIPv6('ffff::1')), true);
    assert.equal(cidr6Contains(parseCidr6('fd00::1/128'), parseIPv6('fd00::1')), true);
    assert.equal(cidr6Contains(parseCidr6('fd00::1/128'), parseIPv6('fd00::')), false);
    assert.equal(cidr6Contains(parseCidr6('fd00:8000::/33'), parseIPv6('fd00:7fff::')), false);
  });

  it('agrees with a naive reference, in place at any offset too', () => {
    fc.assert(
      fc.property(anyAddress, anyAddress, fc.integer({ min: 0, max: 128 }), fc.nat({ max: 40 }), (a, b, prefixLength, offset) => {
        // Derive the address from the network half the time, so that "inside" is common.
        const address = fromBigInt(toBigInt(b) % 2n === 0n ? toBigInt(a) ^ (toBigInt(b) >> BigInt(prefixLength)) : toBigInt(b));
        const cidr = parseCidr6(`${formatIPv6(a)}/${prefixLength}`, { allowHostBits: true });
        const expected = referenceContains(cidr.network, prefixLength, address);
        assert.equal(cidr6Contains(cidr, address), expected);
        const buf = Buffer.alloc(offset + 16 + 3, 0xa5);
        writeIPv6(buf, offset, address);
        assert.equal(cidr6ContainsAt(cidr, buf, offset), expected);
        assert.deepEqual(readIPv6(buf, offset), address);
      }),
      { numRuns: 3000 },
    );
  });

  it('writes network byte order', () => {
    const buf = Buffer.alloc(18);
    writeIPv6(buf, 1, parseIPv6('2001:db8::ff01'));
    assert.equal(buf.toString('hex'), `00${'20010db8'}${'00000000'}${'00000000'}${'0000ff01'}00`);
  });
});

describe('nthSubnet6 / subnetIndex6', () => {
  it('counts subnets from the network upwards', () => {
    const cluster = parseCidr6('fd00:10:244::/48');
    assert.equal(formatCidr6(nthSubnet6(cluster, 64, 0)), 'fd00:10:244::/64');
    assert.equal(formatCidr6(nthSubnet6(cluster, 64, 3)), 'fd00:10:244:3::/64');
    assert.equal(formatCidr6(nthSubnet6(cluster, 64, 0xffff)), 'fd00:10:244:ffff::/64');
    assert.equal(subnetIndex6(cluster, parseCidr6('fd00:10:244:3::/64')), 3);
    assert.equal(formatCidr6(nthSubnet6(cluster, 48, 0)), 'fd00:10:244::/48');
  });

  it('spans word boundaries', () => {
    const wide = parseCidr6('fd00::/20');
    // 52 index bits, from bit 20 to bit 72: across words 0, 1 and 2.
    const last = 2 ** 52 - 1;
    assert.equal(formatCidr6(nthSubnet6(wide, 72, last)), 'fd00:fff:ffff:ffff:ff00::/72');
    assert.equal(subnetIndex6(wide, nthSubnet6(wide, 72, last)), last);
    assert.equal(formatCidr6(nthSubnet6(wide, 72, 2 ** 32 + 5)), 'fd00:0:100:0:500::/72');
  });

  it('agrees with BigInt arithmetic and inverts', () => {
    fc.assert(
      fc.property(anyAddress, fc.integer({ min: 0, max: 128 }), fc.integer({ min: 0, max: 128 }), fc.nat(), (a, p1, p2, seed) => {
        const [outer, inner] = p1 <= p2 ? [p1, p2] : [p2, p1];
        const network = parseCidr6(`${formatIPv6(a)}/${outer}`, { allowHostBits: true });
        const bits = inner - outer;
        const limit = Math.min(2 ** bits, 2 ** 53);
        const index = bits > 31 ? Math.floor((seed / 0x7fffffff) * (limit - 1)) : seed % limit;
        const subnet = nthSubnet6(network, inner, index);
        const expected = toBigInt(network.network) + (BigInt(index) << BigInt(128 - inner));
        assert.equal(toBigInt(subnet.network), expected);
        assert.equal(subnet.prefixLength, inner);
        assert.equal(subnetIndex6(network, subnet), index);
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses what it cannot do, naming the limits', () => {
    const cluster = parseCidr6('fd00:10:244::/48');
    assert.throws(() => nthSubnet6(cluster, 64, 0x10000), (err: unknown) => err instanceof InvalidAddressError && /0\.\.2\^16-1/.test(err.message));
    assert.throws(() => nthSubnet6(cluster, 64, -1), InvalidAddressError);
    assert.throws(() => nthSubnet6(cluster, 64, 1.5), InvalidAddressError);
    assert.throws(() => nthSubnet6(cluster, 40, 0), /48\.\.128/);
    assert.throws(() => nthSubnet6(cluster, 129, 0), /48\.\.128/);
    assert.throws(() => subnetIndex6(cluster, parseCidr6('fd00:10:245::/64')), /is not inside fd00:10:244::\/48/);
    assert.throws(() => subnetIndex6(cluster, parseCidr6('fd00:10::/32')), /48\.\.128/);
    assert.throws(() => subnetIndex6(parseCidr6('::/0'), parseCidr6('20::/64')), /past the first 2\^53 of the 2\^64 subnets/);
    assert.equal(subnetIndex6(parseCidr6('::/0'), parseCidr6('1f:ffff:ffff:ffff::/64')), Number.MAX_SAFE_INTEGER);
  });
});
