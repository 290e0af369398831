// Authenticated encapsulation on its own: the native sealer against crafted
// datagrams, and the key file parser.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { authKey, createSealer, OPEN_REPLAYED, OPEN_UNAUTHENTICATED, SEAL_HEADER_BYTES, SEAL_OVERHEAD, type AuthKey, type SealMode } from '../../daemon/dataplane/sealing.js';
import { parseAuthKeys } from '../../daemon/node/auth-keys.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';
import { ipv4Packet } from '../harness/packets.js';

const A = parseIPv4('198.18.0.1');
const B = parseIPv4('198.18.0.2');
const k1 = authKey(randomBytes(32));
let k2 = authKey(randomBytes(32));
while (k2.id === k1.id) k2 = authKey(randomBytes(32));

const packet = ipv4Packet({ source: '10.244.1.5', destination: '10.244.2.7', payload: Buffer.from('hello through the overlay') });

function pair(mode: SealMode, senderKeys: AuthKey[] = [k1], receiverKeys: AuthKey[] = [k1]) {
  return { sender: createSealer({ mode, localIp: A, keys: senderKeys }), receiver: createSealer({ mode, localIp: B, keys: receiverKeys }) };
}

function seal(sender: ReturnType<typeof pair>['sender'], input = packet): Buffer {
  const out = Buffer.alloc(input.length + SEAL_OVERHEAD + 7);
  const length = sender.seal(input, 0, input.length, out, 7);
  assert.equal(length, input.length + SEAL_OVERHEAD);
  return out.subarray(7, 7 + length);
}

/** Opens a copy, so the original can be replayed or tampered with. */
function open(receiver: ReturnType<typeof pair>['receiver'], datagram: Buffer, from = A): { verdict: number; inner?: Buffer } {
  const copy = Buffer.concat([Buffer.alloc(3), datagram]);
  const verdict = receiver.open(copy, 3, datagram.length, from);
  return verdict < 0 ? { verdict } : { verdict, inner: copy.subarray(3 + SEAL_HEADER_BYTES, 3 + SEAL_HEADER_BYTES + verdict) };
}

for (const mode of ['mac', 'encrypt'] as const) {
  describe(`sealing in ${mode} mode`, () => {
    it('opens what the peer sealed, giving back the packet', () => {
      const { sender, receiver } = pair(mode);
      const datagram = seal(sender);
      assert.equal(datagram[0], mode === 'mac' ? 0xa1 : 0xa2);
      assert.equal(datagram[1], k1.id);
      const body = datagram.subarray(SEAL_HEADER_BYTES, SEAL_HEADER_BYTES + packet.length);
      if (mode === 'mac') assert.deepEqual(body, packet, 'authenticated, in clear');
      else assert.notDeepEqual(body, packet, 'encrypted');
      assert.deepEqual(open(receiver, datagram).inner, packet);
    });

    it('refuses every single flipped bit of header, packet and tag', () => {
      const { sender, receiver } = pair(mode);
      const datagram = seal(sender);
      for (let byte = 0; byte < datagram.length; byte++) {
        const tampered = Buffer.from(datagram);
        tampered[byte]! ^= 1 << byte % 8;
        assert.equal(open(receiver, tampered).verdict, OPEN_UNAUTHENTICATED, `byte ${byte}`);
      }
      assert.deepEqual(open(receiver, datagram).inner, packet, 'the untouched datagram still opens');
    });

    it('refuses a datagram from another address than the sealer, a bare packet, a short one and another key', () => {
      const { sender, receiver } = pair(mode);
      assert.equal(open(receiver, seal(sender), B).verdict, OPEN_UNAUTHENTICATED, 'the nonce binds the sender address');
      assert.equal(open(receiver, packet).verdict, OPEN_UNAUTHENTICATED, "flannel's bare format");
      assert.equal(open(receiver, seal(sender).subarray(0, SEAL_OVERHEAD - 1)).verdict, OPEN_UNAUTHENTICATED);
      const stranger = createSealer({ mode, localIp: A, keys: [k2] });
      assert.equal(open(receiver, seal(stranger)).verdict, OPEN_UNAUTHENTICATED);
    });

    it('delivers each datagram once, in any order within the window', () => {
      const { sender, receiver } = pair(mode);
      const datagrams = Array.from({ length: 100 }, () => seal(sender));
      const shuffled = [...datagrams].reverse();
      for (const d of shuffled) assert.ok(open(receiver, d).verdict > 0);
      for (const d of datagrams) assert.equal(open(receiver, d).verdict, OPEN_REPLAYED);
    });

    it('refuses a datagram that fell behind the 2048-entry window', () => {
      const { sender, receiver } = pair(mode);
      const old = seal(sender);
      for (let i = 0; i < 2048; i++) assert.ok(open(receiver, seal(sender)).verdict > 0);
      assert.equal(open(receiver, old).verdict, OPEN_REPLAYED);
    });

    it('keeps a window per sender', () => {
      const { sender, receiver } = pair(mode);
      const other = createSealer({ mode, localIp: B, keys: [k1] });
      const fromA = seal(sender);
      assert.ok(open(receiver, seal(other), B).verdict > 0);
      assert.ok(open(receiver, fromA).verdict > 0);
    });
  });
}

describe('key rollover', () => {
  it('opens with any configured key and seals with the first', () => {
    const { sender, receiver } = pair('mac', [k1], [k1, k2]);
    assert.ok(open(receiver, seal(sender)).verdict > 0);
    sender.setKeys([k2, k1]);
    const withNew = seal(sender);
    assert.equal(withNew[1], k2.id);
    assert.ok(open(receiver, withNew).verdict > 0);
    receiver.setKeys([k2]);
    sender.setKeys([k1]);
    assert.equal(open(receiver, seal(sender)).verdict, OPEN_UNAUTHENTICATED, 'the retired key is refused');
  });

  it('does not accept a peer that switched to clear text', () => {
    const encrypting = createSealer({ mode: 'encrypt', localIp: B, keys: [k1] });
    const { sender } = pair('mac');
    assert.equal(open(encrypting, seal(sender)).verdict, OPEN_UNAUTHENTICATED);
  });
});

describe('the key file', () => {
  const b64 = (k: AuthKey) => k.secret.toString('base64');
  it('takes base64 and hex keys, comments and blank lines, first key first', () => {
    const keys = parseAuthKeys(`# cluster key\n${b64(k2)}\n\n${k1.secret.toString('hex')}\n`, 'keys');
    assert.deepEqual(keys.map((k) => k.id), [k2.id, k1.id]);
  });

  it('names the line and never the key when refusing', () => {
    const short = randomBytes(16).toString('base64');
    assert.throws(() => parseAuthKeys(`${b64(k1)}\n${short}\n`, '/etc/keys'), (err: Error) => {
      assert.match(err.message, /^\/etc\/keys:2: not a 32-byte key/);
      assert.ok(!err.message.includes(short) && !err.message.includes(b64(k1)));
      return true;
    });
    assert.throws(() => parseAuthKeys('# nothing\n', 'f'), /f: holds no key/);
    assert.throws(() => parseAuthKeys(`${b64(k1)}\n${b64(k1)}\n`, 'f'), /f:2: has the same key id as key 1/);
    const five = Array.from({ length: 5 }, () => randomBytes(32).toString('hex')).join('\n');
    assert.throws(() => parseAuthKeys(five, 'f'), /at most 4|same key id/);
  });
});
