import { createTransaction, type Collection, type Transaction } from "@tanstack/db";
import type {
  LeaderElection,
  OfflineExecutor,
  OfflineTransaction,
  OnlineDetector,
  OutboxManager,
  StorageAdapter,
} from "@tanstack/offline-transactions";
import type { LunoraClient } from "../client/lunora-client.js";
import { assertRoomName } from "../client/room-name.js";
import { LunoraError, type ErrorBody } from "../protocol/index.js";
import { borrowedOnlineDetector, defaultLeaderElection, defaultOnlineDetector, outboxLocks } from "./environment.js";
import { QUEUED_RECORD_PREFIX, StoredWrites } from "./stored-writes.js";
import { TabWrites } from "./tab-writes.js";
import { storeOfflineRecord } from "./offline-queue.js";
import { createIndexedDbPersistence, storageScope, type OutboxPersistence } from "./persistence.js";
import { OutboxReports, type OutboxCallbacks, type StorageFailureEvent, type WriteRejectedEvent } from "./reporting.js";
import { RoomSender, wake, type Outcome, type PendingWrite, type RoomState } from "./room-sending.js";
import { WriterStore, ephemeralWriter, identityChanged, raiseCounter, type Writer } from "./writer.js";
import {
  transientWriteError,
  WRITE_METADATA_KEY,
  WRITE_MUTATION_FN,
  assertWriteFits,
  compareRecords,
  isAssigned,
  isSendable,
  monotonicClock,
  writeMetadataOf,
  type AssignedWriteMetadata,
  type WriteMetadata,
} from "./write.js";

export type { StorageFailureEvent, WriteRejectedEvent };

/** Options of the durable outbox (`defineCollections` and `bindMutators` take them). */
export interface OutboxOptions extends OutboxCallbacks {
  /** Storage of the outbox; defaults to the client's `persistence`, else `createIndexedDbPersistence()`. */
  persistence?: OutboxPersistence;
  /**
   * Pipelined replay (default `true`): when the queue reaches a room's first
   * pending write, every pending write of that room goes out in one `push`
   * (in `clientSeq` order) and the later entries settle from their own
   * answers, so draining N writes costs about one round trip. `false` sends
   * one write per round trip (what `@tanstack/offline-transactions` does on
   * its own); kept for comparison in benchmarks.
   */
  pipeline?: boolean;
  /**
   * Multi-tab election; defaults to Web Locks in browsers and, elsewhere, to
   * the same election among the outboxes of this process over the same
   * storage (see `defaultLeaderElection`).
   */
  leaderElection?: LeaderElection;
  /**
   * Gate for running queued writes; defaults to browser events in browsers,
   * always online elsewhere. A detector you pass stays yours: disposing the
   * outbox drops only its own subscriptions (outboxes may share one).
   */
  onlineDetector?: OnlineDetector;
  /**
   * Transient failures (`INTERNAL`, `QUOTA_EXCEEDED` from the room) after
   * which a write is parked: see {@link LunoraOutbox} for what that means.
   * Default 5.
   */
  maxTransientFailures?: number;
  /**
   * Writes the outbox holds (queued and not yet settled). Past it, a new write
   * throws `QUOTA_EXCEEDED` at once, before anything is applied, instead of
   * growing the queue without bound. Default 10,000.
   */
  maxPendingWrites?: number;
}

/** One write as a queue request (`actions.<table>` and bound mutators build these). */
export interface WriteRequest {
  kind: "insert" | "mutator";
  name: string;
  args: unknown;
  room: string;
  party?: string;
  collection?: string;
  row?: Record<string, unknown>;
  /** The optimistic body; runs inside the write's TanStack DB transaction. */
  apply: () => void;
}

const DIRECT_RETRY_MIN_MS = 1_000;
const DIRECT_RETRY_MAX_MS = 30_000;
const IDENTITY_RETRY_MAX_MS = 10_000;
/** How long an identity switch waits for the old identity's writes to roll back. */
const ROLLBACK_WAIT_MS = 2_000;
/** How long the report and rollback of a rejected or dropped write wait for its record's delete (under ROLLBACK_WAIT_MS). */
const RECORD_DELETE_WAIT_MS = 1_000;
/** Default bound of {@link OutboxOptions.maxPendingWrites}. */
export const DEFAULT_MAX_PENDING_WRITES = 10_000;

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);
const noop = () => undefined;

type OfflineTransactionsModule = typeof import("@tanstack/offline-transactions");
/** Set once the first outbox started; its executor only calls back after that. */
let offlineTransactions: OfflineTransactionsModule | undefined;

/**
 * The optional peer is imported when an outbox starts, not when this module
 * loads: `@lunora/db` re-exports the outbox, and a read-only app that never
 * writes must load without the peer installed (a static import would fail
 * the whole entry with ERR_MODULE_NOT_FOUND).
 */
async function loadOfflineTransactions(): Promise<OfflineTransactionsModule> {
  return (offlineTransactions ??= await import("@tanstack/offline-transactions"));
}

