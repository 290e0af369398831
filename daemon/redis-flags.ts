/**
 * The Redis flags miniflanneld and the miniflannel CLI share (--redis-url,
 * --redis-ca-file, --redis-min-replicas), turned into the lease store's
 * connection options in one place, so both check and default them alike.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { minReplicasFor, parseRedisUrl, type LeaseStoreOptions } from './lease/index.js';
import { UsageError } from './usage.js';

export interface RedisFlags {
  /** --redis-url: redis://, rediss://, redis+sentinel://, redis+cluster:// (docs/redis.md). */
  readonly redisUrl: string;
  /** --redis-ca-file: PEM of the CA that signed the Redis server's certificate; TLS URLs only. */
  readonly redisCaFile?: string | undefined;
  /** --redis-min-replicas; undefined or 'auto': derived from the URL (minReplicasFor). */
  readonly redisMinReplicas?: number | 'auto' | undefined;
}

/** The part of LeaseStoreOptions the Redis flags decide. */
export interface RedisConnectionOptions {
  readonly url: string;
  readonly minReplicas: number;
  readonly tls?: LeaseStoreOptions['tls'];
}

/** Parses --redis-min-replicas (and its environment twins): a whole number, or 'auto'. */
export function minReplicasArg(value: string): number | 'auto' {
  if (value === 'auto') return value;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`'${value}' is not a whole number of replicas or 'auto'`);
  return n;
}

/**
 * Checks the Redis flags against each other and reads the CA file. Every
 * mistake is a UsageError naming the flag; the URL's password never reaches
 * a message (parseRedisUrl masks it).
 */
export function redisConnectionOptions(flags: RedisFlags): RedisConnectionOptions {
  let endpoint;
  try {
    endpoint = parseRedisUrl(flags.redisUrl);
  } catch (err) {
    throw new UsageError(`--redis-url: ${(err as Error).message}`, { cause: err });
  }
  const minReplicas = flags.redisMinReplicas === undefined || flags.redisMinReplicas === 'auto' ? minReplicasFor(endpoint) : flags.redisMinReplicas;
  if (flags.redisCaFile === undefined) return { url: flags.redisUrl, minReplicas };
  if (!endpoint.tls) throw new UsageError('--redis-ca-file is only used with TLS: use a rediss:// (or rediss+sentinel://, rediss+cluster://) --redis-url');
  return { url: flags.redisUrl, minReplicas, tls: { ca: readCaFile(flags.redisCaFile) } };
}

function readCaFile(file: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    throw new UsageError(`--redis-ca-file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--redis-ca-file ${file}: not a PEM certificate (no BEGIN CERTIFICATE line)`);
  return pem;
}
