// `miniflannel bench encap`, run as the built CLI: the data plane in process
// over the in-memory TUN and transport, so it needs no root. No speed is
// asserted, only a valid document with every case and positive figures.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../cli/helpers.js';
import { positive, readDocument } from './document.js';

const work = await mkdtemp(path.join(tmpdir(), 'miniflannel-bench-encap-test-'));
after(() => rm(work, { recursive: true, force: true }));

test('bench encap --quick writes every family x size x peer count with positive rates', async () => {
  const out = path.join(work, 'encap.json');
  // 50 ms repeats: this checks the document, not the figures.
  const result = await runCli(['bench', 'encap', '--quick', '--millis', '50', '--out', out], { timeoutMs: 60_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /Mpps/);
  const doc = await readDocument(out);
  assert.equal(doc.command, 'encap');
  const figures = doc.result.figures as any[];
  const cases = ['64/10', '64/1000', '64/10000', '512/10', '512/1000', '512/10000', '1400/10', '1400/1000', '1400/10000'];
  assert.deepEqual(figures.map((f) => `IPv${f.family} ${f.packetBytes}/${f.peers}`).sort(), [...cases.map((c) => `IPv4 ${c}`), ...cases.map((c) => `IPv6 ${c}`)].sort());
  assert.match(result.stdout, /^IPv6 +1400 B +10000 +\d+\.\d\d/m);
  for (const f of figures) {
    positive(f.packetsPerSecond, 'packetsPerSecond');
    assert.ok(Math.abs(f.bitsPerSecond - f.packetsPerSecond * f.packetBytes * 8) < 1e-3 * f.bitsPerSecond);
    assert.equal(f.repeatsPacketsPerSecond.length, 3);
  }
});