/**
 * The durable write outbox of one {@link LunoraClient}, built on
 * `@tanstack/offline-transactions`: every write (an insert action or a
 * custom mutator) is an optimistic TanStack DB transaction whose server
 * write is persisted (IndexedDB by default) with its `clientId` and
 * `clientSeq`, sent on the room's socket, retried on transient failure and
 * replayed after a reload — exactly once, because the room keeps a
 * watermark per (identity, clientId).
 *
 * **Settling without flicker.** A write's transaction stays `persisting`
 * until the poke carrying its outcome has been handed to the collection's
 * `commit()`; TanStack DB holds that sync commit while the transaction
 * persists and applies it in the same step that drops the optimistic row.
 *
 * **Who sends what.** A write made in this session is stored (the leader's
 * `tx:` record through the library's `OutboxManager`, or a follower's
 * tab-write record) and sent by this outbox at once, per room, in
 * `clientSeq` order. The library's queue only replays the records found when
 * this tab becomes leader (at start, or when the previous leader went away),
 * one at a time, with its own backoff.
 *
 * **When a write keeps failing transiently.** TanStack DB holds sync
 * commits to every collection touched by a write that is still persisting.
 * So while a write fails with `INTERNAL` / `QUOTA_EXCEEDED` (retried with
 * backoff: 1 s, 2 s, 4 s … capped at 30 s; replayed records: the library's,
 * capped at 60 s) the collections it touches show no new server rows. This
 * is bounded: after `maxTransientFailures` (default 5) the write is *parked*
 * — its optimistic rows move to a plain pending overlay (the same form a
 * write restored after a reload takes) and its own transaction resolves, so
 * the collections it touches receive pokes again; the write itself stays
 * stored and keeps being retried, and its later outcome settles or rolls
 * back that overlay (a permanent rejection is still reported through
 * `onWriteRejected`). Later writes of the same writer and room wait for it:
 * the room applies a writer's writes in `clientSeq` order. A room that stays
 * unreachable is not a failure: a write waits for the socket without
 * consuming retries.
 *
 * One outbox per client (`outboxFor`); `defineCollections` and
 * `bindMutators` share it.
 */
export class LunoraOutbox {
  readonly client: LunoraClient<any>;
  readonly pipeline: boolean;
  readonly persistence: OutboxPersistence;
  readonly #storage: StorageAdapter;
  readonly #leaderElection: LeaderElection;
  readonly #onlineDetector: OnlineDetector | undefined;
  readonly #maxTransientFailures: number;
  readonly #maxPendingWrites: number;
  readonly #collections: Record<string, Collection<any, any, any, any, any>> = {};
  readonly #collectionNames = new Map<Collection<any, any, any, any, any>, string>();
  readonly #sender: RoomSender;
  readonly #writers: WriterStore;
  readonly #writes = new Map<string, PendingWrite>();
  readonly #unassigned: PendingWrite[] = [];
  readonly #reports = new OutboxReports();
  readonly #unsubscribe: Array<() => void> = [];
  readonly #clock = monotonicClock();
  /** What is undelivered in storage, across tabs: `pendingCount` is counted from it. */
  readonly #stored: StoredWrites;
  /** Writes tabs send themselves (browsers, with Web Locks): storing this tab's, adopting those of tabs that are gone. */
  readonly #tabWrites: TabWrites | undefined;
  #identity: string | undefined;
  /**
   * The client's `identityGeneration` when `#identity` was read. A write made
   * at a later generation (the client noticed a switch, e.g. on a reconnect,
   * and this outbox is still reading the new identity) waits for that read
   * before it takes a writer, or it would be stamped with the old identity.
   */
  #identityGenerationRead = -1;
  #durable: Writer | undefined;
  #ephemeral: Writer | undefined;
  #executor: OfflineExecutor | undefined;
  /** Adds records to the executor's storage (the library's public `OutboxManager`). */
  #records: OutboxManager | undefined;
  #ready: Promise<void>;
  #identityCheck: Promise<void> | undefined;
  #disposed = false;

