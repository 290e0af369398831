/**
 * The cluster key file for authenticated encapsulation: one key per line,
 * 32 bytes in base64 or hex; blank lines and `#` comments are ignored. The
 * first key seals; all of them (at most four) open. A rollover is three
 * edits of the file, each rolled out to every node before the next:
 * append the new key, move it first, drop the old one (docs/security.md).
 *
 * The file is watched, as a Kubernetes Secret volume is updated in place;
 * a changed file that does not parse is logged and the keys in use are kept.
 */
import { unwatchFile, watchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { AUTH_KEY_BYTES, authKey, type AuthKey } from '../dataplane/index.js';

export const MAX_AUTH_KEYS = 4;

export class AuthKeyError extends Error {
  override readonly name = 'AuthKeyError';
}

function decodeKey(text: string): Buffer | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/]{43}=$/.test(text)) return Buffer.from(text, 'base64');
  return undefined;
}

/** Parses a key file's text; messages name the line, never the key. */
export function parseAuthKeys(text: string, file: string): AuthKey[] {
  const keys: AuthKey[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const secret = decodeKey(line);
    if (!secret) throw new AuthKeyError(`${file}:${index + 1}: not a ${AUTH_KEY_BYTES}-byte key in base64 or hex (make one with \`head -c 32 /dev/urandom | base64\`)`);
    const key = authKey(secret);
    const twin = keys.findIndex((k) => k.id === key.id);
    if (twin >= 0) throw new AuthKeyError(`${file}:${index + 1}: has the same key id as key ${twin + 1}; use another key`);
    keys.push(key);
  });
  if (keys.length === 0) throw new AuthKeyError(`${file}: holds no key`);
  if (keys.length > MAX_AUTH_KEYS) throw new AuthKeyError(`${file}: holds ${keys.length} keys; at most ${MAX_AUTH_KEYS}`);
  return keys;
}

export async function readAuthKeys(file: string): Promise<AuthKey[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new AuthKeyError(`cannot read --auth-key-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return parseAuthKeys(text, file);
}

/** Calls onKeys with the file's keys whenever it changes; returns the stop function. */
export function watchAuthKeys(file: string, onKeys: (keys: AuthKey[]) => void, logger: Logger, intervalMs = 2000): () => void {
  const listener = () => {
    readAuthKeys(file).then(
      (keys) => {
        onKeys(keys);
        logger.info({ file, keyIds: keys.map((k) => k.id) }, 'auth keys reloaded');
      },
      (err: Error) => logger.error({ file, err: err.message }, 'auth key file changed but is unusable; keeping the keys in use'),
    );
  };
  watchFile(file, { interval: intervalMs }, listener);
  return () => unwatchFile(file, listener);
}
