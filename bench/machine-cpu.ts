import { readdir, readFile } from "node:fs/promises";

// USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK).
const CLOCK_TICKS = 100;

/** The whole machine's busy CPU time so far (every core: all but idle and iowait), in seconds. */
async function machineBusySeconds(): Promise<number> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0] ?? "";
  // cpu user nice system idle iowait irq softirq steal ...
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / CLOCK_TICKS;
}

/**
 * CPU time (user + system) of every `postgres` process alive now, in seconds. Backends that exit in between are
 * missed, so phases keep their connections open (the service's pool, pgbench's clients).
 */
async function postgresSeconds(): Promise<number> {
  let total = 0;
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    if (!stat.includes("(postgres)")) continue;
    const fields = stat.replace(/^.*\) /, "").split(" ");
    total += (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  }
  return total;
}

export interface MachineCost {
  /** Whole machine (service, Postgres, load generator, everything else), ms of CPU per request. */
  machineMsPerRequest: number;
  /** Postgres processes alone, ms of CPU per request. */
  postgresMsPerRequest: number;
}

/** Runs `work` and divides the machine's and Postgres's CPU time over it by the requests it reports. */
export async function measureCost<T>(
  work: () => Promise<T>,
  requests: (result: T) => number,
): Promise<[T, MachineCost]> {
  const [machineBefore, postgresBefore] = await Promise.all([machineBusySeconds(), postgresSeconds()]);
  const result = await work();
  const [machineAfter, postgresAfter] = await Promise.all([machineBusySeconds(), postgresSeconds()]);
  const count = Math.max(1, requests(result));
  return [
    result,
    {
      machineMsPerRequest: ((machineAfter - machineBefore) * 1000) / count,
      postgresMsPerRequest: ((postgresAfter - postgresBefore) * 1000) / count,
    },
  ];
}
