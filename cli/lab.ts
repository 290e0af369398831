// The lab (sandbox clusters and benchmarks) belongs to a source checkout,
// not to the product: the image carries dist/cli and dist/daemon only. The
// commands that drive it therefore load it on demand, and say what is
// missing when it is not there. The CLI parses and checks the options; the
// lab does the work. The interfaces below are the contract between the two.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Output } from './output.js';

export interface SandboxLab {
  up(opts: { nodes: number; exit?: boolean; prometheus?: boolean }): Promise<void>;
  upDetached(opts: { nodes: number; prometheus?: boolean }): Promise<void>;
  status(json: boolean): Promise<void>;
  down(onlyPid: number | undefined): Promise<void>;
}

export interface EncapRequest {
  readonly repeats: number;
  readonly millis: number;
}
export interface E2eRequest {
  readonly repeats: number;
  readonly seconds: number;
  readonly udpPps: number | 'auto';
  readonly pings: number;
  readonly ablation?: boolean;
  readonly auth?: boolean;
  /** Also measure IPv6 between dual-stack pods (miniflannel and kernel VXLAN). */
  readonly ipv6?: boolean;
}
export interface ControlPlaneRequest {
  readonly nodes: number;
  readonly workers: number;
  readonly changes: number;
  readonly steadySeconds: number;
  readonly idleSeconds: number;
  readonly leaseTtl: number;
  readonly leaseRenewMargin: number;
  readonly kill: number;
}
/** The bench's simulated cluster is 10.0.0.0/8 in /24s: this many nodes at most. */
export const DOCTOR_MAX_NODES = 65_536;
export interface DoctorRequest {
  /** At most DOCTOR_MAX_NODES. */
  readonly nodes: number;
  /** Looks in a row; the first has no previous look to compare with. */
  readonly looks: number;
}
export interface AllRequest {
  readonly encap: EncapRequest;
  readonly e2e: E2eRequest;
  readonly controlPlane: ControlPlaneRequest;
}
/** Where a bench prints (text or JSON), what it writes, and the version it records. */
export interface BenchContext {
  readonly out: Output;
  readonly version: string;
  readonly files: { readonly out?: string; readonly svg?: string };
}

export interface BenchLab {
  encap(opts: EncapRequest, context: BenchContext): Promise<void>;
  e2e(opts: E2eRequest, context: BenchContext): Promise<void>;
  controlPlane(opts: ControlPlaneRequest, context: BenchContext): Promise<void>;
  doctor(opts: DoctorRequest, context: BenchContext): Promise<void>;
  all(opts: AllRequest, context: BenchContext): Promise<void>;
}

/** The lab is not installed alongside this CLI (the image, or `npm install` of the package). */
class LabMissingError extends Error {
  override readonly name = 'LabMissingError';
}

const LAB_ENTRIES = { sandbox: '../lab/sandbox.js', bench: '../lab/bench/run.js' } as const;

export async function loadLab(entry: 'sandbox', command: string): Promise<SandboxLab>;
export async function loadLab(entry: 'bench', command: string): Promise<BenchLab>;
export async function loadLab(entry: keyof typeof LAB_ENTRIES, command: string): Promise<SandboxLab | BenchLab> {
  const url = new URL(LAB_ENTRIES[entry], import.meta.url);
  if (!existsSync(fileURLToPath(url))) {
    throw new LabMissingError(`${command} needs the lab, which is not installed here (${fileURLToPath(url)}); run it from a source checkout after \`npm ci && npm run build\``);
  }
  const module = (await import(url.href)) as { lab: SandboxLab | BenchLab };
  return module.lab;
}