  constructor(client: LunoraClient<any>, options: OutboxOptions = {}) {
    const outbox = this;
    this.client = client;
    this.pipeline = options.pipeline ?? true;
    this.persistence = options.persistence ?? client.persistence ?? createIndexedDbPersistence();
    this.#storage = this.#reports.guardStorage(this.persistence.storage, () => this.#stored.refresh());
    this.#writers = new WriterStore(this.#storage);
    this.#sender = new RoomSender(client, this.pipeline, {
      prepare: (room) => this.#prepareSend(room),
      get disposed() {
        return outbox.#disposed;
      },
    });
    this.#stored = new StoredWrites(this.#storage, () => {
      this.#reportPending();
      this.#tabWrites?.adoptOrphans();
    });
    // Web Locks, or where there are none the locks of this process: a second
    // outbox over one storage in Node stores its writes as a tab does.
    this.#tabWrites = new TabWrites(outboxLocks(), this.#storage, {
      canAdopt: () => this.isLeader && !this.#disposed,
      ready: () => this.#ready,
      knows: (id) => this.#writes.has(id),
      storedKeys: () => this.#stored.tabWriteKeys(),
      adopt: (id, record, key) => {
        // Another identity's write is never sent: its record goes, then it is reported (see #forgetRecord).
        if (record.meta.identity !== this.#identity) return this.#forgetOtherIdentity(key, record.meta);
        void this.#runDirect(this.#register(id, record.meta, { assigned: true, createdAt: new Date(record.createdAt), tabRecord: key })).catch(noop);
        return undefined;
      },
      discardUnreadable: (key) => this.#forgetUnreadable(key),
    });
    this.#leaderElection = options.leaderElection ?? defaultLeaderElection(storageScope(this.persistence.storage));
    this.#onlineDetector = options.onlineDetector ?? defaultOnlineDetector();
    this.#maxTransientFailures = options.maxTransientFailures ?? 5;
    this.#maxPendingWrites = options.maxPendingWrites ?? DEFAULT_MAX_PENDING_WRITES;
    this.addListeners(options);
    this.#unsubscribe.push(
      client.onMutationResults((room, results, party) => this.#sender.onResults(party, room, results)),
      client.onRoomStatusChange((room, status, party) => this.#sender.onRoomStatus(party, room, status)),
      // Roll back and report the old identity's writes as soon as the switch is noticed.
      client.onIdentityChange(() => this.#checkIdentity(/* fresh */ true)),
    );
    const unwatch = this.persistence.onChange?.(() => this.#stored.refresh());
    if (unwatch) this.#unsubscribe.push(unwatch);
    // Started after the current task so collections registered in the same
    // task (defineCollections, then bindMutators) are in the executor's registry.
    this.#ready = Promise.resolve().then(() => this.#init());
  }

  /** The `@tanstack/offline-transactions` executor, once started. */
  get offlineExecutor(): OfflineExecutor | undefined {
    return this.#executor;
  }

  /** Whether this instance drains the durable queue (the leader tab). */
  get isLeader(): boolean {
    return this.#executor?.isOfflineEnabled ?? false;
  }

  /**
   * Writes of this identity not delivered yet: those this tab holds, and
   * those in storage — queued by any tab of the origin (the leader's queue
   * and other tabs' own writes). Also `client.pendingWrites`.
   */
  get pendingCount(): number {
    const ids = this.#stored.idsOf(this.#identity);
    for (const write of this.#writes.values()) if (!write.dropped) ids.add(write.id);
    return ids.size;
  }

  /** The stable clientId of the current identity in this storage (after {@link waitForInit}). */
  get clientId(): string | undefined {
    return this.#durable?.clientId ?? this.#ephemeral?.clientId;
  }

  /** Resolves once the identity is known, the writer is loaded and queued writes were restored. */
  waitForInit(): Promise<void> {
    return this.#ready;
  }

  /** Adds the callbacks of another `defineCollections` / `bindMutators` call. */
  addListeners(options: OutboxCallbacks): void {
    this.#reports.add(options);
  }

  /**
   * Names collections for the durable queue (records name the collection,
   * so a reload maps them back). Names must be the same in every session.
   * Throws `INVALID_ARGS` for a new name once the queue has started.
   */
  registerCollections(collections: Record<string, Collection<any, any, any, any, any>>): void {
    for (const [name, collection] of Object.entries(collections)) {
      if (this.#collections[name] === collection) continue;
      if (this.#executor) {
        throw new LunoraError("INVALID_ARGS", `collection "${name}" registered after the outbox started: call defineCollections and bindMutators in one task`);
      }
      this.#collections[name] = collection;
      if (!this.#collectionNames.has(collection)) this.#collectionNames.set(collection, name);
    }
  }

  /**
   * Queues a write: runs `apply` in a new TanStack DB transaction (the
   * optimistic rows appear at once) and commits it through the outbox.
   * Returns the transaction; `isPersisted.promise` resolves once the room
   * applied it and rejects with a `LunoraError` on a permanent rejection.
   */
  enqueue(request: WriteRequest): Transaction<any> {
    if (this.#disposed) throw new LunoraError("INVALID_ARGS", "the outbox was disposed");
    const party = request.party ?? this.client.party;
    assertRoomName("room", request.room);
    assertRoomName("party", party);
    assertWriteFits(request.name, request.args);
    if (this.#writes.size >= this.#maxPendingWrites) {
      throw new LunoraError("QUOTA_EXCEEDED", `the outbox already holds ${this.#writes.size} unsettled writes`, { maxPendingWrites: this.#maxPendingWrites });
    }
    // (An absent collection or row is `undefined` here and left out of the stored JSON.)
    const { kind, name, args, room, collection, row } = request;
    const meta: WriteMetadata = { v: 1, kind, name, args, party, room, collection, row };
    let write!: PendingWrite;
    const transaction = createTransaction({
      autoCommit: false,
      mutationFn: async ({ transaction: tx }) => this.#commitWrite(tx as unknown as Transaction<any>, write),
      metadata: { [WRITE_METADATA_KEY]: meta },
    });
    write = this.#register(transaction.id, meta);
    write.transaction = transaction as unknown as Transaction<any>;
    try {
      transaction.mutate(request.apply);
      for (const mutation of transaction.mutations) {
        if (!this.#collectionNames.has(mutation.collection)) {
          throw new LunoraError("INVALID_ARGS", `a write touched unregistered collection "${mutation.collection.id}" (pass it in \`collections\`)`);
        }
      }
    } catch (error) {
      if (transaction.state === "pending") transaction.rollback();
      this.#unregister(write);
      throw error;
    }
    const first = transaction.mutations[0];
    if (meta.collection === undefined && first) meta.collection = this.#collectionNames.get(first.collection);
    if (meta.row === undefined && first?.modified && typeof first.modified === "object") meta.row = { ...(first.modified as object) };
    this.#unassigned.push(write);
    if (transaction.mutations.length === 0) this.#commitWithoutRows(transaction, write);
    else transaction.commit().catch(noop); // the outcome is on isPersisted; see onWriteRejected
    return transaction;
  }

  /** Stops sending and drains nothing more. Queued writes stay in storage for the next session. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    // Released here too, not only by the executor: its dispose releases only
    // an election it has already started, and it starts it a few microtasks
    // after it was made (storage probe first). Disposed inside that window,
    // it would take the lock afterwards and hold it for the page's life —
    // no other tab could lead. (WebLocksLeadership released before it is
    // asked never takes the lock; #init disposes the executor again.)
    this.#leaderElection.releaseLeadership();
    this.#executor?.dispose();
    this.#tabWrites?.dispose();
    this.#stored.dispose();
    this.#writers.dispose();
    this.#sender.dispose();
  }

  // ---- start-up ------------------------------------------------------------

  async #init(): Promise<void> {
    // The peer first: once the identity is known the executor must exist
    // without another await in between, or a switch landing in that gap
    // would drop writes whose rows no executor can roll back.
    let peer: OfflineTransactionsModule;
    try {
      peer = await loadOfflineTransactions();
    } catch (error) {
      this.#reports.storageFailure(
        new LunoraError("STORAGE_FAILURE", `writes need the peer @tanstack/offline-transactions installed: ${String(error)}`),
      );
      throw error;
    }
    if (this.#disposed) return;
    // A switch while the identity or its writer is being read (the
    // identity check skips an outbox that has not started) makes what was
    // read stale: read again, so no write is stamped with the old identity.
    for (let generation = -1; generation !== this.client.identityGeneration; ) {
      generation = this.client.identityGeneration;
      const identity = await this.#readIdentityPatiently();
      if (this.#disposed) return;
      this.#identity = identity;
      this.#ephemeral = ephemeralWriter(identity);
      this.#durable = await this.#writers.load(identity);
      if (this.#disposed) return;
    }
    this.#identityGenerationRead = this.client.identityGeneration;
    this.#executor = new peer.OfflineExecutor({
      collections: this.#collections,
      mutationFns: { [WRITE_MUTATION_FN]: (params) => this.#executeWrite(params) },
      storage: this.#storage,
      // The library falls back to its own detector for `undefined` (browsers).
      // A given one is lent, not handed over: the executor disposes its
      // detector, and #init may dispose it after a remount shares this one.
      leaderElection: this.#leaderElection,
      onlineDetector: this.#onlineDetector && borrowedOnlineDetector(this.#onlineDetector),
      beforeRetry: (records) => this.#restore(records),
      onLeadershipChange: (isLeader) => this.#onLeadershipChange(isLeader),
    });
    this.#records = new peer.OutboxManager(this.#storage, this.#collections);
    this.#unsubscribe.push(this.#executor.getOnlineDetector().subscribe(() => this.#sender.resume()));
    try {
      await this.#executor.waitForInit();
    } catch (error) {
      this.#reports.storageFailure(error);
    }
    if (this.#disposed) {
      // Disposed while the executor was starting: what it set up after that
      // dispose (its election, its listeners) is released now.
      this.#executor.dispose();
      return;
    }
    this.#stored.refresh();
  }

  /** The identity, waiting out a failing token provider (offline token refresh) instead of guessing. */
  async #readIdentityPatiently(): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.client.identity();
      } catch {
        await sleep(identityRetryDelay(attempt));
      }
    }
  }

  /**
   * `beforeRetry` of the executor: the records found in storage when this
   * tab became leader. Records of another identity are dropped here, before
   * their optimistic rows are restored (invariant 7), and reported.
   */
  #restore(records: OfflineTransaction[]): OfflineTransaction[] {
    // The library's start goes on after dispose (a page closed while its
    // outbox was starting). Such a page judges nothing: everything stays
    // stored for the next page, which reports what belongs to another
    // identity — once, not once per page that looked at it. Thrown, not
    // returned: what this returns the library runs (a record it has no
    // function for, or one #executeWrite refuses, it fails and deletes — no
    // report here, nothing for the next page to find), and what it leaves
    // out the library deletes. A throw ends the library's load with nothing
    // run, restored or deleted (it logs a warning).
    if (this.#disposed) throw new LunoraError("INVALID_ARGS", "the outbox was disposed while loading its queue: left for the next page");
    const kept = records.filter((record) => {
      if (this.#writes.has(record.id)) return true;
      const meta = writeMetadataOf(record.metadata);
      if (record.mutationFnName !== WRITE_MUTATION_FN || !meta || !isSendable(meta)) {
        // Not a write this outbox can send (corrupt, of an incompatible
        // version, too big for a frame): the library would run it, fail it and delete it with no
        // word to anyone. (The library deletes it too, once it has loaded everything.)
        void this.#forgetUnreadable(QUEUED_RECORD_PREFIX + record.id);
        return false;
      }
      if (meta.identity !== this.#identity) {
        // (The library deletes it too, once it has loaded everything.)
        void this.#forgetOtherIdentity(QUEUED_RECORD_PREFIX + record.id, meta);
        return false;
      }
      this.#register(record.id, meta, { assigned: true, durable: true, createdAt: record.createdAt });
      if (this.#durable) raiseCounter(this.#durable, meta);
      return true;
    });
    return kept.sort(compareRecords);
  }

  /** Deletes the stored record `key` of another identity's write, then reports the write (see #forgetRecord). */
  async #forgetOtherIdentity(key: string, meta: WriteMetadata): Promise<void> {
    if (await this.#forgetRecord(key)) this.#reports.rejected(meta, identityChanged());
  }

  /** Deletes the stored record `key`, which no outbox can send, then reports it (see #forgetRecord): never dropped silently. */
  async #forgetUnreadable(key: string): Promise<void> {
    if (await this.#forgetRecord(key)) this.#reports.unreadableWrite(key);
  }

  #onLeadershipChange(isLeader: boolean): void {
    this.#reports.leadership(isLeader);
    // Reported before `isOfflineEnabled` flips; adopt once the executor sees it.
    if (isLeader) queueMicrotask(() => this.#tabWrites?.adoptOrphans());
    // Another tab may have handed out clientSeqs while it led: start from storage.
    if (isLeader && this.#identity !== undefined) this.#loadWriter(this.#identity);
  }

  /**
   * Loads `identity`'s durable writer from storage and makes it the one new
   * writes take (unless the identity changed meanwhile); the outbox is not
   * ready until then.
   */
  #loadWriter(identity: string): Promise<void> {
    const loading = this.#writers.load(identity).then((writer) => {
      if (this.#identity !== identity) return;
      // The old leader stores its counter only before sending: writes it
      // queued offline carry clientSeqs past the stored counter. Those
      // restored before this load finished were counted on the previous
      // writer object; count them again so no clientSeq is handed out twice.
      if (writer) for (const write of this.#writes.values()) raiseCounter(writer, write.meta);
      this.#durable = writer;
    });
    this.#ready = this.#ready.then(() => loading);
    return loading;
  }

  // ---- the write's own transaction ----------------------------------------

  /** Writes accepted and not yet stored (or found unstorable). */
  readonly #storing = new Set<Promise<void>>();

  /**
   * Resolves once every write made so far is in durable storage (or known
   * not to be: a storage failure, reported through `onStorageFailure`).
   * A write is stored a few milliseconds after the call that made it; a page
   * closed inside that window loses it. Await this before a planned reload
   * or sign-out (best effort on `pagehide`).
   *
   * @example
   * ```ts
   * await db.executor.whenStored();
   * location.reload();
   * ```
   */
  async whenStored(): Promise<void> {
    while (this.#storing.size > 0) await Promise.all([...this.#storing]);
  }

  /** mutationFn of a write's TanStack DB transaction: stores the write, then sends it. */
  async #commitWrite(transaction: Transaction<any>, write: PendingWrite): Promise<unknown> {
    write.settled ??= transaction.isPersisted.promise.then(noop, noop);
    const storing = this.#store(transaction, write);
    const stored = storing.then(noop, noop);
    this.#storing.add(stored);
    void stored.then(() => this.#storing.delete(stored));
    return (await storing) ? this.#runDirect(write) : never();
  }

  /**
   * Assigns the write its writer and clientSeq and stores it, once the
   * outbox has started and read the write's identity. Resolves `false` when
   * the outbox was disposed meanwhile (nothing is sent); rejects with the
   * drop's error when the write was dropped meanwhile.
   */
  async #store(transaction: Transaction<any>, write: PendingWrite): Promise<boolean> {
    // Wait for the outbox to start — unless the write is dropped meanwhile
    // (identity switch in a page's first moments): then roll back at once.
    await new Promise<void>((resolve) => {
      write.wake.add(resolve);
      this.#ready.then(resolve, resolve);
    });
    await this.#identityOf(write); // returns at once for a dropped write
    if (write.dropped) {
      // Never assigned, never queued: nothing else will forget it.
      this.#unregister(write);
      throw write.dropped;
    }
    if (this.#disposed) return false;
    this.#assignThrough(write);
    const executor = this.#executor;
    const records = this.#records;
    if (!write.durable || !executor || !records) {
      if (this.#tabWrites) write.tabRecord = await this.#tabWrites.store(write.id, write.meta as AssignedWriteMetadata, write.createdAt!);
      return true;
    }
    try {
      write.queuedRecord = await storeOfflineRecord(executor, records, {
        id: write.id,
        mutationFnName: WRITE_MUTATION_FN,
        mutations: transaction.mutations,
        keys: transaction.mutations.map((mutation) => mutation.globalKey),
        idempotencyKey: `${write.meta.clientId}:${write.meta.clientSeq}`,
        createdAt: write.createdAt!,
        retryCount: 0,
        nextAttemptAt: Date.now(),
        metadata: transaction.metadata,
        version: 1,
      });
    } catch {
      // Not stored (reported by the guarded storage): the write still goes
      // out while online, it just won't survive a reload.
    }
    return true;
  }

  /** A write whose optimistic body touched nothing: TanStack would complete it at once, so it is settled here. */
  #commitWithoutRows(transaction: Transaction<any>, write: PendingWrite): void {
    transaction.setState("persisting");
    this.#commitWrite(transaction, write).then(
      () => {
        transaction.setState("completed");
        transaction.isPersisted.resolve(transaction);
      },
      (error: unknown) => {
        transaction.setState("failed");
        transaction.isPersisted.reject(error);
      },
    );
  }

  /**
   * Sends a write of this session from memory until it is settled, retrying
   * transient failures with backoff — whatever its record is (a `tx:` record
   * of the leader, a tab-write record of a follower, none after a storage
   * failure). Resolves with the outcome, or early when the write is parked
   * (its rows then live in an overlay the executor settles or rolls back).
   */
  #runDirect(write: PendingWrite): Promise<unknown> {
    const parked = new Promise<undefined>((resolve) => (write.onParked = () => resolve(undefined)));
    const settled = this.#sendUntilSettled(write);
    settled.catch(noop); // a parked write's outcome is reported, not awaited
    return Promise.race([settled, parked]);
  }

  async #sendUntilSettled(write: PendingWrite): Promise<unknown> {
    try {
      for (let backoff = DIRECT_RETRY_MIN_MS; ; backoff = Math.min(DIRECT_RETRY_MAX_MS, backoff * 2)) {
        const outcome = await this.#deliver(write);
        if (outcome.status === "applied") return outcome.result;
        // A drop (identity switch) or an answer ends the wait: refreshAuth()
        // waits for the old identity's rows to roll back, not for a backoff.
        await sleepUnlessWoken(write, backoff);
        if (this.#disposed) return never();
      }
    } finally {
      this.#unregister(write);
      if (write.tabRecord) void this.#storage.delete(write.tabRecord);
      if (write.queuedRecord) void this.#executor?.removeFromOutbox(write.id).catch(noop);
    }
  }

  /**
   * One delivery of `write`, for both senders (this session's, the
   * executor's): the applied outcome, or a transient failure (counted;
   * past `maxTransientFailures` the write is parked). A rejection is
   * reported and thrown as its coded error. The outcome of a write parked
   * while this session sent it settles (or rolls back) the overlay that
   * holds its rows; the executor settles the overlays of the writes it runs
   * itself.
   */
  async #deliver(write: PendingWrite): Promise<Exclude<Outcome, { status: "rejected" }>> {
    const outcome = await this.#sender.deliver(write);
    if (outcome.status === "error") {
      if (++write.transientFailures >= this.#maxTransientFailures) this.#park(write);
      return outcome;
    }
    if (outcome.status === "rejected") {
      // Reported once its record is deleted (see #forgetRecord; a drop deletes it itself).
      const key = recordKeyOf(write);
      if (!(await (write.forgotten ?? (key === undefined || this.#forgetRecord(key))))) return never();
    }
    const error = outcome.status === "rejected" ? this.#rejectionOf(write, outcome.error) : undefined;
    const executor = this.#executor;
    if (write.parked && write.onParked && executor) {
      if (error) executor.rejectTransaction(write.id, error);
      else executor.resolveTransaction(write.id, undefined);
    }
    if (outcome.status === "applied") return outcome;
    throw error;
  }

  // ---- the durable queue ---------------------------------------------------

  /** The mutation function the executor runs, one queued write at a time (head of the FIFO). */
  async #executeWrite(params: { transaction: unknown }): Promise<unknown> {
    const transaction = params.transaction as { id: string; metadata?: Record<string, unknown> };
    const meta = writeMetadataOf(transaction.metadata);
    if (!meta || !isAssigned(meta)) throw new offlineTransactions!.NonRetriableError("not a Lunora write");
    await this.#ready;
    if (this.#disposed) return never();
    const write = this.#writes.get(transaction.id) ?? this.#register(transaction.id, meta, { assigned: true, durable: true });
    if (meta.identity !== this.#identity) this.#drop(write, identityChanged());
    let outcome;
    try {
      outcome = await this.#deliver(write);
    } catch (error) {
      this.#unregister(write);
      throw new offlineTransactions!.NonRetriableError(`${(error as LunoraError).code}: write rejected`);
    }
    if (outcome.status === "error") throw transientWriteError(outcome.error);
    this.#unregister(write);
    return outcome.result;
  }

  /**
   * Releases the collections held by a write that keeps failing: its rows
   * move to a pending overlay the executor owns (rolled back or settled with
   * the write's outcome, like a write restored after a reload) and its own
   * transaction resolves. The write stays queued.
   */
  #park(write: PendingWrite): void {
    const executor = this.#executor;
    if (write.parked || !executor) return;
    const live = write.transaction;
    write.parked = true;
    if (!live || live.state !== "persisting") return;
    const overlay = createTransaction({ id: `${write.id}:parked`, autoCommit: false, mutationFn: async () => undefined });
    overlay.applyMutations(live.mutations);
    for (const collection of new Set(live.mutations.map((mutation) => mutation.collection))) {
      collection._state.transactions.set(overlay.id, overlay);
      collection._state.recomputeOptimisticState(true);
    }
    // The executor holds the overlay; the write's outcome settles or rolls
    // it back (#settleParked). Then the live transaction is released.
    executor.registerRestorationTransaction(write.id, overlay);
    write.onParked?.();
  }

  // ---- identity --------------------------------------------------------------

  /** Before a batch goes out on `room`'s socket: the identity to send as, or `undefined` to send nothing now. */
  async #prepareSend(room: RoomState): Promise<string | undefined> {
    // The online detector gates sending ("allowed to send"); going online resumes every room.
    if (!this.#executor?.isOnline()) return undefined;
    await this.#checkIdentity();
    const presented = await this.client.roomIdentity(room.room, room.party);
    if (presented !== undefined && presented !== this.#identity) {
      // The socket still speaks for the previous token: nothing goes out on it.
      this.client.reconnectRoom(room.room, room.party);
      return undefined;
    }
    // A clientSeq reaches the room only after the counter that handed it out is stored.
    await this.#writers.save(this.#durable);
    return this.#identity;
  }

  /**
   * Resolves once the outbox has read the identity of the client's
   * generation `write` was made in (or the write was dropped meanwhile).
   */
  async #identityOf(write: PendingWrite): Promise<void> {
    // (An outbox whose start failed has no identity: nothing to wait for.)
    for (let attempt = 0; !write.dropped && !this.#disposed && this.#identity !== undefined && this.#identityGenerationRead < write.identityGeneration; attempt++) {
      const generation = this.#identityGenerationRead;
      // The check running may have read the token before the switch: then
      // the next round gets a fresh one. A token provider that keeps failing
      // (offline token refresh) is waited out with a backoff, not spun on.
      // A drop meanwhile ends the wait: the check may be waiting for this very write to roll back.
      await new Promise<void>((resolve) => {
        write.wake.add(resolve);
        this.#checkIdentity().then(resolve, resolve);
      });
      if (attempt > 0 && this.#identityGenerationRead === generation) await sleepUnlessWoken(write, identityRetryDelay(attempt - 1));
    }
  }

  /**
   * Re-reads the identity. After a change, nothing queued under the old one
   * is sent: those writes are dropped, rolled back and reported as
   * `IDENTITY_CHANGED`; new writes get the new identity's writer.
   *
   * `fresh`: the caller was just told of a switch. A check already running
   * (the one before each send) may have read the token before that switch;
   * answering with it would leave the outbox on the old identity after
   * `refreshAuth()` resolved, so a fresh check runs after it.
   */
  #checkIdentity(fresh = false): Promise<void> {
    const running = this.#identityCheck;
    if (running && fresh) {
      const again = () => this.#checkIdentity(true);
      return running.then(again, again);
    }
    this.#identityCheck ??= (async () => {
      try {
        // Writes made before the client's latest identity change belong to
        // an earlier identity, whether or not the outbox had resolved it yet
        // (a write made in the first milliseconds of a page, then a switch).
        const generation = this.client.identityGeneration;
        const rollbacks: Promise<unknown>[] = [];
        const dropOf = (belongsElsewhere: (write: PendingWrite) => boolean) => {
          for (const write of [...this.#writes.values()]) {
            if (write.dropped || write.outcome || !belongsElsewhere(write)) continue;
            this.#drop(write, identityChanged());
            if (write.settled) rollbacks.push(write.settled);
            if (write.forgotten) rollbacks.push(write.forgotten);
          }
        };
        dropOf((write) => !write.assigned && write.identityGeneration !== generation);
        // A failing token provider reads as `undefined`: nothing is sent on an unknown identity's behalf anyway.
        const current = await this.client.identity().catch(noop);
        let loading: Promise<void> | undefined;
        // Only once the outbox has started: until then its start reads the identity itself.
        if (current !== undefined && this.#identity !== undefined) {
          this.#identityGenerationRead = Math.max(this.#identityGenerationRead, generation);
          if (current !== this.#identity) {
            this.#identity = current;
            this.#ephemeral = ephemeralWriter(current);
            this.#durable = undefined;
            loading = this.#loadWriter(current);
            dropOf((write) => (write.assigned ? write.meta.identity !== current : write.identityGeneration !== generation));
          }
        }
        // refreshAuth() resolves only once the old identity's optimistic rows are gone.
        if (rollbacks.length > 0) await Promise.race([Promise.all(rollbacks), new Promise((resolve) => setTimeout(resolve, ROLLBACK_WAIT_MS))]);
        await loading;
      } finally {
        this.#identityCheck = undefined;
      }
    })();
    return this.#identityCheck;
  }


  #drop(write: PendingWrite, error: LunoraError): void {
    if (write.dropped || write.outcome) return;
    write.dropped = error;
    this.#reportPending();
    // A stored write's record goes first, then the report and the rollback
    // (see #forgetOtherIdentity): reported first, a reload before the delete
    // committed reported it again. Bounded: storage that does not answer
    // must not keep the old identity's rows on screen (the record then
    // stays, and a page that reloads reports it — never nobody).
    const key = recordKeyOf(write);
    if (key === undefined) return this.#settleDrop(write, error);
    write.forgotten = this.#forgetRecord(key).then((report) => {
      if (report) this.#settleDrop(write, error);
      return report;
    });
  }

  /**
   * Deletes a settled write's stored record before the write is reported:
   * reported first, a page reloaded before the delete committed found the
   * record again and reported the write twice. The report follows the
   * delete in the same task, so no reload falls between them. Resolves
   * whether to report now: yes once deleted (a delete that fails is reported
   * through `onStorageFailure`, and counts); bounded, so storage that does
   * not answer keeps no rows of a finished write on screen — unless the
   * outbox was disposed meanwhile (the page is gone: the record stays, and
   * the next page reports it; never nobody).
   */
  async #forgetRecord(key: string): Promise<boolean> {
    let deleted = false;
    await Promise.race([this.#storage.delete(key).then(() => void (deleted = true)), sleep(RECORD_DELETE_WAIT_MS)]);
    return deleted || !this.#disposed;
  }

  /** Reports a dropped write and rolls it back. */
  #settleDrop(write: PendingWrite, error: LunoraError): void {
    this.#report(write, error);
    wake(write);
    if (write.durable && this.#executor) {
      // Roll its rows back now, also while the queue is running it: a write
      // restored after a reload has no live transaction refreshAuth() could
      // wait for, only the executor's overlay, which this removes at once.
      this.#executor.rejectTransaction(write.id, error);
      // Not running now: out of storage now rather than when it reaches the head.
      if (write.waiting === 0) void this.#executor.removeFromOutbox(write.id).catch(noop);
    }
  }

  // ---- writers ---------------------------------------------------------------

  /** Assigns clientId + clientSeq to every queued write up to `write`, in enqueue order. */
  #assignThrough(write: PendingWrite): void {
    if (write.assigned) return;
    while (this.#unassigned.length > 0) {
      const next = this.#unassigned.shift()!;
      // A dropped write is never sent: a clientSeq handed to it would be a
      // hole the room waits on forever (OUT_OF_ORDER for every later write).
      if (!next.assigned && !next.dropped) this.#assign(next);
      if (next === write) return;
    }
    this.#assign(write);
  }

  #assign(write: PendingWrite): void {
    const writer = (this.isLeader && this.#durable) || this.#ephemeral!;
    const key = write.room.key;
    const seq = (writer.seqs.get(key) ?? 0) + 1;
    writer.seqs.set(key, seq);
    if (writer.durable) writer.dirty = true;
    write.meta.identity = writer.identity;
    write.meta.clientId = writer.clientId;
    write.meta.clientSeq = seq;
    write.durable = writer.durable;
    write.assigned = true;
    write.createdAt = this.#clock();
  }

  // ---- bookkeeping -----------------------------------------------------------

  /** Tracks a write from now until it is settled; `state` is what is known of it already (a restored or adopted write is assigned). */
  #register(id: string, meta: WriteMetadata, state?: Partial<PendingWrite>): PendingWrite {
    const room = this.#sender.roomFor(meta.party, meta.room);
    const write: PendingWrite = {
      id,
      meta,
      room,
      waiting: 0,
      wake: new Set(),
      transientFailures: 0,
      identityGeneration: this.client.identityGeneration,
      ...state,
    };
    this.#writes.set(id, write);
    room.writes.add(write);
    this.#reportPending();
    return write;
  }

  #unregister(write: PendingWrite): void {
    if (this.#writes.get(write.id) === write) this.#writes.delete(write.id);
    this.#sender.remove(write);
    this.#reportPending();
  }

  #reportPending(): void {
    if (!this.#disposed) this.client.reportPendingWrites(this.pendingCount);
  }

  /** The coded error of a permanently rejected write; reported once, before the rollback that follows. */
  #rejectionOf(write: PendingWrite, body: ErrorBody): LunoraError {
    const error = write.dropped ?? LunoraError.fromBody(body);
    this.#report(write, error);
    return error;
  }

  #report(write: PendingWrite, error: LunoraError): void {
    if (write.reported) return;
    write.reported = true;
    this.#reports.rejected(write.meta, error);
  }

}

