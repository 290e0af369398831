/**
 * Where miniflanneld's log lines go: fd 1, one synchronous write per line,
 * and never at the cost of forwarding or of shutting down. Whatever reads the
 * daemon's stdout (a container runtime, a supervisor, a terminal) can stall or
 * go away; the daemon must keep forwarding and still exit on SIGTERM, so this
 * destination drops lines rather than wait for it:
 *   - the reader stalls (EAGAIN): this line, or what is left of it, is
 *     dropped; the next line tries again;
 *   - the reader is gone (EPIPE), the fd is closed (EBADF), any other error:
 *     this line and every later one are dropped, without a syscall.
 *
 * pino's default destination (sonic-boom) instead sleeps 100 ms and retries;
 * at exit it flushes what is pending, and on EPIPE it retries forever, so a
 * daemon whose stdout reader stalled and then died never exited.
 *
 * Synchronous writes keep lines whole and in order with nothing buffered: a
 * line is small, and a non-blocking write of it either fits or fails at once.
 */
import { writeSync } from 'node:fs';
import type { DestinationStream } from 'pino';

const NEWLINE = 0x0a;

export class LogDestination implements DestinationStream {
  #dropped = 0;
  #gaveUp = false;
  /** The last write stopped inside a line: the next one starts on a new line, so the reader can still split them. */
  #midLine = false;

  /** `fd` should be non-blocking, or a reader that stalls blocks every write (see stdoutLogDestination). */
  constructor(private readonly fd: number) {}

  /** Lines not written, or written only in part. */
  get droppedLines(): number {
    return this.#dropped;
  }

  write(line: string): void {
    if (this.#gaveUp) {
      this.#dropped++;
      return;
    }
    const bytes = Buffer.from(this.#midLine ? `\n${line}` : line);
    let written = 0;
    try {
      while (written < bytes.length) {
        const n = writeSync(this.fd, bytes, written, bytes.length - written);
        // No progress without an error is a stall by another name; retrying could spin.
        if (n === 0) break;
        written += n;
      }
    } catch (err) {
      // EAGAIN passes once the reader catches up; anything else will not.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') this.#gaveUp = true;
    }
    if (written < bytes.length) this.#dropped++;
    if (written > 0) this.#midLine = bytes[written - 1] !== NEWLINE;
  }
}

/** The daemon's destination: its stdout, made non-blocking first. */
export function stdoutLogDestination(): LogDestination {
  // Node opens process.stdout through libuv, which sets O_NONBLOCK on a pipe,
  // FIFO or socket (a terminal or a file is left as it is). Left blocking, a
  // reader that stops reading would block writeSync, and with it the event
  // loop: no forwarding, no SIGTERM. pino's default destination read
  // process.stdout too, so fd 1 stays in the mode it had before. Nothing is
  // written through process.stdout itself.
  void process.stdout;
  return new LogDestination(1);
}
