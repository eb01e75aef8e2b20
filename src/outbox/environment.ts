import type { LeaderElection, OnlineDetector } from "@tanstack/offline-transactions";
import { Listeners } from "../client/listeners.js";
import { OUTBOX_LEADER_LOCK, WebLocksLeadership, platformLocks, realmLocks, type LockManagerLike } from "./leadership.js";

/**
 * A leader election that always wins: for an outbox that is the only one
 * over its storage (a worker, a test). `@tanstack/offline-transactions`
 * otherwise falls back to a BroadcastChannel election under Node 20 (which
 * has `BroadcastChannel` but no `navigator.locks`); that election needs
 * `window` and only claims leadership after 10 s.
 *
 * @example
 * ```ts
 * defineCollections(client, defs, { leaderElection: alwaysLeader() });
 * ```
 */
export function alwaysLeader(): LeaderElection {
  return {
    requestLeadership: () => Promise.resolve(true),
    releaseLeadership: () => undefined,
    isLeader: () => true,
    onLeadershipChange: () => () => undefined,
  };
}

/** An {@link OnlineDetector} whose state the caller sets. */
export interface ManualOnlineDetector extends OnlineDetector {
  /** Sets the state; going online runs the queued writes at once (no backoff wait). */
  setOnline(online: boolean): void;
}

/**
 * An online detector you control. The outbox only starts running queued
 * writes while it reports online; Lunora then waits for the room's socket on
 * its own, so "online" here means "allowed to send", not "connected".
 *
 * @example
 * ```ts
 * const online = manualOnlineDetector(false);
 * const db = defineCollections(client, defs, { onlineDetector: online });
 * db.actions.items({ listId: "L", title: "queued" }); // stays in the outbox
 * online.setOnline(true);                              // sent now
 * ```
 */
export function manualOnlineDetector(initiallyOnline = true): ManualOnlineDetector {
  let online = initiallyOnline;
  const listeners = new Listeners<[]>();
  const notify = () => listeners.emit();
  return {
    subscribe: (callback) => listeners.add(callback),
    notifyOnline: notify,
    isOnline: () => online,
    dispose: () => listeners.clear(),
    setOnline(next) {
      const wasOnline = online;
      online = next;
      if (next && !wasOnline) notify();
    },
  };
}

let locksOfThisRealm: LockManagerLike | undefined;

/**
 * `navigator.locks` where the platform has Web Locks, else the locks of this
 * process (see `realmLocks`): the election and the presence of each outbox
 * (a "tab") use the same ones.
 */
export function outboxLocks(): LockManagerLike {
  return platformLocks() ?? (locksOfThisRealm ??= realmLocks());
}

/**
 * With Web Locks (browsers), an election in which followers wait for the
 * lock (see {@link WebLocksLeadership}). Elsewhere (Node, React Native) the
 * same election over locks of this process, one per storage (`scope`, see
 * `storageScope`): the first outbox over a storage leads, a second one over
 * it sends its own writes itself and takes over when the first is disposed.
 */
export function defaultLeaderElection(scope: string): LeaderElection {
  // Browsers: one lock for every tab of the origin (a scope is per realm, not per origin).
  return new WebLocksLeadership(outboxLocks(), platformLocks() ? OUTBOX_LEADER_LOCK : `${OUTBOX_LEADER_LOCK}:${scope}`);
}

/** The library's `window` events in browsers; elsewhere always online (Lunora waits for the socket itself). */
export function defaultOnlineDetector(): OnlineDetector | undefined {
  return typeof (globalThis as { window?: unknown }).window !== "undefined" ? undefined : manualOnlineDetector(true);
}

/**
 * `detector` as one executor sees it: its `dispose()` (which the executor
 * calls when it is disposed) drops only the subscriptions made through this
 * view. The app's detector may be shared — by outboxes of several clients,
 * or by the outbox a remount makes while the old one's executor still
 * starts (and is disposed again when that start ends) — and must go on
 * notifying the others.
 */
export function borrowedOnlineDetector(detector: OnlineDetector): OnlineDetector {
  const subscriptions = new Set<() => void>();
  return {
    subscribe(callback) {
      const unsubscribe = detector.subscribe(callback);
      subscriptions.add(unsubscribe);
      return () => {
        subscriptions.delete(unsubscribe);
        unsubscribe();
      };
    },
    notifyOnline: () => detector.notifyOnline(),
    isOnline: () => detector.isOnline(),
    dispose() {
      for (const unsubscribe of subscriptions) unsubscribe();
      subscriptions.clear();
    },
  };
}
