// One end of an underlay, run inside a test namespace by
// underlay.system.test.ts: a transport (mmsg or dgram) bound to the address
// and port given, driven by JSON lines on stdin, answering one JSON line on
// stdout per command (and one when it is ready).
//   {"op":"send","datagrams":[{"to":ADDRESS,"port":N,"size":S},...],"tag":T}
//       queues the datagrams in order and flushes once, so a run of equal
//       sizes to one endpoint forms one GSO train on the mmsg transport;
//       answers {refused}.
//   {"op":"received","count":N}
//       waits until N datagrams have arrived (or 10 s) and answers them in
//       arrival order, each with its sender as the batch reported it.
// Datagram k of a send (5 bytes or more) is tagged: byte 0 is T, bytes 1..4
// are k, the rest k & 0xff. If the transport cannot be opened, the first
// answer is {error} and the probe exits.
import { createInterface } from 'node:readline';
import { formatIPv4 } from '../../daemon/net/ipv4.js';
import { formatIPv6, type IPv6Address } from '../../daemon/net/ipv6.js';
import { openDgramTransport } from '../../daemon/transport/dgram.js';
import { parseEndpoint, type DatagramBatch, type PacketTransport } from '../../daemon/transport/index.js';
import { openMmsgTransport } from '../../daemon/transport/mmsg.js';

export interface ReceivedDatagram {
  /** The sender's address, as text, from the batch's sourceIps or sourceIps6. */
  from: string;
  port: number;
  length: number;
  tag: number;
  index: number;
  /** The bytes after the tag are the pattern its index makes. */
  intact: boolean;
}

export interface Received {
  datagrams: ReceivedDatagram[];
  /** Wake-ups (batches) they arrived in. */
  batches: number;
}

export interface Datagram {
  to: string;
  port: number;
  size: number;
}

export type Command = { op: 'send'; datagrams: Datagram[]; tag: number } | { op: 'received'; count: number };

const WAIT_MS = 10_000;

function fill(buffer: Buffer, at: number, size: number, tag: number, index: number): void {
  buffer.fill(index & 0xff, at, at + size);
  buffer[at] = tag;
  buffer.writeUInt32BE(index, at + 1);
}

function describe(batch: DatagramBatch, i: number): ReceivedDatagram {
  const at = batch.offsets[i]!;
  const length = batch.lengths[i]!;
  const from = batch.sourceIps6 === undefined ? formatIPv4(batch.sourceIps[i]!) : formatIPv6(Array.from(batch.sourceIps6.subarray(4 * i, 4 * i + 4)) as unknown as IPv6Address);
  const tag = batch.buffer[at]!;
  const index = batch.buffer.readUInt32BE(at + 1);
  const expected = Buffer.alloc(length);
  fill(expected, 0, length, tag, index);
  return { from, port: batch.sourcePorts[i]!, length, tag, index, intact: expected.equals(batch.buffer.subarray(at, at + length)) };
}

async function main(): Promise<void> {
  const [kind, bindAddress, port] = process.argv.slice(2);
  const options = { bindAddress: bindAddress!, port: Number(port) };
  const answer = (result: unknown) => process.stdout.write(`${JSON.stringify(result)}\n`);
  let transport: PacketTransport;
  try {
    transport = kind === 'mmsg' ? openMmsgTransport(options) : await openDgramTransport(options);
  } catch (err) {
    answer({ error: (err as Error).message });
    return;
  }
  const received: ReceivedDatagram[] = [];
  let batches = 0;
  let arrived: () => void = () => undefined;
  transport.start(
    (batch) => {
      batches++;
      for (let i = 0; i < batch.count; i++) received.push(describe(batch, i));
      arrived();
    },
    (err) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    },
  );
  answer({ ready: true, port: transport.port, family: transport.family });
  for await (const line of createInterface({ input: process.stdin })) {
    const command = JSON.parse(line) as Command;
    if (command.op === 'send') {
      const buffer = Buffer.alloc(command.datagrams.reduce((n, d) => n + d.size, 0));
      let at = 0;
      for (const [index, { to, port, size }] of command.datagrams.entries()) {
        fill(buffer, at, size, command.tag, index);
        transport.send(buffer, at, size, parseEndpoint(to, port));
        at += size;
      }
      answer({ refused: transport.flush() });
    } else {
      const deadline = Date.now() + WAIT_MS;
      while (received.length < command.count && Date.now() < deadline) {
        await new Promise<void>((resolve) => {
          arrived = resolve;
          setTimeout(resolve, 50);
        });
      }
      const result: Received = { datagrams: received.splice(0), batches };
      batches = 0;
      answer(result);
    }
  }
  await transport.close();
}

await main();
