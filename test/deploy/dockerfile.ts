// deploy/Dockerfile read as the tests need it: its stages, their
// instructions with ARGs substituted, the exec form of ENTRYPOINT and
// HEALTHCHECK, and the programs the runtime stage links onto the PATH (which
// the DaemonSet test runs from this repository's build). The image itself is
// built by podman in image.system.test.ts.
//
// Only what the Dockerfile uses is understood; anything else (an unknown
// shell operator in a RUN line, an instruction other than ARG before FROM)
// is a DockerfileError naming it.
import path from 'node:path';

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
function substitute(text: string, vars: Record<string, string>, where: string): string {
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
function shellWords(text: string): string[] {
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
function runCommands(instruction: Instruction): string[][] {
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
