// The e2e comparison as an SVG chart: one panel per measurement, one bar
// per path, each bar labelled with its value and its ratio to kernel VXLAN.
// Plain SVG 1.1 with no scripts or external fonts, so it renders on GitHub.
import { UDP_LOAD_NAMES, UDP_LOADS, type E2eResult, type PathResult } from './e2e.js';

interface Panel {
  title: string;
  /** Lower is better (latency, CPU): said in the title. */
  lowerIsBetter: boolean;
  value: (p: PathResult) => number | null;
  format: (v: number) => string;
}

const PANELS: Panel[] = [
  { title: 'TCP, 1 stream (Gbit/s)', lowerIsBetter: false, value: (p) => p.median.tcp1StreamBitsPerSecond / 1e9, format: (v) => v.toFixed(2) },
  { title: 'TCP, 4 streams (Gbit/s)', lowerIsBetter: false, value: (p) => p.median.tcp4StreamsBitsPerSecond / 1e9, format: (v) => v.toFixed(2) },
  ...UDP_LOAD_NAMES.map(
    (name): Panel => ({ title: `${UDP_LOADS[name].title} delivered (kpps)`, lowerIsBetter: false, value: (p) => p.median.udp[name].deliveredPps / 1000, format: (v) => v.toFixed(1) }),
  ),
  { title: 'RTT p50 (µs)', lowerIsBetter: true, value: (p) => p.median.rttP50Micros, format: (v) => v.toFixed(0) },
  { title: 'RTT p99 (µs)', lowerIsBetter: true, value: (p) => p.median.rttP99Micros, format: (v) => v.toFixed(0) },
  { title: 'RTT p99 beside a TCP stream (µs)', lowerIsBetter: true, value: (p) => p.median.rttUnderLoadP99Micros, format: (v) => v.toFixed(0) },
  { title: 'Forwarder CPU per GB (s)', lowerIsBetter: true, value: (p) => p.median.cpuSecondsPerGB, format: (v) => v.toFixed(2) },
];

const COLORS: Record<string, string> = {
  miniflannel: '#2563eb',
  'kernel VXLAN': '#6b7280',
  underlay: '#a3a3a3',
  OpenVPN: '#d97706',
};
const OTHER_COLOR = '#93c5fd';

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const WIDTH = 960;
const COLUMNS = 2;
const PANEL_WIDTH = WIDTH / COLUMNS;
const LABEL_WIDTH = 110;
const VALUE_WIDTH = 140;
const ROW = 22;
const BAR = 15;

export function e2eChart(result: E2eResult, subtitle: string): string {
  const paths = result.paths;
  const panelHeight = 34 + paths.length * ROW + 10;
  const top = 62;
  const rows = Math.ceil(PANELS.length / COLUMNS);
  const height = top + rows * panelHeight + 20 + 15 * (2 + result.skipped.length);
  const vxlan = paths.find((p) => p.name === 'kernel VXLAN');
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  parts.push(`<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`);
  parts.push(`<text x="16" y="26" font-size="17" font-weight="bold">miniflannel bench e2e: pod-to-pod, two nodes in namespaces</text>`);
  parts.push(`<text x="16" y="46" fill="#444">${escape(subtitle)}</text>`);
  PANELS.forEach((panel, i) => {
    const x0 = (i % COLUMNS) * PANEL_WIDTH + 16;
    const y0 = top + Math.floor(i / COLUMNS) * panelHeight;
    const values = paths.map((p) => panel.value(p));
    const max = Math.max(0, ...values.map((v) => v ?? 0));
    const barSpace = PANEL_WIDTH - 32 - LABEL_WIDTH - VALUE_WIDTH;
    const reference = vxlan ? panel.value(vxlan) : null;
    parts.push(`<text x="${x0}" y="${y0 + 16}" font-weight="bold">${escape(panel.title)}${panel.lowerIsBetter ? ' <tspan font-weight="normal" fill="#666">lower is better</tspan>' : ''}</text>`);
    paths.forEach((p, j) => {
      const y = y0 + 28 + j * ROW;
      const value = values[j] ?? null;
      parts.push(`<text x="${x0 + LABEL_WIDTH - 8}" y="${y + BAR - 3}" text-anchor="end">${escape(p.name)}</text>`);
      if (value === null || !Number.isFinite(value)) {
        parts.push(`<text x="${x0 + LABEL_WIDTH}" y="${y + BAR - 3}" fill="#888">n/a (kernel)</text>`);
        return;
      }
      const width = max > 0 ? Math.max(1, (value / max) * barSpace) : 1;
      const color = COLORS[p.name] ?? OTHER_COLOR;
      parts.push(`<rect x="${x0 + LABEL_WIDTH}" y="${y}" width="${width.toFixed(1)}" height="${BAR}" fill="${color}"/>`);
      const vs = reference !== null && p !== vxlan && reference > 0 ? `<tspan dx="8" fill="#666">${(value / reference).toFixed(2)}× VXLAN</tspan>` : '';
      parts.push(`<text x="${(x0 + LABEL_WIDTH + width + 6).toFixed(1)}" y="${y + BAR - 3}">${escape(panel.format(value))}${vs}</text>`);
    });
  });
  const o = result.options;
  const notes = [
    `Medians of ${o.repeats} round(s) of ${o.seconds} s runs. UDP offered on every path: ${UDP_LOAD_NAMES.map((name) => `${UDP_LOADS[name].title} ${(o.udpOfferedPps[name] / 1000).toFixed(0)} kpps`).join(', ')}.`,
    'RTT: ping every 10 ms, alone and beside one TCP stream. CPU: user + system time of the forwarder processes on both nodes per 10^9 B of TCP payload.',
    ...result.skipped.map((s) => `${s.name} skipped: ${s.reason}.`),
  ];
  notes.forEach((note, i) => parts.push(`<text x="16" y="${height - 12 - (notes.length - 1 - i) * 15}" fill="#444" font-size="11">${escape(note)}</text>`));
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
