// A named pipe that a test can stall (fill it) or break (close its reader),
// to stand for whatever reads a daemon's stdout. Node has no pipe(2), and a
// child's stdio pipe hands the test only one end; a FIFO gives it both.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface Fifo {
  /** The read end, non-blocking: reading never waits. */
  readonly readFd: number;
  /** A write end of the test's own, non-blocking, used to fill the pipe. */
  readonly fillFd: number;
  /** Opens another write end, blocking unless `nonBlocking`; closed with the FIFO unless closed before. */
  openWriter(options?: { nonBlocking?: boolean }): number;
  /** Closes a write end that openWriter opened. */
  closeWriter(fd: number): void;
  /** Writes until the pipe holds not one more byte; returns how many it wrote. */
  fill(): number;
  /** Reads whatever the pipe holds. */
  drain(): Buffer;
  /** Closes the read end: writers get EPIPE from then on. */
  closeReader(): void;
  /** Closes every end still open and removes the FIFO. */
  close(): void;
}

function isEagain(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EAGAIN';
}

export function openFifo(): Fifo {
  const dir = mkdtempSync(path.join(tmpdir(), 'miniflannel-fifo-'));
  const fifoPath = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifoPath]);
  // The reader first: opening a FIFO for writing without O_NONBLOCK waits for a reader.
  const readFd = openSync(fifoPath, constants.O_RDONLY | constants.O_NONBLOCK);
  const fillFd = openSync(fifoPath, constants.O_WRONLY | constants.O_NONBLOCK);
  const open = new Set([readFd, fillFd]);
  const closeFd = (fd: number) => {
    if (open.delete(fd)) closeSync(fd);
  };
  return {
    readFd,
    fillFd,
    openWriter({ nonBlocking = false } = {}) {
      const fd = openSync(fifoPath, constants.O_WRONLY | (nonBlocking ? constants.O_NONBLOCK : 0));
      open.add(fd);
      return fd;
    },
    closeWriter: (fd) => closeFd(fd),
    fill() {
      let total = 0;
      // Big writes first, then single bytes: a non-blocking write of at most
      // PIPE_BUF bytes is all or nothing, so only bytes fill the last gap.
      for (const chunk of [Buffer.alloc(65536, 'x'), Buffer.from('x')]) {
        for (;;) {
          try {
            total += writeSync(fillFd, chunk);
          } catch (err) {
            if (isEagain(err)) break;
            throw err;
          }
        }
      }
      return total;
    },
    drain() {
      const chunks: Buffer[] = [];
      const buffer = Buffer.alloc(65536);
      for (;;) {
        let n: number;
        try {
          n = readSync(readFd, buffer);
        } catch (err) {
          if (isEagain(err)) break;
          throw err;
        }
        if (n === 0) break;
        chunks.push(Buffer.from(buffer.subarray(0, n)));
      }
      return Buffer.concat(chunks);
    },
    closeReader: () => closeFd(readFd),
    close() {
      for (const fd of [...open]) closeFd(fd);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
