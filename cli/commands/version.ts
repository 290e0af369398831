// `miniflannel version`: this CLI's version (from package.json) and the Node.js running it.

import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { examples, outputOf } from '../conventions.js';

/** The package's version. dist/cli/commands/version.js sits three levels below package.json. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function versionCommand(): Command {
  return new Command('version')
    .description('the version of miniflannel and of Node.js')
    .addHelpText('after', examples('miniflannel version', 'miniflannel version --json'))
    .action((_opts: unknown, command: Command) => {
      const out = outputOf(command);
      const version = packageVersion();
      if (out.json) return out.document({ name: 'miniflannel', version, node: process.version, platform: `${process.platform}/${process.arch}` });
      out.line(`miniflannel ${version} (node ${process.version}, ${process.platform}/${process.arch})`);
    });
}
