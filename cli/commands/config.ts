// `miniflannel config`: read, replace and initialise the network config
// (flannel's net-conf.json) in the lease store. Every write is validated by
// the store and reports what it changed; a change of the subnet layout
// (Network, SubnetLen, IPv6Network, IPv6SubnetLen, or turning IPv6 off) under
// existing leases needs --force, because the nodes keep their old subnets
// until they restart: the store refuses it otherwise
// (ConfigChangeRefusedError), checking and writing in one atomic step.

import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { ConfigError, ConfigMissingError, layoutChangeUnderLeases, parseNetworkConfig, toNetConf, type ConfigWriteOptions, type EffectiveNetConf, type NetworkConfig, type SubnetManager } from '../../daemon/lease/index.js';
import { examples, outputOf, positiveInteger, settingsOf } from '../conventions.js';
import { InputError, reasonOf, RefusedError, UsageError } from '../errors.js';
import type { Output } from '../output.js';
import { withStore } from '../store.js';

type NetConfForm = EffectiveNetConf;

type FieldValue = string | number | boolean;

/** One field of the effective config that differs; null stands for absent (no config yet, or IPv6 turned on or off). */
interface Change {
  readonly field: string;
  readonly from: FieldValue | null;
  readonly to: FieldValue | null;
}

/** The effective fields in net-conf order; those of a family only when it is on. */
function flatten(conf: NetConfForm): Array<[string, FieldValue]> {
  const fields: Array<[string, FieldValue | undefined]> = [
    ['EnableIPv4', conf.EnableIPv4],
    ['Network', conf.Network],
    ['SubnetLen', conf.SubnetLen],
    ['SubnetMin', conf.SubnetMin],
    ['SubnetMax', conf.SubnetMax],
    ['EnableIPv6', conf.EnableIPv6],
    ['IPv6Network', conf.IPv6Network],
    ['IPv6SubnetLen', conf.IPv6SubnetLen],
    ['IPv6SubnetMin', conf.IPv6SubnetMin],
    ['IPv6SubnetMax', conf.IPv6SubnetMax],
    ['Backend.Type', conf.Backend.Type],
    ['Backend.Port', conf.Backend.Port],
  ];
  return fields.filter((field): field is [string, FieldValue] => field[1] !== undefined);
}

/** The fields whose effective value (defaults filled in) differs, those that appear or disappear included. */
export function diffConfigs(previous: NetConfForm | null, next: NetConfForm): Change[] {
  const before = new Map(previous === null ? [] : flatten(previous));
  const after = new Map(flatten(next));
  const fields = [...new Set([...before.keys(), ...after.keys()])];
  return fields
    .filter((field) => before.get(field) !== after.get(field))
    .map((field) => ({ field, from: before.get(field) ?? null, to: after.get(field) ?? null }));
}

/** The stored config: a config, `null` when there is none, or 'invalid' when what is stored breaks the rules. */
async function currentConfig(store: SubnetManager): Promise<NetworkConfig | null | 'invalid'> {
  try {
    return await store.getNetworkConfig();
  } catch (err) {
    if (err instanceof ConfigMissingError) return null;
    if (err instanceof ConfigError) return 'invalid';
    throw err;
  }
}

/** "Network 10.244.0.0/16", "IPv6Network fd00:10:244::/48", or both. */
function describeNetworks(conf: NetConfForm): string {
  const networks = [conf.Network && `Network ${conf.Network}`, conf.IPv6Network && `IPv6Network ${conf.IPv6Network}`];
  return networks.filter(Boolean).join(', ');
}

function configFields(out: Output, conf: NetConfForm, indent = ''): string {
  const ipv6: Array<[string, string]> =
    conf.IPv6Network === undefined
      ? []
      : [
          ['IPv6Network', conf.IPv6Network],
          ['IPv6SubnetLen', String(conf.IPv6SubnetLen)],
          ['IPv6SubnetMin', String(conf.IPv6SubnetMin)],
          ['IPv6SubnetMax', String(conf.IPv6SubnetMax)],
        ];
  const ipv4: Array<[string, string]> =
    conf.Network === undefined
      ? [['EnableIPv4', 'false (an IPv6-only network)']]
      : [
          ['Network', conf.Network],
          ['SubnetLen', String(conf.SubnetLen)],
          ['SubnetMin', String(conf.SubnetMin)],
          ['SubnetMax', String(conf.SubnetMax)],
        ];
  return out.fields([
    ...ipv4,
    ...ipv6,
    ['Backend', `${conf.Backend.Type}, port ${conf.Backend.Port}`],
  ], indent);
}

