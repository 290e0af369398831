// Both ends of a TCP transfer whose integrity the test checks:
//   receive <ip> <port>          prints {bytes, sha256} once the sender closes
//   send <ip> <port> <bytes>     sends pseudo-random bytes, prints {bytes, sha256}
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

const [mode, host, portText, bytesText] = process.argv.slice(2);
const port = Number(portText);
const print = (bytes: number, hash: string) => process.stdout.write(`${JSON.stringify({ bytes, sha256: hash })}\n`);

if (mode === 'receive') {
  const server = net.createServer((socket) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (chunk) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    socket.on('end', () => {
      print(bytes, hash.digest('hex'));
      server.close();
    });
  });
  server.listen(port, host, () => process.stdout.write('listening\n'));
} else if (mode === 'send') {
  const total = Number(bytesText);
  const hash = createHash('sha256');
  const socket = net.connect(port, host, () => {
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const chunk = randomBytes(Math.min(256 * 1024, total - sent));
        hash.update(chunk);
        sent += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
      socket.end(() => print(sent, hash.digest('hex')));
    };
    pump();
  });
  socket.on('error', (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });
} else {
  process.stderr.write('usage: tcp-transfer receive <ip> <port> | send <ip> <port> <bytes>\n');
  process.exit(2);
}
