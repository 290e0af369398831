// The layering docs/architecture.md claims, checked on the sources' imports:
// a newcomer can trust the picture because a test fails when it drifts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../lab/paths.js';

/** Every .ts file under `dir` (relative to the package root), with the package-relative paths it imports. */
function importsUnder(dir: string): Map<string, string[]> {
  const result = new Map<string, string[]>();
  for (const entry of readdirSync(path.join(packageRoot, dir), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const file = path.relative(packageRoot, path.join(entry.parentPath, entry.name));
    const source = readFileSync(path.join(packageRoot, file), 'utf8');
    const targets = [...source.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => path.normalize(path.join(path.dirname(file), m[1]!)));
    result.set(file, targets);
  }
  return result;
}

function violations(dir: string, forbidden: readonly string[]): string[] {
  const found: string[] = [];
  for (const [file, targets] of importsUnder(dir)) {
    for (const target of targets) if (forbidden.some((f) => target.startsWith(f))) found.push(`${file} imports ${target}`);
  }
  return found;
}

test('the files scanned are the real tree (the scan sees imports at all)', () => {
  const daemon = importsUnder('daemon');
  assert.ok(daemon.size > 30, `${daemon.size} files under daemon/`);
  assert.ok([...daemon.values()].flat().some((t) => t.startsWith('daemon/lease/')), 'daemon/node imports the lease store');
});

test('nothing in daemon/ imports the CLI, the lab or the tests', () => {
  assert.deepEqual(violations('daemon', ['cli/', 'lab/', 'test/']), []);
});

test('nothing in cli/ imports the lab or the tests: sandbox and bench load the lab at run time', () => {
  assert.deepEqual(violations('cli', ['lab/', 'test/']), []);
});

test('the lab does not import the tests', () => {
  assert.deepEqual(violations('lab', ['test/']), []);
});

test('the TUN device and the transport import nothing from the data plane above them', () => {
  assert.deepEqual(violations('daemon/tun', ['daemon/dataplane/', 'daemon/node/', 'daemon/lease/']), []);
  assert.deepEqual(violations('daemon/transport', ['daemon/dataplane/', 'daemon/node/', 'daemon/lease/']), []);
});

test('the lease store knows nothing of packets, and the data plane nothing of Redis', () => {
  assert.deepEqual(violations('daemon/lease', ['daemon/dataplane/', 'daemon/tun/', 'daemon/transport/', 'daemon/node/']), []);
  assert.deepEqual(violations('daemon/dataplane', ['daemon/lease/', 'daemon/node/']), []);
});
