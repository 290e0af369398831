// deploy/Dockerfile and .dockerignore as the image test follows them without
// a Docker engine: the build context is the working tree filtered by
// .dockerignore, and each stage's filesystem is a directory of the test, so
// an image path such as /src/dist maps to <stage root>/src/dist.
//
// Only what the Dockerfile uses is understood. Anything else (an unknown
// instruction, a RUN command other than apt-get, npm, ln -s and the apt
// clean-up) is a DockerfileError naming it, so a new step is noticed here
// rather than silently left out of the test.
import { cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The PATH of the node images, which the Dockerfile's stages inherit. */
export const NODE_IMAGE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export class DockerfileError extends Error {
  override name = 'DockerfileError';
}

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  keyword: string;
  /** The rest of the logical line, continuations joined. */
  text: string;
  line: number;
}

export interface Stage {
  name: string;
  /** FROM's image, ARGs substituted. */
  base: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Record<string, string>;
  stages: Stage[];
}

/** Splits into logical lines: comments dropped, `\` continuations joined (comment lines inside them skipped, as Docker does). */
function logicalLines(text: string): Array<{ text: string; line: number }> {
  const lines = text.split('\n');
  const out: Array<{ text: string; line: number }> = [];
  let current: { text: string; line: number } | undefined;
  lines.forEach((raw, i) => {
    const trimmed = raw.trim();
    if (trimmed.startsWith('#') || (trimmed === '' && current === undefined)) return;
    const continued = /\\\s*$/.test(raw);
    const piece = continued ? raw.replace(/\\\s*$/, '') : raw;
    if (current) current.text += ` ${piece.trim()}`;
    else current = { text: piece.trim(), line: i + 1 };
    if (!continued) {
      out.push(current);
      current = undefined;
    }
  });
  if (current) out.push(current);
  return out;
}

/** ${NAME}, ${NAME:-default} and $NAME from `vars`; an unknown name is an error rather than an empty string. */
export function substitute(text: string, vars: Record<string, string>, where: string): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, braced: string | undefined, fallback: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    const value = vars[name] ?? fallback;
    if (value === undefined) throw new DockerfileError(`${where}: \$${name} is not declared`);
    return value;
  });
}

export function parseDockerfile(text: string): Dockerfile {
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const { text: lineText, line } of logicalLines(text)) {
    const match = /^(\w+)\s*(.*)$/.exec(lineText);
    if (!match) throw new DockerfileError(`line ${line}: cannot read "${lineText}"`);
    const keyword = match[1]!.toUpperCase();
    const rest = match[2]!;
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!from) throw new DockerfileError(`line ${line}: FROM ${rest}`);
      stages.push({ name: from[2] ?? String(stages.length), base: substitute(from[1]!, globalArgs, `line ${line}`), instructions: [] });
    } else if (stages.length === 0) {
      if (keyword !== 'ARG') throw new DockerfileError(`line ${line}: only ARG may come before FROM`);
      const [name, value] = splitAssignment(rest);
      globalArgs[name] = value ?? '';
    } else {
      stages.at(-1)!.instructions.push({ keyword, text: rest, line });
    }
  }
  return { globalArgs, stages };
}

function splitAssignment(text: string): [string, string | undefined] {
  const eq = text.indexOf('=');
  return eq < 0 ? [text.trim(), undefined] : [text.slice(0, eq).trim(), unquote(text.slice(eq + 1).trim())];
}

const unquote = (s: string) => (/^"(.*)"$/.exec(s)?.[1] ?? /^'(.*)'$/.exec(s)?.[1] ?? s);

