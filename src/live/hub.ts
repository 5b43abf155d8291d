import { StorageUnavailableError, withStorage } from "../db/errors.ts";
import { AppError, notFound, shuttingDown } from "../http/problem.ts";
import type { MessageView } from "../messages/schemas.ts";
import type { MessageNotifier } from "./notifier.ts";

export interface LiveLimits {
  /** Open streams + long-polls in this process (LIVE_MAX_WATCHERS). */
  maxWatchers: number;
  /** Of those, per API key (LIVE_MAX_WATCHERS_PER_KEY); without API keys every caller is one key. */
  maxWatchersPerKey: number;
}

export interface LiveHubOptions {
  notifier: MessageNotifier;
  /** Reads one message for the watchers (on its own small pool, never the write path's). */
  /** Reads a message of one team (another team's message reads as absent); null: whichever team's. */
  read: (uuid: string, team: string | null) => Promise<MessageView | undefined>;
  limits: LiveLimits;
  /**
   * Reads run at most this many at a time (the read pool's size): a burst of re-reads waits its turn here rather
   * than in the pool's queue, whose connection timeout would fail it.
   */
  readConcurrency?: number;
  /**
   * The longest a read waits for its turn (default 10 s, the database's query timeout): past it the watcher gets
   * a 503 instead of queueing behind reads that are stuck on the database.
   */
  readWaitMs?: number;
  /** Safety net against a lost announcement: every watched message is re-read this often (0: never). */
  rereadMs?: number;
  /** Runs at the end of `close()` (the read pool). */
  onClose?: () => Promise<void>;
}

export interface WatchHandlers {
  /** The message after a change (or a re-read that may show none: callers drop what they already sent). */
  onMessage(message: MessageView): void;
  /** The process is stopping. */
  onClosing(): void;
}

export interface Watch {
  /** The message when the watch began. */
  first: MessageView;
  /** Delivers changes from now on; one that arrived while `first` was handled is delivered at once. */
  resume(): void;
  /** Reads the message now (shared with the other watchers of it). */
  current(): Promise<MessageView | undefined>;
  stop(): void;
}

export interface LiveHub {
  /**
   * Watches `uuid` for the caller `key`. Throws 429 `too_many_watchers` over a cap, 503 `shutting_down` once the
   * process is stopping, 404 for an unknown uuid, 503 `storage_unavailable` when it cannot be read.
   */
  watch(uuid: string, team: string | null, key: string, handlers: WatchHandlers): Promise<Watch>;
  /** Announces committed changes (to this process's watchers at once, and to every other instance). */
  published(uuids: Iterable<string>): void;
  watcherCount(uuid?: string): number;
  /** Ends every watch ("closing"), refuses new ones, then closes the notifier and the read pool. */
  close(): Promise<void>;
}

interface Entry extends WatchHandlers {
  started: boolean;
  /** The latest message that arrived before `resume`. */
  held?: MessageView;
}

/**
 * All watchers of one uuid in one team: one subscription and at most one read in flight, whatever their number.
 * (A message belongs to one team: watchers of any other team were refused at their first read.)
 */
interface Group {
  uuid: string;
  team: string | null;
  entries: Set<Entry>;
  reading?: Promise<MessageView | undefined>;
  /** A change was signalled during the read in flight: read once more after it. */
  again: boolean;
  unsubscribe(): void;
}

const retryLater = (seconds: number) => ({ "Retry-After": String(seconds) });

const tooManyWatchers = (detail: string) =>
  new AppError({ code: "too_many_watchers", detail, headers: retryLater(10) });

const stopping = () => shuttingDown("This instance is stopping; reconnect (another instance will answer).");

/**
 * Holds every open stream and long-poll of the process. Watchers of one uuid share one notifier subscription
 * and one read per change: a change of a message watched 2,000 times costs one database read, not 2,000.
 * Caps the number of watchers (each costs memory: a socket, its request and response) so a client cannot
 * exhaust the heap.
 */
