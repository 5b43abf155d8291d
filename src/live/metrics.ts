import { Gauge, type Registry } from "prom-client";
import type { LiveHub } from "./hub.ts";

/** `otp_live_watchers`: open streams and waiting long-polls, to compare with LIVE_MAX_WATCHERS. */
export function registerLiveMetrics(registry: Registry, hub: LiveHub): void {
  new Gauge({
    name: "otp_live_watchers",
    help: "Open live status streams and waiting long-polls in this process.",
    registers: [registry],
    collect() {
      this.set(hub.watcherCount());
    },
  });
}