interface WriteResult {
  readonly previous: NetConfForm | null;
  readonly config: NetConfForm;
  readonly changes: Change[];
}

/** Stores `text` as written; the store validates it and applies the lease guard. */
async function writeConfig(store: SubnetManager, out: Output, text: string, options: ConfigWriteOptions): Promise<WriteResult> {
  const write = await store.setNetworkConfig(text, options);
  if (write.previous === 'invalid') out.warn(`the config stored at ${store.keys.config} was invalid; ${options.dryRun === true ? 'it would be replaced' : 'replaced it'}`);
  if (write.moved.length > 0) {
    out.warn(`changing ${layoutChangeUnderLeases(write.moved, write.leases)}: each node keeps its old subnet until it restarts and acquires a new one; restart them, or revoke their leases`);
  }
  const previous = write.previous === null || write.previous === 'invalid' ? null : toNetConf(write.previous);
  const config = toNetConf(write.config);
  return { previous, config, changes: diffConfigs(previous, config) };
}

function printWrite(out: Output, key: string, result: WriteResult, dryRun: boolean): void {
  if (out.json) {
    return out.document({ key, stored: !dryRun, previous: result.previous, config: result.config, changes: result.changes });
  }
  const verb = dryRun ? 'would be' : 'is';
  if (result.changes.length === 0) return out.line(`network config at ${key} ${verb} unchanged`);
  out.line(`network config at ${key} ${verb} ${result.previous === null ? 'created' : 'updated'}:`);
  const width = Math.max(...result.changes.map((c) => c.field.length));
  const none = out.paint({ text: '(none)', style: 'dim' });
  for (const change of result.changes) {
    const from = change.from === null ? none : out.paint({ text: String(change.from), style: 'red' });
    const to = change.to === null ? none : out.paint({ text: String(change.to), style: 'green' });
    out.line(`  ${change.field.padEnd(width)}  ${from} → ${to}`);
  }
}

async function readInput(file: string | undefined): Promise<string> {
  if (file === undefined && process.stdin.isTTY) {
    throw new UsageError('config set reads a net-conf.json: pass --file <path>, or pipe it on stdin (--file -)');
  }
  const source = file === undefined || file === '-' ? 'stdin' : file;
  try {
    if (source === 'stdin') {
      let text = '';
      for await (const chunk of process.stdin) text += String(chunk);
      return text;
    }
    return await readFile(source, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read the network config from ${source}: ${reasonOf(err)}`, { cause: err });
  }
}

async function get(command: Command): Promise<void> {
  const out = outputOf(command);
  await withStore(settingsOf(command), async (store) => {
    const config = toNetConf(await store.getNetworkConfig());
    if (out.json) return out.document(config);
    out.line(configFields(out, config));
  });
}

async function set(command: Command, opts: { file?: string; force?: boolean; dryRun?: boolean }): Promise<void> {
  const out = outputOf(command);
  const text = await readInput(opts.file);
  const dryRun = opts.dryRun === true;
  await withStore(settingsOf(command), async (store) => {
    const result = await writeConfig(store, out, text, { force: opts.force === true, dryRun });
    printWrite(out, store.keys.config, result, dryRun);
  });
}

/** The flag of `config init` that sets each field it can get wrong. */
const INIT_FLAGS: Readonly<Record<string, string>> = {
  Network: '--network',
  IPv6Network: '--ipv6-network',
  IPv6SubnetLen: '--ipv6-subnet-len',
};

type InitOptions = { network?: string; ipv6Network?: string; ipv6SubnetLen?: number; force?: boolean };

async function init(command: Command, opts: InitOptions): Promise<void> {
  const out = outputOf(command);
  if (opts.network === undefined && opts.ipv6Network === undefined) throw new UsageError('give --network, --ipv6-network (an IPv6-only network), or both (dual stack)');
  if (opts.ipv6SubnetLen !== undefined && opts.ipv6Network === undefined) throw new UsageError('--ipv6-subnet-len: it applies only with --ipv6-network');
  // flannel's defaults are left implicit, as flannel does, so they follow the Network.
  const ipv6 =
    opts.ipv6Network === undefined
      ? {}
      : { EnableIPv6: true, IPv6Network: opts.ipv6Network, ...(opts.ipv6SubnetLen === undefined ? {} : { IPv6SubnetLen: opts.ipv6SubnetLen }) };
  const ipv4 = opts.network === undefined ? { EnableIPv4: false } : { Network: opts.network };
  const text = JSON.stringify({ ...ipv4, ...ipv6, Backend: { Type: 'udp' } });
  try {
    parseNetworkConfig(text);
  } catch (err) {
    const flag = err instanceof ConfigError ? INIT_FLAGS[err.field] : undefined;
    if (flag !== undefined) throw new UsageError(`${flag}: ${(err as Error).message}`, { cause: err });
    throw err;
  }
  await withStore(settingsOf(command), async (store) => {
    const current = await currentConfig(store);
    if (current !== null && current !== 'invalid' && opts.force !== true) {
      throw new RefusedError(
        `a network config already exists at ${store.keys.config} (${describeNetworks(toNetConf(current))}); change it with \`miniflannel config set\`, or pass --force to replace it`,
      );
    }
    const { config } = await writeConfig(store, out, text, { force: opts.force === true, dryRun: false });
    if (out.json) return out.document(config);
    out.line(`network config stored at ${store.keys.config}:`);
    out.line(configFields(out, config, '  '));
  });
}

