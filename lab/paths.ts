// Where the built programs are, from dist/lab/: the lab runs the real
// binaries, as an operator would, never their modules in-process.
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const daemonBin = path.join(packageRoot, 'dist/daemon/main.js');
export const cliBin = path.join(packageRoot, 'dist/cli/main.js');
