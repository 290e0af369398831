// A UDP end for the tests, run inside a namespace:
//   listen <ip> <port> [hex]                 prints "listening", then each payload as one JSON line
//                                            (a string; with "hex", the bytes in hex, then the sender)
//   send <bind-ip> <bind-port> <ip> <port> <hex>...   sends each hex payload as one datagram
import dgram from 'node:dgram';

const [mode, ...args] = process.argv.slice(2);
// The family of the address it binds: listen's first argument, send's bind address.
const socket = dgram.createSocket(args[0]?.includes(':') ? 'udp6' : 'udp4');

if (mode === 'listen') {
  const [ip, port, encoding] = args;
  socket.on('message', (message, from) =>
    process.stdout.write(`${JSON.stringify(encoding === 'hex' ? { hex: message.toString('hex'), from: `${from.address}:${from.port}` } : message.toString())}\n`),
  );
  socket.bind(Number(port), ip, () => process.stdout.write('listening\n'));
} else if (mode === 'send') {
  const [bindIp, bindPort, ip, port, ...payloads] = args;
  socket.bind(Number(bindPort), bindIp, async () => {
    for (const hex of payloads) {
      await new Promise<void>((resolve, reject) => socket.send(Buffer.from(hex, 'hex'), Number(port), ip, (err) => (err ? reject(err) : resolve())));
    }
    socket.close();
  });
} else {
  process.stderr.write('usage: udp-probe listen <ip> <port> [hex] | send <bind-ip> <bind-port> <ip> <port> <hex>...\n');
  process.exit(2);
}
