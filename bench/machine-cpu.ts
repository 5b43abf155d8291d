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

let benchDatabase: string | undefined;

/** Counts only the backends of `database` (and the server's own processes: WAL writer, checkpointer...). */
export function countPostgresOf(database: string): void {
  benchDatabase = database;
}

/**
 * CPU seconds (user + system) of each counted `postgres` process alive now, by pid and start time. A backend's
 * title is `postgres: <cluster>: <user> <database> <client> <state>`; backends of other databases (another
 * program's, a test run's) are left out, so they neither add to the phase nor, when they exit, subtract from it.
 */
async function postgresProcesses(): Promise<Map<string, number>> {
  const seconds = new Map<string, number>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    if (!stat.includes("(postgres)")) continue;
    const title = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    const backendOf = /^postgres: (?:\S+: )?\S+ (\S+) \S+\(\d+\)/.exec(title)?.[1];
    if (benchDatabase && backendOf && backendOf !== benchDatabase) continue;
    const fields = stat.replace(/^.*\) /, "").split(" ");
    seconds.set(`${entry}@${fields[19]}`, (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS);
  }
  return seconds;
}

/**
 * Postgres CPU seconds spent while `work` runs: every counted process is read every 250 ms, so a backend that
 * lives only during the phase (pgbench's clients) is counted up to its last reading, and one that exits never
 * makes the sum go down.
 */
async function postgresSecondsDuring<T>(work: () => Promise<T>): Promise<[T, number]> {
  const first = await postgresProcesses();
  const last = new Map(first);
  const read = async () => {
    for (const [process, seconds] of await postgresProcesses()) last.set(process, seconds);
  };
  let reading = Promise.resolve();
  const poll = setInterval(() => {
    reading = reading.then(read);
  }, 250);
  try {
    const result = await work();
    clearInterval(poll);
    await reading.then(read);
    let total = 0;
    for (const [process, seconds] of last) total += seconds - (first.get(process) ?? 0);
    return [result, total];
  } finally {
    clearInterval(poll);
  }
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
  const machineBefore = await machineBusySeconds();
  const [result, postgres] = await postgresSecondsDuring(work);
  const machineAfter = await machineBusySeconds();
  const count = Math.max(1, requests(result));
  return [
    result,
    {
      machineMsPerRequest: ((machineAfter - machineBefore) * 1000) / count,
      postgresMsPerRequest: (postgres * 1000) / count,
    },
  ];
}
