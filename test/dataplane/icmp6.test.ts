import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CODE_NO_ROUTE,
  ICMP6_DEST_UNREACHABLE,
  ICMP6_ERROR_MAX,
  ICMP6_PACKET_TOO_BIG,
  mayAnswerWithError6,
  writeDestinationUnreachable6,
  writePacketTooBig,
} from '../../daemon/dataplane/icmp6.js';

const UDP = 17;
const ICMP6 = 58;

/** Deliberately naive: expands one `::` and nothing else. */
function address(text: string): Buffer {
  const [head, tail] = text.split('::') as [string, string | undefined];
  const before = head === '' ? [] : head.split(':');
  const after = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? before : [...before, ...Array<string>(8 - before.length - after.length).fill('0'), ...after];
  const bytes = Buffer.alloc(16);
  groups.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2));
  return bytes;
}

interface Extension {
  type: number;
  /** The whole header; its first byte (next header) is filled in by the chain. */
  bytes: Buffer;
}

const common = (type: number, units = 0): Extension => {
  const bytes = Buffer.alloc((units + 1) * 8);
  bytes[1] = units;
  return { type, bytes };
};
const hopByHop = (units = 0) => common(0, units);
const routing = (units = 0) => common(43, units);
const destinationOptions = (units = 0) => common(60, units);
const fragment = (fragmentOffset = 0): Extension => {
  const bytes = Buffer.alloc(8);
  bytes.writeUInt16BE((fragmentOffset << 3) | 1, 2); // more fragments follow
  return { type: 44, bytes };
};
/** An authentication header with a 96-bit ICV: 24 bytes, length field 4 (RFC 4302 2.2). */
const authentication = (): Extension => {
  const bytes = Buffer.alloc(24);
  bytes[1] = 4;
  return { type: 51, bytes };
};

interface PacketSpec {
  source?: string;
  destination?: string;
  extensions?: Extension[];
  nextHeader?: number;
  payload?: Buffer;
}

function ipv6Packet(spec: PacketSpec = {}): Buffer {
  const extensions = spec.extensions ?? [];
  const upper = spec.nextHeader ?? UDP;
  extensions.forEach((extension, i) => (extension.bytes[0] = extensions[i + 1]?.type ?? upper));
  const body = Buffer.concat([...extensions.map((e) => e.bytes), spec.payload ?? Buffer.from('hello over ipv6')]);
  const packet = Buffer.alloc(40 + body.length);
  packet.writeUInt32BE(0x60012345, 0); // a flow label, so the quote is seen to keep it
  packet.writeUInt16BE(body.length, 4);
  packet[6] = extensions[0]?.type ?? upper;
  packet[7] = 63;
  address(spec.source ?? 'fd00:10:244:1::5').copy(packet, 8);
  address(spec.destination ?? 'fd00:10:244:9::9').copy(packet, 24);
  body.copy(packet, 40);
  return packet;
}

/** An ICMPv6 message of `type`; its checksum does not matter to the code under test. */
const icmp6 = (type: number) => Buffer.from([type, 0, 0, 0, 0, 0, 0, 0]);

/**
 * RFC 8200 8.1, spelt out independently of the code under test: the pseudo-header
 * is built as bytes and the whole is summed word by word.
 */
