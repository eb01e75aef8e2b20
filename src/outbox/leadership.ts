import type { LeaderElection } from "@tanstack/offline-transactions";
import { Listeners } from "../client/listeners.js";

/** The Web Locks name the outbox leader holds; every tab of an origin competes for it. */
export const OUTBOX_LEADER_LOCK = "lunora-outbox-leader";

/**
 * The part of the Web Locks API the outbox uses (`navigator.locks`): the
 * election and tab presence. Every lock it takes is exclusive (the API's
 * default mode, so requests leave `mode` out).
 */
export interface LockManagerLike {
  request(name: string, options: { ifAvailable?: boolean; signal?: AbortSignal }, callback: (lock: unknown) => unknown): Promise<unknown>;
}

/**
 * A leader election over Web Locks in which a tab that is not the leader
 * WAITS for the lock, so it is promoted as soon as the leader's lock is
 * released — the leader tab closed, navigated away, crashed, or its
 * renderer was killed (the browser releases a dead document's locks).
 *
 * Why not the `WebLocksLeader` of `@tanstack/offline-transactions` 1.0.53:
 * it asks once with `ifAvailable: true` and never queues a waiting request,
 * so a tab that started as follower stays follower for its whole life, and
 * writes the old leader left in IndexedDB wait until some tab reloads.
 *
 * Protocol of the `LeaderElection` interface the executor drives:
 * `requestLeadership()` resolves `true` when this tab got the lock at once
 * (the executor then loads and runs the queue itself), else `false` — and a
 * waiting request stays queued; when it is granted, listeners registered
 * with `onLeadershipChange` hear `true` (the executor then loads and runs
 * what is in storage). `releaseLeadership()` gives the lock up (and cancels
 * a waiting request), so the next tab in line is promoted.
 */
export class WebLocksLeadership implements LeaderElection {
  readonly #locks: LockManagerLike;
  readonly #name: string;
  readonly #listeners = new Listeners<[isLeader: boolean]>();
  #leader = false;
  /** Resolving it ends the lock callback, which releases the lock. */
  #release: (() => void) | undefined;
  #waiting: AbortController | undefined;
  #released = false;

  constructor(locks: LockManagerLike, name: string = OUTBOX_LEADER_LOCK) {
    this.#locks = locks;
    this.#name = name;
  }

  /**
   * Asked once per election: each outbox makes its own, and its executor
   * asks when it starts (after `releaseLeadership()` the election is over).
   */
  requestLeadership(): Promise<boolean> {
    return new Promise<boolean>((decided) => {
      // First ask without waiting, only to answer "leader now or not" at once;
      // the lock stays held by the callback's pending promise.
      this.#locks
        .request(this.#name, { ifAvailable: true }, (lock) => {
          if (lock === null || this.#released) {
            decided(false);
            if (!this.#released) this.#wait();
            return undefined;
          }
          decided(true);
          this.#leader = true; // the executor learns it from the answer
          return this.#hold();
        })
        .catch((error: unknown) => {
          console.warn("[lunora] Web Locks leadership request failed:", error);
          decided(false);
        });
    });
  }

  releaseLeadership(): void {
    this.#released = true;
    this.#waiting?.abort();
    this.#release?.();
  }

  isLeader(): boolean {
    return this.#leader;
  }

  onLeadershipChange(callback: (isLeader: boolean) => void): () => void {
    return this.#listeners.add(callback);
  }

  /** Queues a request that is granted when every earlier holder and waiter is gone. */
  #wait(): void {
    const waiting = (this.#waiting = new AbortController());
    this.#locks
      .request(this.#name, { signal: waiting.signal }, () => {
        this.#waiting = undefined;
        if (this.#released) return undefined;
        const held = this.#hold();
        this.#setLeader(true); // a promotion: the executor hears it from the listeners
        return held;
      })
      .catch((error: unknown) => {
        this.#waiting = undefined;
        // AbortError: releaseLeadership() cancelled the wait.
        if ((error as { name?: unknown } | null)?.name !== "AbortError") console.warn("[lunora] Web Locks leadership wait failed:", error);
      });
  }

  /** Holds the lock until {@link releaseLeadership}. */
  #hold(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#release = () => {
        this.#release = undefined;
        this.#setLeader(false);
        resolve();
      };
    });
  }

  #setLeader(isLeader: boolean): void {
    if (isLeader === this.#leader) return;
    this.#leader = isLeader;
    this.#listeners.emit(isLeader);
  }
}

/**
 * Exclusive locks for one JavaScript realm, with the Web Locks semantics the
 * election relies on: a request is granted when every earlier holder and
 * waiter is gone, is held until its callback's promise settles, answers
 * `null` at once with `ifAvailable` when held, and leaves the queue with an
 * `AbortError` when its signal aborts. Where there is no `navigator.locks`
 * (Node, React Native) it keeps two outboxes of one process over the same
 * storage from both leading: both would hand out the same `clientSeq`s of
 * the stored writer, and the room would answer the second write with the
 * first one's stored outcome — the second write lost, silently.
 */
export function realmLocks(): LockManagerLike {
  // Per name, the holder (first) and the waiters, in request order.
  const queues = new Map<string, Array<() => void>>();
  return {
    request(name, { ifAvailable, signal }, callback) {
      if (signal?.aborted) return Promise.reject(new DOMException("the lock request was aborted", "AbortError"));
      let queue = queues.get(name);
      if (queue && ifAvailable) return Promise.resolve().then(() => callback(null));
      if (!queue) queues.set(name, (queue = []));
      const waiters = queue;
      return new Promise((resolve, reject) => {
        const grant = () => {
          signal?.removeEventListener("abort", abort);
          const held = Promise.resolve().then(() => callback({ name }));
          held.then(resolve, reject);
          const release = () => {
            waiters.shift();
            if (waiters.length > 0) waiters[0]();
            else queues.delete(name);
          };
          held.then(release, release);
        };
        // Only a waiting request leaves the queue; a granted one is held until its callback settles.
        const abort = () => {
          const index = waiters.indexOf(grant);
          if (index < 1) return;
          waiters.splice(index, 1);
          reject(new DOMException("the lock request was aborted", "AbortError"));
        };
        signal?.addEventListener("abort", abort, { once: true });
        waiters.push(grant);
        if (waiters.length === 1) grant();
      });
    },
  };
}

/** `navigator.locks` when the platform has Web Locks. */
export function platformLocks(): LockManagerLike | undefined {
  return (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
}
