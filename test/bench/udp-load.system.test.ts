// The bench's UDP generator (lab/bench/udp-generator.c) on loopback in a
// namespace of its own: it offers no more than asked, what it says it sent
// arrives, plain and as UDP GSO super-packets, over both families, and a
// bad command line is refused in one line.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { MeasurementProcesses } from '../../lab/bench/processes.js';
import { udpGenerator, udpLoad } from '../../lab/bench/udp-load.js';
import { runForOutcome } from '../../lab/exec.js';
import { Netns, removeStaleNamespaces, runPrefix } from '../../lab/netns.js';

let ns: Netns;
const processes = new MeasurementProcesses();

before(async () => {
  await removeStaleNamespaces();
  ns = await Netns.create(`${runPrefix()}udpgen`);
});

after(async () => {
  processes.killAll();
  await ns?.destroy();
});

for (const family of [4, 6] as const) {
  for (const gso of [false, true]) {
    test(`IPv${family}${gso ? ', UDP GSO' : ''}: a paced load is sent no faster than offered and arrives whole`, async () => {
      const host = { ns, ip: family === 4 ? '127.0.0.1' : '::1', ip6: '::1' };
      // 20,000 datagrams a second for a second: far below what loopback carries, so nothing may be lost.
      const pps = 20_000;
      const result = await udpLoad(processes, host, host, { seconds: 1, payloadBytes: 1200, pps, gso, family, threads: 2 });
      assert.ok(result.sentPps > 0, 'something was sent');
      // Pacing is by the clock: a sender may fall short on a busy machine, but no send goes before its time.
      assert.ok(result.sentPps <= pps * 1.05, `sent ${result.sentPps} pps with ${pps} offered`);
      // Loopback loses nothing; what the sink's socket refuses still reached the pod, so it is no loss either.
      assert.equal(result.lossPercent, 0, `lost ${result.lossPercent} %`);
      assert.equal(result.checksumErrors, 0);
      assert.equal(result.sendErrors, 0, result.lastSendError);
      assert.ok(Math.abs(result.deliveredPps - result.sentPps) < 1e-6 * result.sentPps + 1e-9, `delivered ${result.deliveredPps}, sent ${result.sentPps}`);
      assert.equal(result.gso, gso);
    });
  }
}

test('sends refused by the kernel are counted, with the reason, and the load goes on', async () => {
  const generator = await udpGenerator();
  const out = await runForOutcome(['ip', 'netns', 'exec', ns.name, generator, 'send', '127.0.0.1', '9', '--payload', '100', '--seconds', '0.3', '--pps', '1000']);
  assert.equal(out.exitCode, 0, out.stderr);
  const report = JSON.parse(out.stdout);
  assert.ok(report.errors > 0, 'the refused sends are counted');
  assert.equal(report.lastError, 'Connection refused');
});

test('the generator refuses a bad command line in one line with exit 2', async () => {
  const generator = await udpGenerator();
  for (const args of [[], ['send', '127.0.0.1', '9'], ['send', 'nowhere', '9', '--payload', '64', '--seconds', '1'], ['send', '127.0.0.1', '70000', '--payload', '64', '--seconds', '1'], ['sink', '127.0.0.1']]) {
    const out = await runForOutcome([generator, ...args]);
    assert.equal(out.exitCode, 2, `${args.join(' ')}: ${out.stderr}`);
    assert.equal(out.stderr.trim().split('\n').length <= 2, true, out.stderr);
    assert.match(out.stderr, /udp-generator/);
  }
});
