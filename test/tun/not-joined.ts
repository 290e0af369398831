// The joiner's refusals, shared by the IPv4 and IPv6 offload tests.
import assert from 'node:assert/strict';
import { loadNative } from '../../daemon/native.js';
import { arena } from '../harness/packets.js';

/**
 * For each case of two packets that must not be joined: the joiner writes
 * both apart, untouched, behind plain headers, on a device with UDP
 * segmentation offload or (by default) without.
 */
export function assertNotJoined(cases: Record<string, Buffer[]>, udpSegmentation = false): void {
  for (const [what, packets] of Object.entries(cases)) {
    const { buffer, offsets, lengths, count } = arena(packets);
    const frames = loadNative().joinPackets(buffer, offsets, lengths, count, udpSegmentation);
    assert.equal(frames.length, 2, what);
    frames.forEach((frame, i) => {
      assert.equal(frame.subarray(0, 10).every((b) => b === 0), true, `${what}: plain header`);
      assert.deepEqual(frame.subarray(10), packets[i], `${what}: packet untouched`);
    });
  }
}
