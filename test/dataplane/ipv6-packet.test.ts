import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  checkIPv6,
  checkIPv6Header,
  destinationAddress6,
  IPV6_DESTINATION_OFFSET,
  IPV6_SOURCE_OFFSET,
  isNonUnicast6,
  MAX_EXTENSION_HEADERS,
  sourceAddress6,
} from '../../daemon/dataplane/ipv6-packet.js';
import type { UpperLayer } from '../../daemon/dataplane/ipv6-packet.js';
import { parseIPv6, writeIPv6 } from '../../daemon/net/ipv6.js';

const HOP_BY_HOP = 0;
const ROUTING = 43;
const FRAGMENT = 44;
const AH = 51;
const DESTINATION_OPTIONS = 60;
const TCP = 6;
const UDP = 17;
const NO_NEXT_HEADER = 59;

/** An extension header; its Next Header byte is filled in by ipv6Packet. */
interface Extension {
  kind: number;
  bytes: Buffer;
}

/** Hop-by-Hop, Routing or Destination Options: length in 8-byte units, not counting the first 8. */
function options(kind: number, extraUnits = 0): Extension {
  const bytes = Buffer.alloc((extraUnits + 1) * 8);
  bytes[1] = extraUnits;
  return { kind, bytes };
}

/** AH: length in 4-byte units, not counting the first two (RFC 4302). */
function authentication(lengthField: number): Extension {
  const bytes = Buffer.alloc((lengthField + 2) * 4);
  bytes[1] = lengthField;
  return { kind: AH, bytes };
}

function fragment(offsetUnits: number, more: boolean): Extension {
  const bytes = Buffer.alloc(8);
  bytes.writeUInt16BE((offsetUnits << 3) | (more ? 1 : 0), 2);
  bytes.writeUInt32BE(0xcafe, 4);
  return { kind: FRAGMENT, bytes };
}

function ipv6Packet(spec: { extensions?: Extension[]; protocol?: number; payload?: Buffer; source?: string; destination?: string } = {}): Buffer {
  const extensions = spec.extensions ?? [];
  const chain = extensions.map((e, i) => {
    const bytes = Buffer.from(e.bytes);
    bytes[0] = extensions[i + 1]?.kind ?? spec.protocol ?? UDP;
    return bytes;
  });
  const body = Buffer.concat([...chain, spec.payload ?? Buffer.alloc(12, 7)]);
  const header = Buffer.alloc(40);
  header.writeUInt32BE(0x60000000, 0);
  header.writeUInt16BE(body.length, 4);
  header[6] = extensions[0]?.kind ?? spec.protocol ?? UDP;
  header[7] = 64;
  writeIPv6(header, 8, parseIPv6(spec.source ?? 'fd00:10:244:1::2'));
  writeIPv6(header, 24, parseIPv6(spec.destination ?? 'fd00:10:244:2::3'));
  return Buffer.concat([header, body]);
}

function upperOf(packet: Buffer): UpperLayer {
  const upper: UpperLayer = { protocol: -1, headerLength: -1, laterFragment: true };
  assert.equal(checkIPv6(packet, 0, packet.length, upper), null);
  return upper;
}

describe('checkIPv6: the fixed header', () => {
  it('passes a well-formed packet at any offset in a larger buffer, and reads its addresses', () => {
    const packet = ipv6Packet();
    assert.deepEqual(upperOf(packet), { protocol: UDP, headerLength: 40, laterFragment: false });
    const arena = Buffer.alloc(packet.length + 37, 0xff);
    packet.copy(arena, 37);
    assert.equal(checkIPv6(arena, 37, packet.length), null);
    assert.deepEqual(sourceAddress6(arena, 37), parseIPv6('fd00:10:244:1::2'));
    assert.deepEqual(destinationAddress6(arena, 37), parseIPv6('fd00:10:244:2::3'));
  });

  it('calls an empty read or anything shorter than 40 bytes truncated', () => {
    const packet = ipv6Packet();
    for (let length = 0; length < 40; length++) {
      assert.equal(checkIPv6(packet, 0, length), 'truncated', `length ${length}`);
      // A buffer that ends where the read ended: nothing past it is touched.
      assert.equal(checkIPv6(Buffer.from(packet.subarray(0, length)), 0, length), 'truncated', `buffer of ${length}`);
    }
  });

  it('calls other versions not-ipv6, IPv4 included', () => {
    for (const version of [0, 4, 5, 7, 15]) {
      const packet = ipv6Packet();
      packet[0] = (version << 4) | (packet[0]! & 0x0f);
      assert.equal(checkIPv6(packet, 0, packet.length), 'not-ipv6', `version ${version}`);
    }
  });

  it('calls a packet cut short of its payload length truncated, and allows trailing bytes', () => {
    const packet = ipv6Packet();
    assert.equal(checkIPv6(packet, 0, packet.length - 1), 'truncated');
    const padded = Buffer.concat([packet, Buffer.alloc(6)]);
    assert.equal(checkIPv6(padded, 0, padded.length), null);
  });

  it('refuses a zero payload length (a jumbogram, or nothing to carry)', () => {
    const jumbo = ipv6Packet({ extensions: [options(HOP_BY_HOP)] });
    jumbo.writeUInt16BE(0, 4);
    assert.equal(checkIPv6(jumbo, 0, jumbo.length), 'bad-payload-length');
    const empty = ipv6Packet({ protocol: NO_NEXT_HEADER, payload: Buffer.alloc(0) });
    assert.equal(checkIPv6(empty, 0, empty.length), 'bad-payload-length');
  });
});