/** Shell words, with quotes; enough for the RUN lines of this Dockerfile. */
export function shellWords(text: string): string[] {
  const words: string[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(&&|\|\||;)|([^\s"';&|]+)/g;
  let current: string | undefined;
  let last = 0;
  for (let m = pattern.exec(text); m; m = pattern.exec(text)) {
    const gap = text.slice(last, m.index);
    if (/\s/.test(gap) || m[3] !== undefined) {
      if (current !== undefined) words.push(current);
      current = undefined;
    }
    if (m[3] !== undefined) words.push(m[3]);
    else current = (current ?? '') + (m[1] ?? m[2] ?? m[4]!);
    last = pattern.lastIndex;
  }
  if (current !== undefined) words.push(current);
  return words;
}

/** A RUN line's commands, split at `&&`; other shell operators are refused. */
export function runCommands(instruction: Instruction): string[][] {
  if (instruction.text.trimStart().startsWith('[')) throw new DockerfileError(`line ${instruction.line}: exec-form RUN is not followed by the test`);
  const commands: string[][] = [[]];
  for (const word of shellWords(instruction.text)) {
    if (word === '&&') commands.push([]);
    else if (word === '||' || word === ';') throw new DockerfileError(`line ${instruction.line}: only && joins commands in a RUN line the test follows`);
    else commands.at(-1)!.push(word);
  }
  return commands.filter((c) => c.length > 0);
}

/** The JSON (exec) form of ENTRYPOINT, CMD and HEALTHCHECK's CMD. */
export function execForm(text: string, line: number): string[] {
  try {
    const value: unknown = JSON.parse(text);
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value;
  } catch {
    // reported below
  }
  throw new DockerfileError(`line ${line}: expected the exec form ["program", "arg", ...], got ${text}`);
}

// ---- .dockerignore ----

interface IgnoreRule {
  pattern: RegExp;
  /** The pattern's text, cleaned: no leading ./ or /, no trailing /. */
  text: string;
  negated: boolean;
}

function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      source += '.*';
      i++;
      if (glob[i + 1] === '/') i++;
    } else if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[' || c === '\\') throw new DockerfileError(`.dockerignore: the test does not follow "${glob}" (character classes, escapes)`);
    else source += c.replace(/[.+^${}()|]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/** Docker's .dockerignore: patterns in order, the last match decides, a match on a directory covers what is inside. */
export class DockerIgnore {
  private readonly rules: IgnoreRule[];

  constructor(text: string) {
    this.rules = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => {
        const negated = l.startsWith('!');
        const cleaned = path.posix.normalize((negated ? l.slice(1) : l).trim()).replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
        return { pattern: globToRegExp(cleaned), text: cleaned, negated };
      });
  }

  /** Whether `relative` (a path in the context, with /) is left out of the context. */
  excludes(relative: string): boolean {
    const parts = relative.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of this.rules) {
      if (candidates.some((c) => rule.pattern.test(c))) excluded = !rule.negated;
    }
    return excluded;
  }

  /** Whether something below the excluded directory `relative` could still be let back in by a later `!` pattern. */
  mayIncludeBelow(relative: string): boolean {
    return this.rules.some((r) => r.negated && (r.text.startsWith(`${relative}/`) || r.text.includes('*')));
  }
}

/** Copies the build context `docker build` would send: the files of `root` that .dockerignore lets through. */
export function copyBuildContext(root: string, to: string): string[] {
  const ignore = new DockerIgnore(readFileSync(path.join(root, '.dockerignore'), 'utf8'));
  const copied: string[] = [];
  const walk = (relative: string) => {
    for (const entry of readdirSync(path.join(root, relative), { withFileTypes: true })) {
      const child = relative === '' ? entry.name : `${relative}/${entry.name}`;
      const excluded = ignore.excludes(child);
      if (entry.isDirectory()) {
        if (!excluded || ignore.mayIncludeBelow(child)) walk(child);
      } else if (!excluded) {
        mkdirSync(path.join(to, relative), { recursive: true });
        cpSync(path.join(root, child), path.join(to, child), { verbatimSymlinks: true });
        copied.push(child);
      }
    }
  };
  walk('');
  return copied.sort();
}

// ---- following the stages ----

export interface ReplayOptions {
  /** The build context (a copy, see copyBuildContext). */
  context: string;
  /** Where the stages' filesystems go: <root>/<stage name>/. */
  root: string;
  /**
   * Image paths that stand for something of this machine, e.g. the node
   * image's /usr/local (Node and its headers) -> this Node's prefix.
   */
  hostPaths: Record<string, string>;
  /** Extra environment for the npm commands (e.g. the npm cache to prefer). */
  env?: Record<string, string>;
  log?: (line: string) => void;
}

export interface StageResult {
  stage: Stage;
  root: string;
  env: Record<string, string>;
  workdir: string;
  /** Packages the stage's apt-get install lines name (installed on this machine, not by the test). */
  aptPackages: string[];
  /** Each command the test ran, as the Dockerfile wrote it. */
  ran: string[][];
}

/** The path of image path `p` in a stage whose root is `root`, relative to `workdir` when `p` is relative. */
export function inStage(root: string, workdir: string, p: string): string {
  return path.join(root, path.posix.resolve(workdir, p));
}

function copyInto(sourceRoot: string, sourceWorkdir: string, sources: string[], destination: string, where: string): void {
  const intoDirectory = destination.endsWith('/') || sources.length > 1;
  for (const source of sources) {
    const from = inStage(sourceRoot, sourceWorkdir, source);
    let stat;
    try {
      stat = lstatSync(from);
    } catch (err) {
      throw new DockerfileError(`${where}: COPY source ${source} does not exist (${from})`, { cause: err });
    }
    // A directory's contents are copied, not the directory itself.
    const to = stat.isDirectory() ? destination : intoDirectory ? path.join(destination, path.basename(from)) : destination;
    mkdirSync(stat.isDirectory() ? to : path.dirname(to), { recursive: true });
    cpSync(from, to, { recursive: true, verbatimSymlinks: true });
  }
}

/**
 * Follows every stage in order: ENV, WORKDIR, COPY (from the context or an
 * earlier stage) and RUN. npm commands run for real in the stage's WORKDIR;
 * apt-get is recorded (its packages must be on this machine); `ln -s` makes
 * the link inside the stage's root.
 */
export async function replay(file: Dockerfile, options: ReplayOptions): Promise<Map<string, StageResult>> {
  const results = new Map<string, StageResult>();
  for (const stage of file.stages) {
    const root = path.join(options.root, stage.name);
    mkdirSync(root, { recursive: true });
    const result: StageResult = { stage, root, env: {}, workdir: '/', aptPackages: [], ran: [] };
    results.set(stage.name, result);
    const vars: Record<string, string> = {};
    const mapHost = (value: string) => options.hostPaths[value] ?? value;
    for (const instruction of stage.instructions) {
      const where = `Dockerfile line ${instruction.line}`;
      const text = substitute(instruction.text, { ...vars, ...result.env }, where);
      switch (instruction.keyword) {
        case 'ARG': {
          const [name, value] = splitAssignment(instruction.text);
          vars[name] = value ?? file.globalArgs[name] ?? '';
          break;
        }
        case 'ENV': {
          const [name, value] = splitAssignment(text);
          if (value === undefined) throw new DockerfileError(`${where}: write ENV as NAME=value`);
          result.env[name] = value;
          break;
        }
        case 'WORKDIR':
          result.workdir = path.posix.resolve(result.workdir, text.trim());
          mkdirSync(inStage(root, '/', result.workdir), { recursive: true });
          break;
        case 'COPY': {
          const words = shellWords(text);
          const flags = words.filter((w) => w.startsWith('--'));
          const paths = words.filter((w) => !w.startsWith('--'));
          const fromFlag = flags.find((f) => f.startsWith('--from='));
          const unknown = flags.filter((f) => f !== fromFlag);
          if (unknown.length > 0) throw new DockerfileError(`${where}: COPY ${unknown.join(' ')} is not followed by the test`);
          if (paths.length < 2) throw new DockerfileError(`${where}: COPY needs a source and a destination`);
          const destination = inStage(root, result.workdir, paths.at(-1)!) + (paths.at(-1)!.endsWith('/') ? '/' : '');
          if (fromFlag) {
            const from = results.get(fromFlag.slice('--from='.length));
            if (!from) throw new DockerfileError(`${where}: ${fromFlag} names no earlier stage`);
            copyInto(from.root, '/', paths.slice(0, -1), destination, where);
          } else {
            copyInto(options.context, '/', paths.slice(0, -1), destination, where);
          }
          break;
        }
        case 'RUN':
          for (const command of runCommands({ ...instruction, text })) {
            await runCommand(command, result, { ...options, where, mapHost });
          }
          break;
        case 'LABEL':
        case 'EXPOSE':
        case 'HEALTHCHECK':
        case 'ENTRYPOINT':
        case 'CMD':
          break;
        default:
          throw new DockerfileError(`${where}: ${instruction.keyword} is not followed by the test; teach test/deploy/dockerfile.ts`);
      }
    }
  }
  return results;
}

async function runCommand(
  command: string[],
  stage: StageResult,
  options: ReplayOptions & { where: string; mapHost: (value: string) => string },
): Promise<void> {
  const [program, ...args] = command;
  const { where } = options;
  if (program === 'apt-get') {
    // apt-get update / install -y --no-install-recommends <packages>: the machine running the tests has them.
    if (args[0] === 'install') stage.aptPackages.push(...args.slice(1).filter((a) => !a.startsWith('-')));
    else if (args[0] !== 'update') throw new DockerfileError(`${where}: apt-get ${args[0]} is not followed by the test`);
    return;
  }
  if (program === 'rm') {
    if (!args.every((a) => a.startsWith('-') || a.startsWith('/var/lib/apt/lists'))) throw new DockerfileError(`${where}: rm ${args.join(' ')} is not followed by the test`);
    return;
  }
  if (program === 'ln') {
    const [flag, target, link] = args;
    if (flag !== '-s' || !target || !link || args.length !== 3) throw new DockerfileError(`${where}: only \`ln -s TARGET LINK\` is followed`);
    const linkPath = inStage(stage.root, stage.workdir, link);
    mkdirSync(path.dirname(linkPath), { recursive: true });
    symlinkSync(inStage(stage.root, stage.workdir, target), linkPath);
    stage.ran.push(command);
    return;
  }
  if (program === 'npm') {
    const env: Record<string, string> = { ...(process.env as Record<string, string>) };
    for (const [name, value] of Object.entries(stage.env)) env[name] = options.mapHost(value);
    Object.assign(env, options.env);
    options.log?.(`${where}: ${command.join(' ')}`);
    try {
      await execFileAsync(program, args, { env, cwd: inStage(stage.root, '/', stage.workdir), timeout: 300_000, maxBuffer: 64 * 1024 * 1024 });
    } catch (err) {
      const output = `${(err as { stderr?: string }).stderr ?? ''}${(err as { stdout?: string }).stdout ?? ''}`.trim().split('\n').slice(-15).join('\n');
      throw new DockerfileError(`${where}: \`${command.join(' ')}\` failed:\n${output}`, { cause: err });
    }
    stage.ran.push(command);
    return;
  }
  throw new DockerfileError(`${where}: \`${command.join(' ')}\` is not followed by the test; teach test/deploy/dockerfile.ts`);
}

/**
 * The programs the final stage links onto its PATH (`ln -s TARGET LINK`),
 * each with its target relative to the stage's WORKDIR: `miniflanneld` ->
 * `dist/daemon/main.js`. A test that runs a manifest's command uses these
 * names for the repository's own build.
 */
export function imagePrograms(file: Dockerfile): Record<string, string> {
  const stage = file.stages.at(-1)!;
  let workdir = '/';
  const programs: Record<string, string> = {};
  for (const instruction of stage.instructions) {
    if (instruction.keyword === 'WORKDIR') workdir = path.posix.resolve(workdir, instruction.text.trim());
    if (instruction.keyword !== 'RUN') continue;
    for (const [program, flag, target, link] of runCommands(instruction)) {
      if (program !== 'ln' || flag !== '-s' || !target || !link) continue;
      const relative = path.posix.relative(workdir, path.posix.resolve(workdir, target));
      if (relative.startsWith('..')) throw new DockerfileError(`Dockerfile line ${instruction.line}: ${target} is outside WORKDIR ${workdir}`);
      programs[path.posix.basename(link)] = relative;
    }
  }
  return programs;
}
