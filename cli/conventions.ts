// What every miniflannel command shares: the global options (with their
// MINIFLANNEL_* environment twins), how usage errors and help are shown, and
// how a command turns its parsed options into settings and an Output.

import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_HEALTHZ_PORT } from '../daemon/flags.js';
import { minReplicasArg } from '../daemon/redis-flags.js';
import { colorEnabled, Output } from './output.js';

/** The global options after parsing, as commands use them. */
export interface GlobalSettings {
  /** Where Redis is (--redis-url, MINIFLANNEL_REDIS_URL). */
  readonly redisUrl: string;
  /** The lease store's key prefix (--prefix, MINIFLANNEL_PREFIX), like flannel's --etcd-prefix. */
  readonly prefix: string;
  /** Bound on connecting and on each request, in ms (--timeout, MINIFLANNEL_TIMEOUT). */
  readonly timeoutMs: number;
  /** Print stacks, causes and the store's log on failure (--debug). */
  readonly debug: boolean;
  /** PEM file of the CA that signed the Redis server's certificate, for rediss:// (--redis-ca-file, MINIFLANNEL_REDIS_CA_FILE). */
  readonly redisCaFile?: string;
  /** Replicas that must acknowledge each write (--redis-min-replicas, MINIFLANNEL_REDIS_MIN_REPLICAS); undefined: derived from the URL. */
  readonly redisMinReplicas?: number | 'auto';
}

export const GLOBAL_DEFAULTS = Object.freeze({
  redisUrl: 'redis://127.0.0.1:6379',
  prefix: 'miniflannel',
  // A local Redis answers in well under a millisecond; a CLI should not hang for long when it does not.
  timeoutMs: 3_000,
});

export function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number of at least 1');
  return n;
}

export function wholeNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number (0 or more)');
  return n;
}

/** Where a daemon serves /status unless told otherwise. */
export const DEFAULT_HEALTH_PORT = DEFAULT_HEALTHZ_PORT;

export function portNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535) throw new InvalidArgumentError('expected a port, 1 to 65535');
  return n;
}

/** --port: the port of every daemon's /status (miniflanneld --healthz-port), for commands that ask the lease's nodes. */
export function healthPortOption(description: string): Option {
  return new Option('--port <port>', `the daemons' health port (miniflanneld --healthz-port), ${description}`).default(DEFAULT_HEALTH_PORT).argParser(portNumber);
}

/** Adds the options every command accepts, before or after the command name. */
export function addGlobalOptions(program: Command): Command {
  return program
    .addOption(new Option('--redis-url <url>', 'Redis address: redis://, rediss://, redis+sentinel://, redis+cluster://').env('MINIFLANNEL_REDIS_URL').default(GLOBAL_DEFAULTS.redisUrl))
    .addOption(new Option('--redis-ca-file <path>', 'PEM file of the CA that signed the Redis server certificate (rediss://)').env('MINIFLANNEL_REDIS_CA_FILE'))
    .addOption(new Option('--redis-min-replicas <n|auto>', 'replicas that must acknowledge each write (WAIT); auto (the default): 1 with redis+sentinel://, else 0').env('MINIFLANNEL_REDIS_MIN_REPLICAS').argParser(minReplicasArg))
    .addOption(new Option('--prefix <prefix>', 'key prefix of the lease store in Redis').env('MINIFLANNEL_PREFIX').default(GLOBAL_DEFAULTS.prefix))
    .addOption(new Option('--timeout <ms>', 'bound on connecting and on each request').env('MINIFLANNEL_TIMEOUT').default(GLOBAL_DEFAULTS.timeoutMs).argParser(positiveInteger))
    .option('--json', 'print JSON for scripts instead of text')
    .option('--no-color', 'no colour even on a terminal (NO_COLOR works too)')
    .option('--debug', 'on failure, print the stack, the causes and the store log');
}

interface ParsedGlobals {
  redisUrl: string;
  redisCaFile?: string;
  redisMinReplicas?: number | 'auto';
  prefix: string;
  timeout: number;
  json?: boolean;
  color: boolean;
  debug?: boolean;
}

export function settingsOf(command: Command): GlobalSettings {
  const opts = command.optsWithGlobals<ParsedGlobals>();
  return {
    redisUrl: opts.redisUrl,
    prefix: opts.prefix,
    timeoutMs: opts.timeout,
    debug: opts.debug === true,
    ...(opts.redisCaFile !== undefined ? { redisCaFile: opts.redisCaFile } : {}),
    ...(opts.redisMinReplicas !== undefined ? { redisMinReplicas: opts.redisMinReplicas } : {}),
  };
}

/** The command's output: JSON or text, coloured or not, per the global options and the terminal. */
export function outputOf(command: Command): Output {
  const opts = command.optsWithGlobals<ParsedGlobals>();
  return new Output({ json: opts.json === true, color: colorEnabled(opts.color, process.stdout) });
}

/** "miniflannel lease list" for the `list` command. */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Applies the conventions to `program` and every command below it, including
 * commands built elsewhere and attached with addCommand (which inherits
 * nothing): usage errors are one line naming the command's help and end in a
 * CommanderError (exit 2 in main.ts) instead of process.exit, and help lists
 * the global options.
 */
export function applyConventions(program: Command): void {
  const visit = (command: Command): void => {
    const help = `${commandPath(command)} --help`;
    command
      .exitOverride()
      .showSuggestionAfterError()
      .configureHelp({ showGlobalOptions: true })
      .configureOutput({
        outputError: (text, write) => write(`miniflannel: ${text.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')}; see '${help}'\n`),
      });
    for (const sub of command.commands) visit(sub);
  };
  visit(program);
}

/** The conventional help footer: one or more example invocations. */
export function examples(...lines: string[]): string {
  return `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((line) => `  ${line}`).join('\n')}`;
}