export function configCommand(): Command {
  const config = new Command('config')
    .description("the network config (flannel's net-conf.json) that every node reads")
    .addHelpText('after', examples('miniflannel config init --network 10.244.0.0/16', 'miniflannel config get --json > net-conf.json'));

  config
    .command('get')
    .description('the stored network config, with the defaults filled in (its --json output is a valid net-conf.json)')
    .addHelpText('after', examples('miniflannel config get', 'miniflannel config get --json'))
    .action((_opts: unknown, command: Command) => get(command));

  config
    .command('set')
    .description('validate a net-conf.json, store it, and show which fields changed')
    .option('-f, --file <path>', 'the net-conf.json to store; "-" or no --file reads stdin')
    .option('--force', 'change the subnet layout (Network, SubnetLen, IPv6Network, IPv6SubnetLen, or turn IPv6 off) even though leases exist')
    .option('--dry-run', 'validate and show the changes without storing anything')
    .addHelpText(
      'after',
      examples(
        'miniflannel config set --file net-conf.json',
        `echo '{"Network": "10.244.0.0/16", "SubnetLen": 26, "Backend": {"Type": "udp"}}' | miniflannel config set --dry-run`,
        `echo '{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/48"}' | miniflannel config set`,
      ),
    )
    .action((opts: { file?: string; force?: boolean; dryRun?: boolean }, command: Command) => set(command, opts));

  config
    .command('init')
    .description("store a network config with flannel's defaults: /24 per node (smaller networks: four subnets), UDP port 8285")
    .option('--network <cidr>', 'the IPv4 overlay network, e.g. 10.244.0.0/16; leave it out for an IPv6-only network')
    .option('--ipv6-network <cidr>', "give each node an IPv6 subnet (/64) of this network (EnableIPv6), paired with its IPv4 one when --network is given, e.g. fd00:10:244::/48")
    .option('--ipv6-subnet-len <n>', "with --ipv6-network: each node's IPv6 prefix length instead of 64 (IPv6SubnetLen)", positiveInteger)
    .option('--force', 'replace an existing config (and change the subnet layout even though leases exist)')
    .addHelpText('after', examples('miniflannel config init --network 10.244.0.0/16', 'miniflannel config init --network 10.244.0.0/16 --ipv6-network fd00:10:244::/48', 'miniflannel config init --ipv6-network fd00:10:244::/48'))
    .action((opts: InitOptions, command: Command) => init(command, opts));

  return config;
}
