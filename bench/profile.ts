// Summarises a V8 .cpuprofile (node --cpu-prof): self time by package / area, the top functions by self time, and
// express-passwordless's own functions. `tsx bench/profile.ts FILE.cpuprofile` summarises one taken elsewhere.

import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** bench/run.ts builds the library and the bench's app into bench/node_modules/.bench-build/<pid>/. */
const BUILT = /\/node_modules\/\.bench-build\/[^/]+\/(.*)$/;

/** Which part of the stack a frame belongs to: the library, the bench's app, a package, node, or V8's own entries. */
export function areaOf(url: string, root: string): string {
  if (url === '') return 'native code (syscalls such as writev, V8 builtins)';
  const path = url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url;
  if (path.startsWith('node:')) return 'node internals';
  const built = BUILT.exec(path);
  if (built)
    return built[1] === 'server.js' || built[1] === 'memory.js' ? 'bench app' : 'express-passwordless';
  const nm = path.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (path.startsWith(`${root}/src/`) || path.startsWith(`${root}/stores/`)) return 'express-passwordless';
  if (path.startsWith(`${root}/bench/`)) return 'bench app';
  return path;
}

function shortUrl(url: string, root: string): string {
  return url
    .replace(`file://${root}/`, '')
    .replace(/^.*\/node_modules\/\.bench-build\/[^/]+\//, 'build/')
    .replace(/^.*\/node_modules\//, '');
}

export function summarizeProfile(file: string, root: string, top = 20): void {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });

  let idle = 0;
  const areas = new Map<string, number>();
  const functions = new Map<string, number>();
  const library = new Map<string, number>();
  for (const [id, t] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') {
      idle += t;
      continue;
    }
    const area = ['(garbage collector)', '(program)'].includes(functionName)
      ? functionName
      : areaOf(url, root);
    areas.set(area, (areas.get(area) ?? 0) + t);
    const key =
      `${functionName || '(anonymous)'} ${url ? `${shortUrl(url, root)}:${lineNumber + 1}` : ''}`.trim();
    functions.set(key, (functions.get(key) ?? 0) + t);
    if (area === 'express-passwordless') library.set(key, (library.get(key) ?? 0) + t);
  }
  const busy = total - idle;
  const share = (t: number) => `${((100 * t) / busy).toFixed(1).padStart(5)}%`;
  const list = (entries: Map<string, number>, n: number) => {
    for (const [name, t] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, n))
      console.log(`  ${share(t)}  ${name}`);
  };
  console.log(
    `busy ${(busy / 1e6).toFixed(2)} s of ${(total / 1e6).toFixed(2)} s sampled; self time by area:`,
  );
  list(areas, 14);
  console.log(`top ${top} functions by self time:`);
  list(functions, top);
  if (library.size > 0) {
    console.log(
      "express-passwordless's own functions by self time (what V8 inlined into them counts as theirs):",
    );
    list(library, 10);
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'))) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: tsx bench/profile.ts FILE.cpuprofile');
  summarizeProfile(file, process.cwd());
}
