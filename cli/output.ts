// How commands print: aligned tables and label/value blocks for people, JSON
// for scripts, durations and timestamps in one format everywhere. Commands
// build rows and documents; this module decides how they look.
//
// Data goes to stdout, everything else (warnings, notes, prompts) to stderr,
// so `--json` output can always be piped.

/** ANSI styles used for emphasis; each is a no-op when colour is off. */
const STYLES = {
  bold: ['\x1b[1m', '\x1b[22m'],
  dim: ['\x1b[2m', '\x1b[22m'],
  red: ['\x1b[31m', '\x1b[39m'],
  green: ['\x1b[32m', '\x1b[39m'],
  yellow: ['\x1b[33m', '\x1b[39m'],
  cyan: ['\x1b[36m', '\x1b[39m'],
} as const;

export type Style = keyof typeof STYLES;

/** A table cell or a value: plain text, or text with a style applied after padding. */
export type Cell = string | { readonly text: string; readonly style: Style };

/**
 * Colour is on only for a terminal, unless --no-color (colorFlag false) or
 * NO_COLOR (https://no-color.org) turns it off; FORCE_COLOR turns it on for a
 * pipe (e.g. `| less -R`).
 */
export function colorEnabled(colorFlag: boolean, stream: { readonly isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (!colorFlag) return false;
  if (env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '') return false;
  const force = env['FORCE_COLOR'];
  if (force !== undefined && force !== '') return force !== '0' && force !== 'false';
  return stream.isTTY === true;
}

export interface OutputStreams {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

export class Output {
  /** Whether the command should print JSON instead of text. */
  readonly json: boolean;
  readonly color: boolean;
  private readonly streams: OutputStreams;

  constructor(options: { json: boolean; color: boolean }, streams: OutputStreams = process) {
    this.json = options.json;
    this.color = options.color;
    this.streams = streams;
  }

  /** One line (or several, joined) of text on stdout. */
  line(text = ''): void {
    this.streams.stdout.write(`${text}\n`);
  }

  /** One JSON document, indented, on stdout. */
  document(value: unknown): void {
    this.streams.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** One JSON object on one line (NDJSON), for streams of events. */
  record(value: unknown): void {
    this.streams.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** A warning on stderr: the command goes on. */
  warn(text: string): void {
    this.streams.stderr.write(`miniflannel: warning: ${text}\n`);
  }

  /** A remark on stderr that is not data (e.g. "no leases"). */
  note(text: string): void {
    this.streams.stderr.write(`${text}\n`);
  }

  paint(cell: Cell): string {
    if (typeof cell === 'string') return cell;
    if (!this.color) return cell.text;
    const [open, close] = STYLES[cell.style];
    return `${open}${cell.text}${close}`;
  }

  /**
   * Columns aligned on the widest cell, three spaces apart, header first.
   * `minWidths` keeps columns steady across tables printed one row at a time
   * (watch output), where `header: false` leaves the header out. The last
   * column is not padded, so lines carry no trailing blanks.
   */
  table(columns: readonly string[], rows: readonly (readonly Cell[])[], options: { minWidths?: readonly number[]; header?: boolean } = {}): string {
    const widths = columns.map((title, i) => Math.max(title.length, options.minWidths?.[i] ?? 0, ...rows.map((row) => textOf(row[i] ?? '').length)));
    const render = (cells: readonly Cell[]): string =>
      cells
        .map((cell, i) => {
          const pad = i === cells.length - 1 ? '' : ' '.repeat((widths[i] ?? 0) - textOf(cell).length);
          return this.paint(cell) + pad;
        })
        .join('   ');
    const lines = rows.map(render);
    if (options.header !== false) lines.unshift(render(columns.map((title) => ({ text: title, style: 'bold' as const }))));
    return lines.join('\n');
  }

  /** Labels and values, the labels aligned: for one object shown in full. */
  fields(pairs: readonly (readonly [string, Cell])[], indent = ''): string {
    const width = Math.max(0, ...pairs.map(([label]) => label.length + 1));
    return pairs.map(([label, value]) => `${indent}${`${label}:`.padEnd(width)}  ${this.paint(value)}`).join('\n');
  }
}

export function textOf(cell: Cell): string {
  return typeof cell === 'string' ? cell : cell.text;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * A duration in the two largest units, rounded down: "2d03h", "23h59m",
 * "4m05s", "45s". Rounding down means a lease shown as "0s" has under a second left.
 */
export function humanDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms));
  const two = (n: number) => String(n).padStart(2, '0');
  if (total >= DAY) return `${Math.floor(total / DAY)}d${two(Math.floor((total % DAY) / HOUR))}h`;
  if (total >= HOUR) return `${Math.floor(total / HOUR)}h${two(Math.floor((total % HOUR) / MINUTE))}m`;
  if (total >= MINUTE) return `${Math.floor(total / MINUTE)}m${two(Math.floor((total % MINUTE) / SECOND))}s`;
  return `${Math.floor(total / SECOND)}s`;
}

/** A byte count in binary units with one decimal: "512 B", "1.4 MiB". */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A timestamp (ms since the epoch) as ISO 8601 in UTC. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}
