// The package's version, which the daemon reports on /status and /metrics
// and the CLI prints.

import { readFileSync } from 'node:fs';

let version: string | undefined;

/** From package.json, read once: dist/daemon/version.js sits two levels below it. */
export function packageVersion(): string {
  version ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return version;
}
