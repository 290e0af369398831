// `miniflannel bench doctor`, run as the built CLI: doctor's survey and
// checks over simulated nodes in process, so it needs no root. No speed is
// asserted, only a valid document with every look and positive figures.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../cli/helpers.js';
import { positive, readDocument } from './document.js';

const work = await mkdtemp(path.join(tmpdir(), 'miniflannel-bench-doctor-test-'));
after(() => rm(work, { recursive: true, force: true }));

test('bench doctor --quick --nodes 50 writes each look with its seconds, /status bytes and heap', async () => {
  const out = path.join(work, 'doctor.json');
  const result = await runCli(['bench', 'doctor', '--quick', '--nodes', '50', '--out', out], { timeoutMs: 60_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^doctor's side of a look at 50 nodes of 49 peers each: .*the network left out$/m);
  assert.match(result.stdout, /^later looks: +\d+\.\d\d s, median of 1 /m);
  const doc = await readDocument(out);
  assert.equal(doc.command, 'doctor');
  const r = doc.result;
  assert.deepEqual(r.options, { nodes: 50, looks: 2, peersPerNode: 49, concurrency: 256 });
  assert.equal(r.looks.length, 2);
  for (const look of r.looks) {
    positive(look.seconds, 'seconds');
    positive(look.heapUsedAtStartBytes, 'heapUsedAtStartBytes');
    assert.ok(look.peakHeapUsedBytes >= look.heapUsedAtStartBytes, `peak ${look.peakHeapUsedBytes} below start ${look.heapUsedAtStartBytes}`);
    // 50 statuses of 49 peers each: well over 100 bytes per peer entry.
    assert.ok(look.statusBytes > 50 * 49 * 100, `statusBytes = ${look.statusBytes}`);
  }
  assert.equal(r.firstLookSeconds, r.looks[0].seconds);
  assert.equal(r.laterLooksMedianSeconds, r.looks[1].seconds);
  assert.equal(r.peakHeapUsedBytes, Math.max(...r.looks.map((l: any) => l.peakHeapUsedBytes)));
  positive(r.peakRssBytes, 'peakRssBytes');
});

test('bench doctor refuses more nodes than the simulated network holds, with one line', async () => {
  const result = await runCli(['bench', 'doctor', '--nodes', '65537'], { timeoutMs: 30_000 });
  assert.equal(result.code, 2);
  assert.equal(result.stderr.trim(), "miniflannel: --nodes 65537: the simulated cluster's 10.0.0.0/8 holds at most 65,536 /24 subnets");
});
