/**
 * The load generator, run as its own process (`tsx bench/load.ts <job.json> <result.json>`) so its CPU is not
 * the service's. It sends a prepared list of requests with autocannon, spread over one or more targets (the
 * connections are split evenly), and records which requests were answered 2xx, so the verification knows
 * exactly which statuses were acknowledged.
 */
import { readFile, writeFile } from "node:fs/promises";
import autocannon from "autocannon";
import { ACKED, type LoadJob, type LoadResult, REFUSED, SENT } from "./load-job.ts";

async function main(jobPath: string, resultPath: string) {
  const job = JSON.parse(await readFile(jobPath, "utf8")) as LoadJob;
  const states = new Uint8Array(job.requests.length);
  let cursor = 0;
  const instances: autocannon.Instance[] = [];
  const stopAll = () => {
    for (const instance of instances) instance.stop();
  };
  const share = Math.max(1, Math.floor(job.connections / job.targets.length));

  const started = performance.now();
  const runs = job.targets.map(
    (url) =>
      new Promise<autocannon.Result>((resolve, reject) => {
        const instance = autocannon(
          {
            url,
            connections: share,
            pipelining: 1,
            duration: job.durationSeconds,
            timeout: 10,
            requests: [
              {
                method: job.method,
                headers: job.headers,
                setupRequest: (request, context: { index?: number }) => {
                  if (cursor >= job.requests.length) {
                    if (!job.cycle) {
                      // Everything was sent: end the phase; this last request repeats one already sent.
                      setImmediate(stopAll);
                      context.index = -1;
                      return { ...request, ...job.requests[job.requests.length - 1] };
                    }
                    cursor = 0;
                  }
                  const index = cursor++;
                  states[index] = SENT;
                  context.index = index;
                  return { ...request, ...job.requests[index] };
                },
                onResponse: (status, _body, context: { index?: number }) => {
                  const index = context.index ?? -1;
                  if (index >= 0 && !job.cycle) states[index] = status >= 200 && status < 300 ? ACKED : REFUSED;
                },
              },
            ],
          },
          (error, result) => (error ? reject(error) : resolve(result)),
        );
        instances.push(instance);
      }),
  );
  const results = await Promise.all(runs);
  const elapsedSeconds = (performance.now() - started) / 1000;

  // Latency percentiles: weighted by each instance's answered count (they are equal shares in practice).
  const answered = results.reduce((sum, r) => sum + r.requests.total, 0);
  const weighted = (pick: (r: autocannon.Result) => number) =>
    results.reduce((sum, r) => sum + pick(r) * r.requests.total, 0) / Math.max(1, answered);
  const output: LoadResult = {
    elapsedSeconds,
    cpuSeconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    answered,
    non2xx: results.reduce((sum, r) => sum + r.non2xx, 0),
    errors: results.reduce((sum, r) => sum + r.errors, 0),
    timeouts: results.reduce((sum, r) => sum + r.timeouts, 0),
    latencyMs: {
      p50: weighted((r) => r.latency.p50),
      p90: weighted((r) => r.latency.p90),
      p99: Math.max(...results.map((r) => r.latency.p99)),
      max: Math.max(...results.map((r) => r.latency.max)),
      mean: weighted((r) => r.latency.average),
    },
    states: Buffer.from(states).toString("base64"),
  };
  await writeFile(resultPath, JSON.stringify(output));
}

const [jobPath, resultPath] = process.argv.slice(2);
if (!jobPath || !resultPath) {
  console.error("usage: tsx bench/load.ts <job.json> <result.json>");
  process.exit(2);
}
await main(jobPath, resultPath);