export function createLiveHub(options: LiveHubOptions): LiveHub {
  const { notifier, read, limits } = options;
  const groups = new Map<string, Group>();
  const perKey = new Map<string, number>();
  let total = 0;
  let closing = false;

  const broadcast = (group: Group, message: MessageView) => {
    for (const entry of group.entries) {
      if (entry.started) entry.onMessage(message);
      else entry.held = message;
    }
  };

  const readConcurrency = options.readConcurrency ?? 2;
  const readWaitMs = options.readWaitMs ?? 10_000;
  let activeReads = 0;
  const queued: Array<() => void> = [];
  /** Waits for a read slot, handed over by the read that ends (not re-counted), at most `readWaitMs`. */
  function waitForTurn(): Promise<void> {
    return new Promise((resolve, reject) => {
      const turn = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        queued.splice(queued.indexOf(turn), 1);
        reject(new StorageUnavailableError({ reason: "live reads waited past their deadline" }));
      }, readWaitMs);
      queued.push(turn);
    });
  }
  async function readInTurn(uuid: string, team: string | null): Promise<MessageView | undefined> {
    if (activeReads < readConcurrency) activeReads++;
    else await waitForTurn();
    try {
      return await read(uuid, team);
    } finally {
      const next = queued.shift();
      if (next) next();
      else activeReads--;
    }
  }

  function readGroup(group: Group): Promise<MessageView | undefined> {
    const reading = readInTurn(group.uuid, group.team).then(
      (message) => {
        group.reading = undefined;
        if (message) broadcast(group, message);
        readAgainIfAsked(group);
        return message;
      },
      (error: unknown) => {
        group.reading = undefined;
        readAgainIfAsked(group);
        throw error;
      },
    );
    group.reading = reading;
    return reading;
  }

  function readAgainIfAsked(group: Group) {
    if (!group.again || group.entries.size === 0) return;
    group.again = false;
    changed(group);
  }

  /** A signal: read now, or once more after the read in flight (which may predate the change). */
  function changed(group: Group) {
    if (group.reading) {
      group.again = true;
      return;
    }
    // A failed re-read is not retried here: the next signal or the safety re-read reads again.
    readGroup(group).catch(() => {});
  }

  const groupKey = (uuid: string, team: string | null) => `${team ?? "*"}\n${uuid}`;
  function groupOf(uuid: string, team: string | null): Group {
    const existing = groups.get(groupKey(uuid, team));
    if (existing) return existing;
    const group: Group = { uuid, team, entries: new Set(), again: false, unsubscribe: () => {} };
    // The hub ends its watchers itself on close; the notifier's "closing" needs no answer here.
    group.unsubscribe = notifier.subscribe(uuid, (signal) => {
      if (signal === "changed") changed(group);
    });
    groups.set(groupKey(uuid, team), group);
    return group;
  }

  function reserve(key: string) {
    if (closing) throw stopping();
    if (total >= limits.maxWatchers) {
      throw tooManyWatchers(`This instance already serves ${limits.maxWatchers} streams and long-polls.`);
    }
    const mine = perKey.get(key) ?? 0;
    if (mine >= limits.maxWatchersPerKey) {
      throw tooManyWatchers(`This API key already has ${limits.maxWatchersPerKey} open streams and long-polls.`);
    }
    total++;
    perKey.set(key, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      total--;
      const left = (perKey.get(key) ?? 1) - 1;
      if (left > 0) perKey.set(key, left);
      else perKey.delete(key);
    };
  }

  const rereadMs = options.rereadMs ?? 30_000;
  const safetyNet =
    rereadMs > 0
      ? setInterval(() => {
          for (const group of groups.values()) changed(group);
        }, rereadMs)
      : undefined;
  safetyNet?.unref();

  return {
    async watch(uuid, team, key, handlers) {
      const release = reserve(key);
      const group = groupOf(uuid, team);
      const entry: Entry = { ...handlers, started: false };
      // Joined before the first read: a change committed after that read began signals one more read.
      group.entries.add(entry);
      const stop = () => {
        release();
        group.entries.delete(entry);
        if (group.entries.size === 0 && groups.get(groupKey(uuid, team)) === group) {
          group.unsubscribe();
          groups.delete(groupKey(uuid, team));
        }
      };
      try {
        // Joins the read in flight, if any: it began after the group subscribed, so it misses no change.
        const first = await withStorage(() => group.reading ?? readGroup(group));
        if (!first) throw notFound(`No message with uuid ${uuid}.`, "message_not_found");
        const resume = () => {
          if (entry.started) return;
          entry.started = true;
          if (closing) return entry.onClosing();
          if (entry.held) entry.onMessage(entry.held);
          entry.held = undefined;
        };
        const current = () => group.reading ?? readGroup(group);
        return { first, resume, current, stop };
      } catch (error) {
        stop();
        throw error;
      }
    },
    published(uuids) {
      notifier.published(uuids);
    },
    watcherCount(uuid) {
      if (uuid === undefined) return total;
      let count = 0;
      for (const group of groups.values()) if (group.uuid === uuid) count += group.entries.size;
      return count;
    },
    async close() {
      if (closing) return;
      closing = true;
      if (safetyNet) clearInterval(safetyNet);
      for (const group of groups.values()) {
        for (const entry of group.entries) if (entry.started) entry.onClosing();
      }
      await notifier.close();
      await options.onClose?.();
    },
  };
}
