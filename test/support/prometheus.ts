import { spawnSync } from "node:child_process";

/** One sample of a Prometheus text exposition, e.g. `http_requests_total{route="/x",status="200"} 3`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key as string] = (value as string).replace(/\\(.)/g, "$1");
    }
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one sample with this name whose labels include `labels`; 0 when there is none yet. */
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

/** Where `promtool` (Debian package `prometheus`) is, or undefined when it is not installed. */
export function findPromtool(): string | undefined {
  const found = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

/** `promtool check metrics` on an exposition: its complaints, one per line (empty when it passes). */
export function promtoolProblems(promtool: string, exposition: string): string[] {
  const run = spawnSync(promtool, ["check", "metrics"], { input: exposition, encoding: "utf8", timeout: 20_000 });
  const output = `${run.stdout}${run.stderr}`.split("\n").filter(Boolean);
  if (run.status !== 0 && output.length === 0) output.push(`promtool exited with ${run.status ?? run.signal}`);
  return output;
}
