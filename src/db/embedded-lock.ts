import { open, readFile, rm } from "node:fs/promises";
import path from "node:path";

const LOCK_FILE = "whatsapp-otp-tracker.lock";

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * The embedded database is one Postgres inside one process: a second process opening the same folder (the
 * CLI next to a running service) would write the same files and corrupt them. A lock file with the owner's
 * pid refuses that with a clear message; a lock left by a process that died is taken over. Returns the
 * release function.
 */
export async function lockEmbeddedDataDir(dataDir: string): Promise<() => Promise<void>> {
  const file = path.join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number.parseInt(await readFile(file, "utf8").catch(() => ""), 10);
      if (Number.isInteger(owner) && owner > 0 && isRunning(owner)) {
        throw new Error(
          `the embedded database in ${dataDir} is in use by process ${owner} (a running service?): stop it first, or set DATABASE_URL to share a PostgreSQL server`,
        );
      }
      await rm(file, { force: true });
    }
  }
  throw new Error(`cannot lock the embedded database in ${dataDir}`);
}
