import path from 'node:path';
import { packageRoot } from '../../lab/paths.js';

/** A compiled test helper script, for tests that run one in a child process or namespace. */
export const compiledTest = (relative: string) => path.join(packageRoot, 'dist/test', relative);