function onesComplementSum(reply: Buffer): number {
  const message = reply.subarray(40);
  const pseudo = Buffer.alloc(40);
  reply.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(message.length, 32);
  pseudo[39] = ICMP6;
  const whole = Buffer.concat([pseudo, message, Buffer.alloc(message.length % 2)]);
  let sum = 0;
  for (let i = 0; i < whole.length; i += 2) sum += whole.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

const self = address('fd00:10:244:1::');

function reply(write: (out: Buffer, outOffset: number) => number): Buffer {
  const out = Buffer.alloc(ICMP6_ERROR_MAX + 10, 0xaa);
  const length = write(out, 10);
  assert.ok(length <= ICMP6_ERROR_MAX);
  return out.subarray(10, 10 + length);
}

const unreachable = (original: Buffer) =>
  reply((out, at) => writeDestinationUnreachable6(out, at, original, 0, original.length, CODE_NO_ROUTE, self));
const tooBig = (original: Buffer, mtu: number) =>
  reply((out, at) => writePacketTooBig(out, at, original, 0, original.length, mtu, self));

test('destination unreachable: addressed back to the sender from this node, with a checksum over the pseudo-header', () => {
  const original = ipv6Packet();
  const error = unreachable(original);
  assert.equal(error[0]! >> 4, 6);
  assert.equal(error.readUInt32BE(0) & 0x0fffffff, 0, 'traffic class and flow label 0');
  assert.equal(error.readUInt16BE(4), error.length - 40, 'payload length');
  assert.equal(error[6], ICMP6);
  assert.equal(error[7], 64, 'hop limit');
  assert.deepEqual(error.subarray(8, 24), self);
  assert.deepEqual(error.subarray(24, 40), address('fd00:10:244:1::5'));
  assert.equal(error[40], ICMP6_DEST_UNREACHABLE);
  assert.equal(error[41], CODE_NO_ROUTE);
  assert.equal(error.readUInt32BE(44), 0, 'unused word');
  assert.deepEqual(error.subarray(48), original, 'quotes the whole short original');
  assert.equal(onesComplementSum(error), 0xffff);
});

test('packet too big carries the 32-bit MTU, and the checksum holds for every quoted length, odd ones too', () => {
  const error = tooBig(ipv6Packet({ payload: Buffer.alloc(1400, 7) }), 1380);
  assert.equal(error[40], ICMP6_PACKET_TOO_BIG);
  assert.equal(error[41], 0);
  assert.equal(error.readUInt32BE(44), 1380);
  assert.equal(tooBig(ipv6Packet(), 70_000).readUInt32BE(44), 70_000, 'the field is 32 bits, not 16');
  for (let size = 0; size < 40; size++) {
    const payload = Buffer.alloc(size, size * 37);
    assert.equal(onesComplementSum(tooBig(ipv6Packet({ payload }), 1280 + size)), 0xffff, `payload ${size}`);
    assert.equal(onesComplementSum(unreachable(ipv6Packet({ payload }))), 0xffff, `payload ${size}`);
  }
});

test('the reply never exceeds 1280 bytes: a long original is quoted only as far as fits', () => {
  const longest = ICMP6_ERROR_MAX - 48;
  const original = ipv6Packet({ payload: Buffer.from(Array.from({ length: 1500 }, (_, i) => i % 251)) });
  for (const error of [tooBig(original, 1400), unreachable(original)]) {
    assert.equal(error.length, ICMP6_ERROR_MAX);
    assert.equal(error.readUInt16BE(4), ICMP6_ERROR_MAX - 40);
    assert.deepEqual(error.subarray(48), original.subarray(0, longest));
    assert.equal(onesComplementSum(error), 0xffff);
  }
  const fits = ipv6Packet({ payload: Buffer.alloc(longest - 40, 1) });
  assert.deepEqual(unreachable(fits).subarray(48), fits, 'exactly 1280 with the whole original');
  const oneOver = ipv6Packet({ payload: Buffer.alloc(longest - 39, 1) });
  assert.equal(unreachable(oneOver).length, ICMP6_ERROR_MAX);
});

test('only the given length is quoted, not what lies past it in the buffer', () => {
  const original = ipv6Packet();
  const batch = Buffer.concat([Buffer.alloc(30, 0xee), original, Buffer.alloc(100, 0xee)]);
  const out = Buffer.alloc(ICMP6_ERROR_MAX);
  const length = writePacketTooBig(out, 0, batch, 30, original.length, 1300, self);
  assert.equal(length, 48 + original.length);
  assert.deepEqual(out.subarray(48, length), original);
  assert.deepEqual(out.subarray(24, 40), address('fd00:10:244:1::5'));
});

const mayAnswer = (packet: Buffer, errorType: number) => mayAnswerWithError6(packet, 0, packet.length, errorType);
const bothTypes = [ICMP6_DEST_UNREACHABLE, ICMP6_PACKET_TOO_BIG];

test('no error in reply to an ICMPv6 error or redirect; informational messages and other protocols are answered (RFC 4443 2.4(e.1), (e.2))', () => {
  for (const errorType of bothTypes) {
    for (const type of [1, 2, 3, 4, 127, 137]) {
      assert.equal(mayAnswer(ipv6Packet({ nextHeader: ICMP6, payload: icmp6(type) }), errorType), false, `type ${type}`);
    }
    for (const type of [128, 129, 135, 136]) {
      assert.equal(mayAnswer(ipv6Packet({ nextHeader: ICMP6, payload: icmp6(type) }), errorType), true, `type ${type}`);
    }
    assert.equal(mayAnswer(ipv6Packet(), errorType), true, 'UDP');
    assert.equal(mayAnswer(ipv6Packet({ nextHeader: 6, payload: Buffer.alloc(20) }), errorType), true, 'TCP');
  }
});

test('an ICMPv6 error behind a chain of extension headers is still recognised', () => {
  const chains: Array<() => Extension[]> = [
    () => [hopByHop()],
    () => [hopByHop(1), destinationOptions(2), routing(3), fragment(0), authentication(), destinationOptions()],
    () => [authentication(), routing()],
    () => Array.from({ length: 8 }, () => destinationOptions()),
  ];
  for (const [i, chain] of chains.entries()) {
    const error = ipv6Packet({ extensions: chain(), nextHeader: ICMP6, payload: icmp6(1) });
    assert.equal(mayAnswer(error, ICMP6_DEST_UNREACHABLE), false, `chain ${i}`);
    const echo = ipv6Packet({ extensions: chain(), nextHeader: ICMP6, payload: icmp6(128) });
    assert.equal(mayAnswer(echo, ICMP6_DEST_UNREACHABLE), true, `chain ${i}`);
  }
});

test('a packet whose upper layer the bounded walk cannot see gets no error', () => {
  const cases: Record<string, Buffer> = {
    'nine extension headers': ipv6Packet({ extensions: Array.from({ length: 9 }, () => destinationOptions()) }),
    'a later fragment': ipv6Packet({ extensions: [fragment(100)] }),
    'a header cut short': ipv6Packet({ extensions: [hopByHop(1)] }).subarray(0, 40 + 4),
    'a header running past the end': ipv6Packet({ extensions: [hopByHop(5)] }).subarray(0, 40 + 8),
    'a fragment header cut at the end of the buffer': ipv6Packet({ extensions: [fragment(0)] }).subarray(0, 40 + 1),
    'ICMPv6 without its type': ipv6Packet({ extensions: [hopByHop()], nextHeader: ICMP6, payload: Buffer.alloc(0) }),
    'shorter than the fixed header': ipv6Packet().subarray(0, 39),
  };
  for (const [name, packet] of Object.entries(cases)) {
    for (const errorType of bothTypes) assert.equal(mayAnswer(packet, errorType), false, name);
  }
});

test('no error to a source that names no single node (RFC 4443 2.4(e.6))', () => {
  for (const source of ['::', 'ff02::1', 'ff05::1:3']) {
    for (const errorType of bothTypes) assert.equal(mayAnswer(ipv6Packet({ source }), errorType), false, `${source}`);
  }
  assert.equal(mayAnswer(ipv6Packet({ source: '::1' }), ICMP6_DEST_UNREACHABLE), true, 'one bit set is a unicast address');
});

test('a multicast destination gets Packet Too Big, and nothing else (RFC 4443 2.4(e.3))', () => {
  for (const destination of ['ff02::1', 'ff0e::1234']) {
    const packet = ipv6Packet({ destination, payload: Buffer.alloc(1400) });
    assert.equal(mayAnswer(packet, ICMP6_PACKET_TOO_BIG), true, destination);
    assert.equal(mayAnswer(packet, ICMP6_DEST_UNREACHABLE), false, destination);
  }
  const multicastError = ipv6Packet({ destination: 'ff02::1', nextHeader: ICMP6, payload: icmp6(2) });
  assert.equal(mayAnswer(multicastError, ICMP6_PACKET_TOO_BIG), false, 'the exception never covers an error');
  const fromMulticast = ipv6Packet({ source: 'ff02::1', destination: 'ff02::2' });
  assert.equal(mayAnswer(fromMulticast, ICMP6_PACKET_TOO_BIG), false, 'nor a multicast source');
});

test('the walk reads the packet where it is in a larger buffer', () => {
  const error = ipv6Packet({ extensions: [hopByHop()], nextHeader: ICMP6, payload: icmp6(1) });
  const echo = ipv6Packet({ extensions: [hopByHop()], nextHeader: ICMP6, payload: icmp6(128) });
  const typeless = ipv6Packet({ nextHeader: ICMP6, payload: Buffer.alloc(0) });
  const batch = Buffer.concat([echo, error, typeless, Buffer.from([128])]);
  assert.equal(mayAnswerWithError6(batch, 0, echo.length, ICMP6_DEST_UNREACHABLE), true);
  assert.equal(mayAnswerWithError6(batch, echo.length, error.length, ICMP6_DEST_UNREACHABLE), false);
  const typelessAt = echo.length + error.length;
  assert.equal(mayAnswerWithError6(batch, typelessAt, typeless.length, ICMP6_DEST_UNREACHABLE), false, 'the next byte is not its type');
});
