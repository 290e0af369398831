// A UDP end for the tests, run inside a namespace:
//   listen <ip> <port>                       prints "listening", then each payload as one JSON line
//   send <bind-ip> <bind-port> <ip> <port> <hex>...   sends each hex payload as one datagram
import dgram from 'node:dgram';

const [mode, ...args] = process.argv.slice(2);
const socket = dgram.createSocket('udp4');

if (mode === 'listen') {
  const [ip, port] = args;
  socket.on('message', (message) => process.stdout.write(`${JSON.stringify(message.toString())}\n`));
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
  process.stderr.write('usage: udp-probe listen <ip> <port> | send <bind-ip> <bind-port> <ip> <port> <hex>...\n');
  process.exit(2);
}
