// `miniflannel version`: this CLI's version (from package.json) and the Node.js running it.

import { Command } from 'commander';
import { packageVersion } from '../../daemon/version.js';
import { examples, outputOf } from '../conventions.js';

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
