/**
 * Top self-time functions of a V8 CPU profile (`node --cpu-prof`, e.g. BENCH_CPU_PROF=1 npm run bench):
 * `tsx bench/profile-summary.ts <file.cpuprofile> [top]`. Also sums self time per package, which is
 * usually the more useful answer to "where does a request's CPU go".
 */
import { readFile } from "node:fs/promises";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error("usage: tsx bench/profile-summary.ts <file.cpuprofile> [top]");
  process.exit(2);
}
const profile = JSON.parse(await readFile(file, "utf8")) as Profile;
const top = Number(topArg ?? 25);
const microsPerSample = (profile.endTime - profile.startTime) / Math.max(1, profile.samples.length);
const hits = new Map<number, number>();
for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);

const byFunction = new Map<string, number>();
const byPackage = new Map<string, number>();
let total = 0;
for (const node of profile.nodes) {
  const count = hits.get(node.id) ?? 0;
  if (count === 0) continue;
  total += count;
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/^file:\/\//, "").replace(/^.*\/node_modules\//, "");
  const name = `${functionName || "(anonymous)"} ${where ? `${where}:${lineNumber + 1}` : ""}`.trim();
  byFunction.set(name, (byFunction.get(name) ?? 0) + count);
  const pkg = url.includes("/node_modules/")
    ? (/\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? "?")
    : url.startsWith("node:") || url === ""
      ? functionName.startsWith("(")
        ? functionName
        : "node internals"
      : url.includes("/src/")
        ? "service code (src/)"
        : url;
  byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + count);
}

const print = (title: string, entries: Map<string, number>, limit: number) => {
  console.log(`\n${title}`);
  for (const [name, count] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
    const ms = (count * microsPerSample) / 1000;
    console.log(`${((100 * count) / total).toFixed(1).padStart(5)}%  ${ms.toFixed(0).padStart(7)} ms  ${name}`);
  }
};
console.log(`${file}: ${((total * microsPerSample) / 1e6).toFixed(1)} s sampled`);
print("self time by package", byPackage, 15);
print("top self-time functions", byFunction, top);
