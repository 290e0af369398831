// The CLI's plain functions, in process: durations, tables, colour rules,
// the config diff, subnet checks, and the mapping of errors to exit codes.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { CommanderError } from 'commander';
import { ConfigError, ConfigMissingError, LeaseConflictError, misfitOf, OptionsError, OutOfSubnetsError, parseNetworkConfig, StoreCommandError, StoreUnavailableError, toNetConf } from '../../daemon/lease/index.js';
import { InvalidAddressError, parseCidr } from '../../daemon/net/ipv4.js';
import { diffConfigs } from '../../cli/commands/config.js';
import { parseSubnetArgument } from '../../cli/commands/lease.js';
import { describeFailure, exitCodeOf, NotFoundError, UsageError } from '../../cli/errors.js';
import { colorEnabled, humanBytes, humanDuration, Output } from '../../cli/output.js';

describe('humanDuration', () => {
  it('shows the two largest units, rounded down', () => {
    const s = 1000;
    const m = 60 * s;
    const h = 60 * m;
    const cases: Array<[number, string]> = [
      [-5 * s, '0s'],
      [999, '0s'],
      [45 * s, '45s'],
      [59 * s + 999, '59s'],
      [60 * s, '1m00s'],
      [4 * m + 5 * s, '4m05s'],
      [h, '1h00m'],
      [24 * h - 1, '23h59m'],
      [24 * h, '1d00h'],
      [51 * h + 59 * m, '2d03h'],
    ];
    for (const [ms, text] of cases) assert.equal(humanDuration(ms), text, String(ms));
  });

  it('formats byte counts in binary units', () => {
    assert.equal(humanBytes(512), '512 B');
    assert.equal(humanBytes(1536), '1.5 KiB');
    assert.equal(humanBytes(1_572_864), '1.5 MiB');
  });
});

describe('colour rules', () => {
  const tty = { isTTY: true };
  const pipe = { isTTY: false };
  it('colours a terminal, never a pipe unless forced, and never against --no-color or NO_COLOR', () => {
    assert.equal(colorEnabled(true, tty, {}), true);
    assert.equal(colorEnabled(true, pipe, {}), false);
    assert.equal(colorEnabled(false, tty, {}), false);
    assert.equal(colorEnabled(true, tty, { NO_COLOR: '1' }), false);
    assert.equal(colorEnabled(true, tty, { NO_COLOR: '' }), true, 'an empty NO_COLOR does not count (no-color.org)');
    assert.equal(colorEnabled(true, pipe, { FORCE_COLOR: '1' }), true);
    assert.equal(colorEnabled(true, tty, { FORCE_COLOR: '0' }), false);
    assert.equal(colorEnabled(false, pipe, { FORCE_COLOR: '1' }), false);
    assert.equal(colorEnabled(true, pipe, { FORCE_COLOR: '1', NO_COLOR: '1' }), false);
  });
});

