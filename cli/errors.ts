// The CLI's failures and their exit codes. Every command throws; main.ts
// alone prints (one line, `miniflannel: <message>`) and exits. The code is
// chosen by class, never by message:
//   0  success
//   1  operational failure: Redis or the daemon unreachable, a lease missing
//      or taken, the store refusing a write
//   2  usage error: an unknown flag, a bad CIDR, a subnet that does not fit
//      the network config, an invalid net-conf, a missing --yes

import { CommanderError } from 'commander';
import { ConfigError, OptionsError } from '../daemon/lease/index.js';
import { InvalidAddressError } from '../daemon/net/ipv4.js';
import { UsageError } from '../daemon/usage.js';

// The daemon's class, so that a usage error from code both share (the Redis flags) exits 2 here too.
export { UsageError };

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The lease (or other object) the command names does not exist. */
export class NotFoundError extends Error {
  override readonly name = 'NotFoundError';
}

/** The command will not make the change as things stand (e.g. `config init` over a stored config, or a declined prompt); the store's own refusals have their classes. */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
}

/** A file or stdin the command had to read could not be read. */
export class InputError extends Error {
  override readonly name = 'InputError';
}

/** The daemon's HTTP endpoint did not answer, or answered something that is not a status. */
export class DaemonError extends Error {
  override readonly name = 'DaemonError';
  /** The daemon URL that was tried. */
  readonly url: string;

  constructor(url: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.url = url;
  }
}

/** Classes of usage errors. Anything else (the store's StoreUnavailableError, LeaseConflictError, ConfigMissingError, ..., and the other classes above) is a failed operation. */
const USAGE_ERRORS = [UsageError, ConfigError, OptionsError, InvalidAddressError];

/** Commander's codes for help that was asked for (exit 0) rather than shown after a mistake. */
const COMMANDER_SUCCESS_CODES = new Set(['commander.helpDisplayed', 'commander.help', 'commander.version']);

export function exitCodeOf(err: unknown): number {
  if (err instanceof CommanderError) return COMMANDER_SUCCESS_CODES.has(err.code) ? EXIT_OK : EXIT_USAGE;
  return USAGE_ERRORS.some((kind) => err instanceof kind) ? EXIT_USAGE : EXIT_FAILURE;
}

/**
 * What to print for a failure: one line, or with `debug` the stack and every
 * cause. Commander errors print nothing here: commander already wrote them,
 * as one line, through the outputError hook that applyConventions
 * (cli/conventions.ts) installs on every command.
 */
export function describeFailure(err: unknown, debug: boolean): string {
  if (err instanceof CommanderError) return '';
  if (!(err instanceof Error)) return `miniflannel: ${String(err)}\n`;
  const headline = `miniflannel: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`;
  if (!debug) return headline;
  let text = headline + `${err.stack ?? `${err.name}: ${err.message}`}\n`;
  const seen = new Set<unknown>([err]);
  for (let cause = err.cause; cause !== undefined && !seen.has(cause); cause = cause instanceof Error ? cause.cause : undefined) {
    seen.add(cause);
    text += `caused by: ${cause instanceof Error ? (cause.stack ?? `${cause.name}: ${cause.message}`) : String(cause)}\n`;
  }
  return text;
}

/**
 * The message of an OS-level failure: its errno code when there is one
 * ("ECONNREFUSED"), else the innermost message, which says more than a
 * wrapper's ("bad port" rather than fetch's "fetch failed").
 */
export function reasonOf(err: unknown): string {
  let innermost: unknown = err;
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
    innermost = e;
  }
  return innermost instanceof Error ? innermost.message : String(innermost);
}
