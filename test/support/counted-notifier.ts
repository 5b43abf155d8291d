import type { MessageNotifier } from "../../src/live/notifier.ts";

export type CountedNotifier = MessageNotifier & {
  /** Open subscriptions to `uuid` through this notifier: a test waits on it to know a watcher is listening. */
  subscriptions(uuid: string): number;
};

/** Wraps a real notifier and counts its open subscriptions per uuid (what the service itself never needs). */
export function countSubscriptions(notifier: MessageNotifier): CountedNotifier {
  const open = new Map<string, number>();
  const add = (uuid: string, by: number) => open.set(uuid, (open.get(uuid) ?? 0) + by);
  return {
    mode: notifier.mode,
    published: (uuids) => notifier.published(uuids),
    close: () => notifier.close(),
    subscribe(uuid, listener) {
      const unsubscribe = notifier.subscribe(uuid, listener);
      add(uuid, 1);
      let done = false;
      return () => {
        if (!done) add(uuid, -1);
        done = true;
        unsubscribe();
      };
    },
    subscriptions: (uuid) => open.get(uuid) ?? 0,
  };
}