describe('tables', () => {
  const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
  const plain = new Output({ json: false, color: false }, { stdout: sink(), stderr: sink() });
  const coloured = new Output({ json: false, color: true }, { stdout: sink(), stderr: sink() });

  it('aligns columns on the widest cell with no trailing blanks', () => {
    const text = plain.table(['A', 'LONGER'], [['wide cell', 'x'], ['y', { text: 'z', style: 'red' }]]);
    assert.equal(text, 'A           LONGER\nwide cell   x\ny           z');
  });

  it('pads by visible width when cells are coloured', () => {
    const text = coloured.table(['A', 'B'], [[{ text: 'red', style: 'red' }, 'x']]);
    assert.equal(text.replace(/\x1b\[[0-9;]*m/g, ''), 'A     B\nred   x');
  });

  it('keeps minimum widths and can leave the header out', () => {
    assert.equal(plain.table(['A', 'B'], [['1', '2']], { minWidths: [4], header: false }), '1      2');
  });
});

describe('config diff', () => {
  const conf = (doc: unknown) => toNetConf(parseNetworkConfig(doc));
  it('lists the effective fields that changed, defaults included', () => {
    assert.deepEqual(diffConfigs(conf({ Network: '10.5.0.0/16' }), conf({ Network: '10.5.0.0/16', SubnetMax: '10.5.9.0' })), [{ field: 'SubnetMax', from: '10.5.255.0', to: '10.5.9.0' }]);
    assert.deepEqual(diffConfigs(conf({ Network: '10.5.0.0/16' }), conf({ Network: '10.5.0.0/16', SubnetLen: 24, Backend: { Type: 'udp', Port: 8285 } })), []);
    const created = diffConfigs(null, conf({ Network: '10.5.0.0/16' }));
    assert.deepEqual(created.map((c) => [c.field, c.from]), [['Network', null], ['SubnetLen', null], ['SubnetMin', null], ['SubnetMax', null], ['Backend.Type', null], ['Backend.Port', null]]);
  });
});

describe('subnet arguments', () => {
  const config = parseNetworkConfig({ Network: '10.244.0.0/16' });
  it('accepts a SubnetLen block inside the network, and names the rule otherwise', () => {
    // The CLI's subnet arguments name what a reservation may be: the store's rule, with reservation true.
    assert.equal(misfitOf(config, parseSubnetArgument('10.244.3.0/24'), true), undefined);
    assert.equal(misfitOf(config, parseSubnetArgument('10.244.0.0/24'), true), undefined, 'reservations may lie outside SubnetMin..SubnetMax');
    assert.match(misfitOf(config, parseCidr('10.244.3.0/25'), true)!, /\/25.*\/24 \(SubnetLen\)/);
    assert.match(misfitOf(config, parseCidr('10.244.0.0/16'), true)!, /\/16.*SubnetLen/);
    assert.match(misfitOf(config, parseCidr('10.245.3.0/24'), true)!, /outside the Network 10\.244\.0\.0\/16/);
    assert.throws(() => parseSubnetArgument('10.244.3.7/24'), (err: unknown) => err instanceof UsageError && /did you mean 10\.244\.3\.0\/24/.test(err.message));
    assert.throws(() => parseSubnetArgument('10.244.3.0'), InvalidAddressError);
    assert.throws(() => parseSubnetArgument('10.244.3.0/33'), InvalidAddressError);
  });
});

describe('exit codes', () => {
  it('maps each error class to its code', () => {
    const usage = [new UsageError('x'), new ConfigError('Network', 'x'), new OptionsError('url', 'x'), new InvalidAddressError('x', 'x'), new CommanderError(1, 'commander.unknownOption', 'x')];
    const failures = [
      new StoreUnavailableError('redis://h', 'x'),
      new StoreCommandError('x'),
      new LeaseConflictError('x'),
      new ConfigMissingError('{p}:config'),
      new OutOfSubnetsError('x'),
      new NotFoundError('x'),
      new Error('unexpected'),
    ];
    for (const err of usage) assert.equal(exitCodeOf(err), 2, err.name);
    for (const err of failures) assert.equal(exitCodeOf(err), 1, err.name);
    assert.equal(exitCodeOf(new CommanderError(0, 'commander.helpDisplayed', '(outputHelp)')), 0);
  });

  it('describes a failure in one line, or with --debug with its stack and causes', () => {
    const err = new StoreUnavailableError('redis://h', 'Redis unreachable at redis://h: ECONNREFUSED', { cause: new Error('connect ECONNREFUSED', { cause: new Error('root') }) });
    assert.equal(describeFailure(err, false), 'miniflannel: Redis unreachable at redis://h: ECONNREFUSED\n');
    const debug = describeFailure(err, true);
    assert.match(debug, /^miniflannel: Redis unreachable/);
    assert.match(debug, /\n {4}at /);
    assert.match(debug, /\ncaused by: Error: connect ECONNREFUSED\n/);
    assert.match(debug, /\ncaused by: Error: root\n/);
    assert.equal(describeFailure(new CommanderError(2, 'commander.unknownOption', 'x'), false), '', 'commander has printed it already');
  });
});
