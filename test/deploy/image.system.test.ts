// The image contract: deploy/Dockerfile's stages followed without a Docker
// engine (test/deploy/dockerfile.ts) in a fresh copy of the build context
// that .dockerignore lets through: `npm ci` with the native build, the
// TypeScript build and the production prune in the build stage, the runtime
// stage's copies and links, and then the image's entrypoint and HEALTHCHECK
// started from that copy.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { runForOutcome, stopProcess } from '../../lab/exec.js';
import { Netns, removeStaleNamespaces, runPrefix } from '../../lab/netns.js';
import { waitFor } from '../../lab/daemon.js';
import { daemonCommand } from '../../daemon/flags.js';
import { packageRoot } from '../../lab/paths.js';
import { copyBuildContext, execForm, inStage, NODE_IMAGE_PATH, parseDockerfile, replay, type Dockerfile, type StageResult } from './dockerfile.js';

const pkg = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as {
  version: string;
  engines: { node: string };
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const dockerfile: Dockerfile = parseDockerfile(readFileSync(path.join(packageRoot, 'deploy', 'Dockerfile'), 'utf8'));
/** The node images keep Node.js, its headers and npm under /usr/local; here, this Node's prefix stands for it. */
const IMAGE_NODE_PREFIX = '/usr/local';
const localNodePrefix = path.resolve(process.execPath, '../..');

const instruction = (stage: StageResult, keyword: string) => {
  const found = stage.stage.instructions.filter((i) => i.keyword === keyword);
  assert.equal(found.length, 1, `stage ${stage.stage.name} has one ${keyword}`);
  return found[0]!;
};

describe('deploy/Dockerfile, followed in a fresh copy of the build context', () => {
  let work: string;
  let context: string;
  let contextFiles: string[];
  let stages: Map<string, StageResult>;
  let runtime: StageResult;
  let build: StageResult;
  /** PATH and ENV of the runtime stage, its directories mapped into the stage's root, then this machine's for `node`, `ip`, `iptables`. */
  let runtimeEnv: Record<string, string>;

  /** An image path in the runtime stage -> its place here. */
  const image = (p: string) => inStage(runtime.root, runtime.workdir, p);

  /** Where a program of an exec-form command is found: the image's PATH first, then this machine's. */
  function resolveProgram(argv: string[]): string[] {
    const [program, ...args] = argv;
    const mappedArgs = args.map((a) => (a.startsWith('/') && existsSync(image(a)) ? image(a) : a));
    if (program!.includes('/')) return [image(program!), ...mappedArgs];
    for (const dir of runtimeEnv.PATH!.split(':')) {
      if (existsSync(path.join(dir, program!))) return [path.join(dir, program!), ...mappedArgs];
    }
    throw new Error(`${program} is on neither the image's PATH nor this machine's`);
  }

  before(async () => {
    assert.ok(existsSync(path.join(localNodePrefix, 'include', 'node', 'node.h')), `this Node's headers (${localNodePrefix}/include/node) stand for the image's`);
    work = await mkdtemp(path.join(tmpdir(), 'miniflannel-image-'));
    context = path.join(work, 'context');
    contextFiles = copyBuildContext(packageRoot, context);
    stages = await replay(dockerfile, {
      context,
      root: path.join(work, 'stages'),
      hostPaths: { [IMAGE_NODE_PREFIX]: localNodePrefix },
      // From the local npm cache where it has the packages; how many compiler jobs is this machine's business.
      env: { npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false', JOBS: String(availableParallelism()) },
    });
    build = stages.get('build')!;
    runtime = [...stages.values()].at(-1)!;
    assert.ok(build, 'a stage named build');
    // The node images' PATH, each directory in the runtime stage's root, then this machine's.
    const imagePath = NODE_IMAGE_PATH;
    runtimeEnv = {
      ...runtime.env,
      PATH: [...imagePath.split(':').map((d) => inStage(runtime.root, '/', d)), ...imagePath.split(':')].join(':'),
    };
  });

  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('the build context is the sources .dockerignore lets through, none of the host build output', () => {
    for (const needed of ['package.json', 'package-lock.json', 'binding.gyp', 'tsconfig.json', 'native/addon.cc', 'daemon/main.ts', 'cli/main.ts', 'deploy/healthcheck.mjs']) {
      assert.ok(contextFiles.includes(needed), `${needed} is in the context`);
    }
    const leaked = contextFiles.filter((f) => /^(node_modules|dist|build|\.git|test|lab)\//.test(f));
    assert.deepEqual(leaked, [], 'host build output, git data, the lab or tests in the context');
  });

  test('the build stage compiles the native binding (npm ci) and the TypeScript', () => {
    const commands = build.ran.map((c) => c.slice(0, 3).join(' '));
    assert.ok(commands.includes('npm ci --no-audit'), `npm ci ran: ${commands.join('; ')}`);
    assert.ok(commands.includes('npm run build'), 'npm run build ran');
    assert.ok(existsSync(inStage(build.root, build.workdir, 'build/Release/miniflannel_native.node')), 'node-gyp built the addon');
    assert.ok(existsSync(inStage(build.root, build.workdir, 'dist/daemon/main.js')), 'tsc built the daemon');
    assert.ok(existsSync(inStage(build.root, build.workdir, 'dist/cli/main.js')), 'tsc built the CLI');
    assert.ok(build.aptPackages.includes('python3') && build.aptPackages.includes('make') && build.aptPackages.includes('g++'), 'node-gyp\'s toolchain is installed');
  });

  test('the runtime stage holds production dependencies only, the compiled JS and the addon', () => {
    const modules = image('node_modules');
    for (const name of Object.keys(pkg.dependencies)) assert.ok(existsSync(path.join(modules, name, 'package.json')), `dependency ${name} is in the image`);
    for (const name of Object.keys(pkg.devDependencies)) assert.ok(!existsSync(path.join(modules, name)), `devDependency ${name} is not in the image`);
    assert.deepEqual(readdirSync(image('build/Release')), ['miniflannel_native.node'], 'only the addon of node-gyp\'s output');
    assert.ok(!existsSync(image('native')) && !existsSync(image('daemon')) && !existsSync(image('test')), 'no sources in the image');
    assert.ok(existsSync(image('dist/daemon/main.js')) && existsSync(image('dist/cli/main.js')));
    assert.deepEqual(readdirSync(image('dist')).sort(), ['cli', 'daemon'], 'neither the lab nor the tests in the image');
  });

  test('`miniflannel sandbox` and `bench` from the image say in one line that the lab is not installed', async () => {
    for (const args of [['sandbox', 'status'], ['bench', 'encap', '--quick']]) {
      const outcome = await runForOutcome([...resolveProgram(['miniflannel']), ...args], { env: runtimeEnv });
      assert.equal(outcome.exitCode, 1, outcome.stderr);
      assert.match(outcome.stderr, /^miniflannel: miniflannel (sandbox|bench) needs the lab, which is not installed here \(.*\/dist\/lab\/.*\); run it from a source checkout/);
      assert.equal(outcome.stderr.trimEnd().split('\n').length, 1, outcome.stderr);
    }
  });

  test('the runtime installs iptables, which the daemon runs, no iproute2 (routes go through rtnetlink), and this machine has every package the stages install', async () => {
    assert.ok(!runtime.aptPackages.includes('iproute2'), 'no iproute2 in the runtime: the daemon runs no `ip`');
    assert.ok(runtime.aptPackages.includes('iptables'), 'iptables in the runtime');
    for (const name of [...build.aptPackages, ...runtime.aptPackages]) {
      const outcome = await runForOutcome(['dpkg-query', '-W', '-f', '${Status}', name]);
      assert.equal(outcome.stdout, 'install ok installed', `${name}, which the Dockerfile installs, is on this machine (the test stands in for the image with it)`);
    }
  });

  test('both stages start FROM the same Node LTS image, one that package.json engines allows', () => {
    const bases = dockerfile.stages.map((s) => s.base);
    assert.equal(new Set(bases).size, 1, `the addon is built for the Node that runs it: ${bases.join(', ')}`);
    const match = /^node:(\d+)-[a-z]+-slim$/.exec(bases[0]!);
    assert.ok(match, `${bases[0]} is a slim node image`);
    const major = Number(match[1]);
    assert.equal(major % 2, 0, `Node ${major} is an LTS line (even)`);
    const minimum = Number(/^>=\s*(\d+)/.exec(pkg.engines.node)?.[1]);
    assert.ok(major >= minimum, `Node ${major} satisfies engines ${pkg.engines.node}`);
    assert.equal(/^VERSION=(.*)$/.exec(runtime.stage.instructions.find((i) => i.keyword === 'ARG' && i.text.startsWith('VERSION='))?.text ?? '')?.[1], pkg.version, 'the image\'s version label defaults to package.json\'s version');
  });

  test('`miniflanneld --help`, through the image\'s ENTRYPOINT, lists every daemon flag', async () => {
    const entrypoint = execForm(instruction(runtime, 'ENTRYPOINT').text, instruction(runtime, 'ENTRYPOINT').line);
    assert.deepEqual(entrypoint, ['miniflanneld']);
    const outcome = await runForOutcome([...resolveProgram(entrypoint), '--help'], { env: runtimeEnv });
    assert.equal(outcome.exitCode, 0, outcome.stderr);
    for (const option of daemonCommand().options) assert.ok(outcome.stdout.includes(option.long!), `--help lists ${option.long}`);
  });

  test('`miniflannel version` from the image reports the package version', async () => {
    const outcome = await runForOutcome([...resolveProgram(['miniflannel']), 'version'], { env: runtimeEnv });
    assert.equal(outcome.exitCode, 0, outcome.stderr);
    assert.match(outcome.stdout, new RegExp(`^miniflannel ${pkg.version.replace(/\./g, '\\.')} \\(node v\\d+`));
  });

  test('the entrypoint runs a node on the image\'s native binding, and the image\'s HEALTHCHECK follows it', async () => {
    await removeStaleNamespaces();
    const ns = await Netns.create(`${runPrefix()}image`);
    try {
      // A node with nothing but an underlay address (on one end of a veth pair), in static mode: no Redis needed to get the TUN, the batched UDP socket and /healthz.
      await ns.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
      await ns.ip('addr', 'add', '198.18.7.1/24', 'dev', 'eth0');
      await ns.ip('link', 'set', 'eth0', 'up');
      await ns.ip('link', 'set', 'eth1', 'up');
      const healthcheck = resolveProgram(execForm(/CMD\s+(\[.*\])$/.exec(instruction(runtime, 'HEALTHCHECK').text)?.[1] ?? '', instruction(runtime, 'HEALTHCHECK').line));
      const probe = () => ns.execForOutcome(healthcheck, { env: runtimeEnv });
      const down = await probe();
      assert.equal(down.exitCode, 1, 'the HEALTHCHECK fails while no daemon answers');

      const entrypoint = resolveProgram(execForm(instruction(runtime, 'ENTRYPOINT').text, 0));
      const daemon: ChildProcess = ns.spawn([...entrypoint, '--iface', 'eth0', '--static-network', '10.244.0.0/16', '--static-subnet', '10.244.7.0/24'], { env: runtimeEnv });
      let log = '';
      daemon.stdout!.on('data', (d) => (log += d));
      daemon.stderr!.on('data', (d) => (log += d));
      try {
        await waitFor('the HEALTHCHECK to pass', async () => {
          if (daemon.exitCode !== null) throw new Error(`miniflanneld exited with ${daemon.exitCode}: ${log}`);
          return (await probe()).exitCode === 0;
        });
        assert.match(await ns.ip('-d', 'link', 'show', 'flannel0'), /tun/, 'the image\'s addon made the TUN');
      } finally {
        assert.equal(await stopProcess(daemon), 0, `a clean stop on SIGTERM: ${log}`);
      }
    } finally {
      await ns.destroy();
    }
  });
});
