import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The package root, from dist/test/harness/. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const daemonBin = path.join(packageRoot, 'dist/daemon/main.js');
export const cliBin = path.join(packageRoot, 'dist/cli/main.js');
export const compiledTest = (relative: string) => path.join(packageRoot, 'dist/test', relative);
