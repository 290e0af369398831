// Random packets for the property tests of both directions.
import fc from 'fast-check';
import { ipv4Packet } from '../harness/packets.js';

/** Near-valid packets: a valid one with a few bytes of the header overwritten and a random length. */
export const nearValid = fc
  .record({
    src: fc.constantFrom('10.244.2.5', '10.244.3.5', '10.244.1.5', '10.9.9.9'),
    dst: fc.constantFrom('10.244.1.7', '10.244.2.7', '8.8.8.8', '10.244.1.255'),
    payload: fc.uint8Array({ maxLength: 64 }),
    edits: fc.array(fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
    cut: fc.integer({ min: -8, max: 8 }),
  })
  .map(({ src, dst, payload, edits, cut }) => {
    const packet = ipv4Packet({ source: src, destination: dst, payload: Buffer.from(payload) });
    for (const [at, value] of edits) if (at < packet.length) packet[at] = value;
    const length = Math.max(0, Math.min(packet.length + cut, packet.length));
    return packet.subarray(0, Math.max(length, 0));
  });

export const anyBytes = fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b));