/** The key of `write`'s stored record, if it may have one: its tab-write record, else (a durable writer's) its `tx:` record. */
function recordKeyOf(write: PendingWrite): string | undefined {
  return write.tabRecord ?? (write.durable ? QUEUED_RECORD_PREFIX + write.id : undefined);
}

/** Backoff while the token provider fails: 250 ms, doubling, capped. */
function identityRetryDelay(attempt: number): number {
  return Math.min(IDENTITY_RETRY_MAX_MS, 250 * 2 ** attempt);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits `ms`, or less if the write is woken (dropped, or answered) meanwhile. */
function sleepUnlessWoken(write: PendingWrite, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      write.wake.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    write.wake.add(done);
  });
}

const outboxes = new WeakMap<LunoraClient<any>, LunoraOutbox>();

/**
 * The outbox of `client`, created on first use with `options`. Later calls
 * add their callbacks; storage and pipelining are fixed by the first call.
 */
export function outboxFor(client: LunoraClient<any>, options: OutboxOptions = {}): LunoraOutbox {
  let outbox = outboxes.get(client);
  if (!outbox) {
    outbox = new LunoraOutbox(client, options);
    outboxes.set(client, outbox);
  } else {
    outbox.addListeners(options);
  }
  return outbox;
}

export type { AssignedWriteMetadata };
