import { createServer } from "node:net";

/**
 * A free port for a process the test starts and must reach at a known address. Below the kernel's ephemeral range
 * (32768 and up): a port taken from the OS and released could be handed to another test's outgoing connection
 * before the process binds it (EADDRINUSE), and one in the ephemeral range could be reused between a stop and a
 * restart on the same port.
 */
export async function aFreePort(): Promise<number> {
  for (;;) {
    const candidate = 20_000 + Math.floor(Math.random() * 12_000);
    const probe = createServer();
    const free = await new Promise<boolean>((resolve) => {
      probe.once("error", () => resolve(false));
      probe.listen(candidate, () => resolve(true));
    });
    if (free) {
      await new Promise((resolve) => probe.close(resolve));
      return candidate;
    }
  }
}
