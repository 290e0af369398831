// The daemon's log destination against a real pipe (a FIFO) whose reader has
// gone or stalls: it must count what it drops and return at once, never throw,
// sleep or retry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { readSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { pino } from 'pino';
import { LogDestination } from '../../daemon/log-destination.js';
import { openFifo } from '../harness/fifo.js';

const line = (msg: string) => `${JSON.stringify({ level: 30, msg })}\n`;

test('a reader that has gone: every line is counted as dropped, nothing throws, and the fd is not written again', { timeout: 5000 }, (t) => {
  // Spy on the writeSync the destination imported: syncBuiltinESMExports carries the spy over to ESM bindings.
  const writes = t.mock.method(fs, 'writeSync');
  syncBuiltinESMExports();
  t.after(() => {
    t.mock.restoreAll();
    syncBuiltinESMExports();
  });
  const fifo = openFifo();
  try {
    const destination = new LogDestination(fifo.openWriter({ nonBlocking: true }));
    fifo.closeReader();
    for (const msg of ['one', 'two', 'three']) destination.write(line(msg));
    assert.equal(destination.droppedLines, 3);
    assert.equal(writes.mock.callCount(), 1, 'one write found the pipe broken; the later lines made no syscall');
    assert.equal((writes.mock.calls[0]?.error as NodeJS.ErrnoException | undefined)?.code, 'EPIPE');
  } finally {
    fifo.close();
  }
});

test('a reader that stalls: each line is dropped at once, and lines flow again once it reads', { timeout: 5000 }, () => {
  const fifo = openFifo();
  try {
    const destination = new LogDestination(fifo.openWriter({ nonBlocking: true }));
    fifo.fill();
    const started = performance.now();
    for (let i = 0; i < 10; i++) destination.write(line(`stalled ${i}`));
    const elapsedMs = performance.now() - started;
    assert.equal(destination.droppedLines, 10);
    // sonic-boom would sleep 100 ms per line, a whole second here.
    assert.ok(elapsedMs < 500, `10 dropped lines took ${elapsedMs.toFixed(0)} ms`);

    fifo.drain();
    destination.write(line('flowing'));
    assert.equal(fifo.drain().toString(), line('flowing'));
    assert.equal(destination.droppedLines, 10);
  } finally {
    fifo.close();
  }
});

test('a line cut short by a stall is ended before the next one, so the next one reads whole', { timeout: 5000 }, () => {
  const fifo = openFifo();
  try {
    const destination = new LogDestination(fifo.openWriter({ nonBlocking: true }));
    fifo.fill();
    // Room for part of a line longer than that room: the kernel takes what fits, then says EAGAIN.
    readSync(fifo.readFd, Buffer.alloc(8192));
    destination.write(line('y'.repeat(20_000)));
    assert.equal(destination.droppedLines, 1);
    assert.match(fifo.drain().toString(), /yyyy$/, 'the start of the long line went through');

    destination.write(line('next'));
    assert.equal(fifo.drain().toString(), `\n${line('next')}`);
    assert.equal(destination.droppedLines, 1);
  } finally {
    fifo.close();
  }
});

test('pino registers no exit hook with this destination, so nothing flushes (or retries) at exit', { timeout: 5000 }, async () => {
  const exitHooks = () => process.listenerCount('exit') + process.listenerCount('beforeExit');
  const fifo = openFifo();
  try {
    const before = exitHooks();
    const logger = pino({ level: 'info' }, new LogDestination(fifo.openWriter({ nonBlocking: true })));
    logger.info('hello');
    assert.equal(exitHooks(), before);
    assert.match(fifo.drain().toString(), /"msg":"hello"/);

    // The control: pino's own asynchronous destination does register one.
    const sonicBoom = pino.destination({ dest: '/dev/null', sync: false });
    try {
      assert.ok(exitHooks() > before, 'pino registered an exit hook for its own destination');
    } finally {
      sonicBoom.destroy();
    }
  } finally {
    fifo.close();
  }
});