describe('checkIPv6: the extension-header walk', () => {
  it('follows a full chain to the upper layer, reading AH lengths in 4-byte units', () => {
    const packet = ipv6Packet({
      extensions: [options(HOP_BY_HOP), options(DESTINATION_OPTIONS, 1), options(ROUTING, 2), fragment(0, true), authentication(4), options(DESTINATION_OPTIONS)],
      protocol: TCP,
    });
    // 40 + 8 + 16 + 24 + 8 + (4 + 2) * 4 + 8
    assert.deepEqual(upperOf(packet), { protocol: TCP, headerLength: 128, laterFragment: false });
  });

  it('reads an AH of the smallest length as 8 bytes, where an 8-byte-unit reading would say 16', () => {
    const packet = ipv6Packet({ extensions: [authentication(0)], protocol: TCP });
    assert.equal(upperOf(packet).headerLength, 48);
  });

  it('stops at No Next Header and at headers it does not walk (ESP)', () => {
    assert.deepEqual(upperOf(ipv6Packet({ extensions: [options(DESTINATION_OPTIONS)], protocol: NO_NEXT_HEADER })), {
      protocol: NO_NEXT_HEADER,
      headerLength: 48,
      laterFragment: false,
    });
    assert.equal(upperOf(ipv6Packet({ protocol: 50 })).protocol, 50);
  });

  it(`walks ${MAX_EXTENSION_HEADERS} headers and refuses a ninth, and any longer chain`, () => {
    const chain = (n: number): Extension[] => Array.from({ length: n }, () => options(DESTINATION_OPTIONS));
    assert.equal(MAX_EXTENSION_HEADERS, 8);
    assert.deepEqual(upperOf(ipv6Packet({ extensions: chain(8) })), { protocol: UDP, headerLength: 40 + 64, laterFragment: false });
    for (const n of [9, 10, 100, 1000]) {
      const packet = ipv6Packet({ extensions: chain(n) });
      assert.equal(checkIPv6(packet, 0, packet.length), 'bad-extension-header', `${n} headers`);
    }
  });

  it('refuses Hop-by-Hop anywhere but first', () => {
    const packet = ipv6Packet({ extensions: [options(DESTINATION_OPTIONS), options(HOP_BY_HOP)] });
    assert.equal(checkIPv6(packet, 0, packet.length), 'bad-extension-header');
  });

  it('refuses a chain that runs past the payload length, even into trailing bytes that were read', () => {
    const cases: Array<[string, Buffer]> = [];
    const longOptions = ipv6Packet({ extensions: [options(DESTINATION_OPTIONS)], payload: Buffer.alloc(0) });
    longOptions[41] = 1; // claims 16 bytes; 8 are there
    cases.push(['an options header longer than the packet', longOptions]);
    const halfHeader = ipv6Packet({ protocol: DESTINATION_OPTIONS, payload: Buffer.alloc(1) });
    cases.push(['one byte of an options header', halfHeader]);
    const shortFragment = ipv6Packet({ protocol: FRAGMENT, payload: Buffer.alloc(4) });
    cases.push(['half a Fragment header', shortFragment]);
    const shortAh = ipv6Packet({ extensions: [authentication(0)], payload: Buffer.alloc(0) });
    shortAh[41] = 1; // claims 12 bytes; 8 are there
    cases.push(['an AH longer than the packet', shortAh]);
    const lastInChain = ipv6Packet({ extensions: [options(ROUTING), fragment(0, true)], protocol: AH, payload: Buffer.alloc(3) });
    cases.push(['an AH cut after three bytes, third in the chain', lastInChain]);
    for (const [what, packet] of cases) {
      assert.equal(checkIPv6(packet, 0, packet.length), 'bad-extension-header', what);
      const padded = Buffer.concat([packet, Buffer.alloc(64)]);
      assert.equal(checkIPv6(padded, 0, padded.length), 'bad-extension-header', `${what}, with trailing bytes`);
    }
  });

  it('treats what follows a later fragment as payload, not as headers', () => {
    // The bytes after the Fragment header are mid-stream data: here they would read as a 2 KiB options header.
    const packet = ipv6Packet({ extensions: [options(HOP_BY_HOP), fragment(185, false)], protocol: DESTINATION_OPTIONS, payload: Buffer.from([TCP, 255, 0, 0]) });
    assert.deepEqual(upperOf(packet), { protocol: DESTINATION_OPTIONS, headerLength: 56, laterFragment: true });
    // The first fragment, by contrast, must hold the whole chain.
    const first = ipv6Packet({ extensions: [options(HOP_BY_HOP), fragment(0, true)], protocol: DESTINATION_OPTIONS, payload: Buffer.from([TCP, 255, 0, 0]) });
    assert.equal(checkIPv6(first, 0, first.length), 'bad-extension-header');
  });

  it('never throws, and on success ends the chain inside the packet, on arbitrary bytes after a valid fixed header', () => {
    const kinds = fc.constantFrom(HOP_BY_HOP, ROUTING, FRAGMENT, AH, DESTINATION_OPTIONS, TCP, UDP, NO_NEXT_HEADER);
    fc.assert(
      fc.property(kinds, fc.array(fc.oneof(kinds, fc.integer({ min: 0, max: 255 })), { maxLength: 200 }), fc.integer({ min: -8, max: 8 }), (first, body, cut) => {
        const packet = ipv6Packet({ protocol: first, payload: Buffer.from(body) });
        const length = Math.max(0, Math.min(packet.length, packet.length + cut));
        const upper: UpperLayer = { protocol: -1, headerLength: -1, laterFragment: false };
        const verdict = checkIPv6(packet, 0, length, upper);
        if (verdict === null) {
          assert.ok(upper.headerLength >= 40 && upper.headerLength <= 40 + packet.readUInt16BE(4) && upper.headerLength <= length);
          assert.ok(upper.protocol >= 0 && upper.protocol <= 255);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe('checkIPv6Header', () => {
  it('is checkIPv6 for every packet whose version nibble is 6', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 120 }), fc.nat(255), (bytes, payload) => {
        const packet = Buffer.from(bytes);
        packet[0] = 0x60 | (packet[0]! & 15);
        if (packet.length >= 6) packet.writeUInt16BE(payload, 4);
        const upper: UpperLayer = { protocol: -1, headerLength: -1, laterFragment: false };
        const expected: UpperLayer = { protocol: -1, headerLength: -1, laterFragment: false };
        assert.equal(checkIPv6Header(packet, 0, packet.length, upper), checkIPv6(packet, 0, packet.length, expected));
        assert.deepEqual(upper, expected);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('isNonUnicast6', () => {
  const cases: Array<[string, boolean]> = [
    ['ff02::1', true],
    ['ff05::1:3', true],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true],
    ['::', true],
    ['::1', true],
    ['fe80::1', true],
    ['febf:ffff::1', true],
    ['fec0::1', false],
    ['fe7f::1', false],
    ['fd00:10:244:1::2', false],
    ['2001:db8::1', false],
    ['::2', false],
    ['::1:0:0:1', false],
    ['0:0:1::1', false],
    ['::ffff:198.18.0.1', false],
    ['feff::1', false],
  ];
  for (const [address, nonUnicast] of cases) {
    it(`${address}: ${nonUnicast ? 'stays on its node or link' : 'may cross'}`, () => {
      const packet = ipv6Packet({ destination: address, source: address });
      assert.equal(isNonUnicast6(packet, IPV6_DESTINATION_OFFSET), nonUnicast);
      assert.equal(isNonUnicast6(packet, IPV6_SOURCE_OFFSET), nonUnicast);
    });
  }
});
