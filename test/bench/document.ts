// Checks shared by the bench tests: the result document's envelope, and figures that must be positive.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

export async function readDocument(file: string): Promise<any> {
  const doc = JSON.parse(await readFile(file, 'utf8'));
  assert.equal(doc.tool, 'miniflannel bench');
  assert.match(doc.miniflannel, /^\d+\.\d+\.\d+/);
  assert.ok(doc.machine.cpus > 0 && typeof doc.machine.kernel === 'string' && doc.machine.node === process.version);
  assert.equal(doc.machine.loadAverageAtStart.length, 3);
  assert.ok(Date.parse(doc.finishedAt) >= Date.parse(doc.startedAt));
  return doc;
}

export const positive = (value: unknown, what: string) => assert.ok(typeof value === 'number' && Number.isFinite(value) && value > 0, `${what} = ${String(value)}`);
