import { createTransaction, type Collection, type Transaction } from "@tanstack/db";
import {
  NonRetriableError,
  OfflineExecutor,
  type LeaderElection,
  type OfflineTransaction,
  type OnlineDetector,
  type StorageAdapter,
} from "@tanstack/offline-transactions";
import type { LunoraClient } from "../client/lunora-client.js";
import { Listeners, reportListenerError } from "../client/listeners.js";
import { assertRoomName } from "../client/room-name.js";
import { LunoraError, type ErrorBody, type Mutation, type MutationResult } from "../protocol/index.js";
import { defaultLeaderElection, defaultOnlineDetector } from "./environment.js";
import { createIndexedDbPersistence, storageFailureCode, type OutboxPersistence } from "./persistence.js";
import {
  TransientWriteError,
  WRITE_METADATA_KEY,
  WRITE_MUTATION_FN,
  assertWriteFits,
  chunkMutations,
  compareRecords,
  isAssigned,
  monotonicClock,
  roomKey,
  writeMetadataOf,
  type AssignedWriteMetadata,
  type WriteMetadata,
} from "./write.js";

/** What `onWriteRejected` receives: once per permanently rejected write, before its rollback. */
export interface WriteRejectedEvent {
  /** The collection the write belongs to (for a custom mutator: the first collection it touched, else its `serverRef`). */
  collection: string;
  /** The optimistic row being rolled back (inserts; for custom mutators the first row they wrote), if any. */
  row: Record<string, unknown> | undefined;
  error: LunoraError;
  /** The server's code (`INVALID_ARGS`, `CONFLICT`, …) or `IDENTITY_CHANGED`. */
  code: string;
  /** The server mutator and the args it was sent with. */
  mutator: string;
  args: unknown;
}

/** What `onStorageFailure` receives. The write still goes out while online; it will not survive a reload. */
export interface StorageFailureEvent {
  code: "STORAGE_FAILURE" | "QUOTA_EXCEEDED";
  message: string;
}

/** Options of the durable outbox (`defineCollections` and `bindMutators` take them). */
export interface OutboxOptions {
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
  /** Multi-tab election; defaults to Web Locks in browsers and {@link alwaysLeader} elsewhere. */
  leaderElection?: LeaderElection;
  /** Gate for running queued writes; defaults to browser events in browsers, always online elsewhere. */
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
  onWriteRejected?: (event: WriteRejectedEvent) => void;
  onStorageFailure?: (event: StorageFailureEvent) => void;
  onLeadershipChange?: (isLeader: boolean) => void;
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

interface Writer {
  identity: string;
  clientId: string;
  seqs: Map<string, number>;
  durable: boolean;
  dirty: boolean;
}

interface RoomState {
  key: string;
  party: string;
  room: string;
  writes: Set<PendingWrite>;
  /** Bumped on every status change: a write sent under an older generation counts as unsent. */
  generation: number;
  /** Writes sent on the current socket and not answered yet, by clientSeq (one clientId at a time). */
  inFlight: Map<number, PendingWrite>;
  inFlightClientId: string | undefined;
  /** The room expects a clientSeq no pending write carries (a write lost with storage): filled before the next batch. */
  gap: { clientId: string; expected: number } | undefined;
  release: (() => void) | undefined;
  sending: boolean;
  again: boolean;
}

interface PendingWrite {
  id: string;
  meta: WriteMetadata;
  room: RoomState;
  assigned: boolean;
  durable: boolean;
  createdAt: Date | undefined;
  sentGeneration: number;
  outcome: Extract<MutationResult, { status: "applied" | "rejected" }> | undefined;
  transient: ErrorBody | undefined;
  dropped: LunoraError | undefined;
  rejection: LunoraError | undefined;
  waiting: number;
  wake: Set<() => void>;
  reported: boolean;
  transientFailures: number;
  /** Its rows were handed to a pending overlay after too many transient failures (see {@link LunoraOutbox}). */
  parked: boolean;
  /** The client's identity generation when the write was made: it belongs to that identity even before being assigned a writer. */
  identityGeneration: number;
  /** Settles when the write's live TanStack transaction has completed or rolled back (this session's writes only). */
  settled: Promise<void> | undefined;
}

type DeliveryOutcome = MutationResult;

/** Gap filler: an unknown mutator name is a recorded permanent rejection, which moves the room's watermark past it. */
const GAP_MUTATOR = "__lunora:gap";
const DIRECT_RETRY_MIN_MS = 1_000;
const DIRECT_RETRY_MAX_MS = 30_000;
const IDENTITY_RETRY_MAX_MS = 10_000;
/** How long an identity switch waits for the old identity's writes to roll back. */
const ROLLBACK_WAIT_MS = 2_000;
/** Default bound of {@link OutboxOptions.maxPendingWrites}. */
export const DEFAULT_MAX_PENDING_WRITES = 10_000;

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);
const noop = () => undefined;

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
 * **When the head write keeps failing transiently.** The library runs one
 * global FIFO, one write at a time, and TanStack DB holds sync commits to
 * every collection touched by a write that is still persisting — which
 * includes every write queued behind the head. So while the head write of
 * the queue fails with `INTERNAL` / `QUOTA_EXCEEDED` (retried with the
 * library's backoff: 1 s, 2 s, 4 s … capped at 60 s), writes behind it wait
 * and the collections they touch show no new server rows. This is bounded:
 * after `maxTransientFailures` (default 5) the write is *parked* — its
 * optimistic rows move to a plain pending overlay (the same form a write
 * restored after a reload takes) and its own transaction resolves, so the
 * collections it touches receive pokes again; the write itself stays in the
 * durable queue and keeps being retried with backoff, and its later outcome
 * settles or rolls back that overlay (a permanent rejection is still
 * reported through `onWriteRejected`). Writes queued behind it still wait for
 * it: the room applies a writer's writes in `clientSeq` order, so nothing
 * after it could be applied anyway. A room that stays unreachable is not a
 * failure: the head write waits for the socket without consuming retries.
 *
 * One outbox per client (`outboxFor`); `defineCollections` and
 * `bindMutators` share it.
 */
export class LunoraOutbox {
  readonly client: LunoraClient<any>;
  readonly pipeline: boolean;
  readonly persistence: OutboxPersistence;
  readonly #storage: StorageAdapter;
  readonly #leaderElection: LeaderElection | undefined;
  readonly #onlineDetector: OnlineDetector | undefined;
  readonly #maxTransientFailures: number;
  readonly #maxPendingWrites: number;
  readonly #collections: Record<string, Collection<any, any, any, any, any>> = {};
  readonly #collectionNames = new Map<Collection<any, any, any, any, any>, string>();
  readonly #rooms = new Map<string, RoomState>();
  readonly #writes = new Map<string, PendingWrite>();
  /** This session's transactions of queued writes, by id (parking needs them). */
  readonly #liveTransactions = new Map<string, Transaction<any>>();
  readonly #unassigned: PendingWrite[] = [];
  readonly #rejected = new Listeners<[WriteRejectedEvent]>();
  readonly #storageFailures = new Listeners<[StorageFailureEvent]>();
  readonly #leadership = new Listeners<[isLeader: boolean]>();
  readonly #unsubscribe: Array<() => void> = [];
  readonly #clock = monotonicClock();
  #identity: string | undefined;
  #durable: Writer | undefined;
  #ephemeral: Writer | undefined;
  #executor: OfflineExecutor | undefined;
  #ready: Promise<void>;
  #identityCheck: Promise<void> | undefined;
  #savingWriter: Promise<void> | undefined;
  #lastStorageFailure: string | undefined;
  #disposed = false;

  constructor(client: LunoraClient<any>, options: OutboxOptions = {}) {
    this.client = client;
    this.pipeline = options.pipeline ?? true;
    this.persistence = options.persistence ?? client.persistence ?? createIndexedDbPersistence();
    this.#storage = this.#guardStorage(this.persistence.storage);
    this.#leaderElection = options.leaderElection ?? defaultLeaderElection();
    this.#onlineDetector = options.onlineDetector ?? defaultOnlineDetector();
    this.#maxTransientFailures = options.maxTransientFailures ?? 5;
    this.#maxPendingWrites = options.maxPendingWrites ?? DEFAULT_MAX_PENDING_WRITES;
    this.addListeners(options);
    this.#unsubscribe.push(
      client.onMutationResults((room, results, party) => this.#onResults(party, room, results)),
      client.onRoomStatusChange((room, status, party) => this.#onRoomStatus(party, room, status)),
      // Roll back and report the old identity's writes as soon as the switch is noticed.
      client.onIdentityChange(() => this.#checkIdentity({ fresh: true })),
    );
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

  /** Writes queued and not yet settled. Also `client.pendingWrites`. */
  get pendingCount(): number {
    let count = 0;
    for (const write of this.#writes.values()) if (!write.dropped) count++;
    return count;
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
  addListeners(options: Pick<OutboxOptions, "onWriteRejected" | "onStorageFailure" | "onLeadershipChange">): void {
    if (options.onWriteRejected) this.#rejected.add(options.onWriteRejected);
    if (options.onStorageFailure) this.#storageFailures.add(options.onStorageFailure);
    if (options.onLeadershipChange) this.#leadership.add(options.onLeadershipChange);
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
        throw new LunoraError(
          "INVALID_ARGS",
          `collection "${name}" was registered after the outbox started; create every collection (defineCollections, bindMutators) in the same task`,
        );
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
    const meta: WriteMetadata = {
      v: 1,
      kind: request.kind,
      name: request.name,
      args: request.args,
      party,
      room: request.room,
      ...(request.collection !== undefined ? { collection: request.collection } : {}),
      ...(request.row !== undefined ? { row: request.row } : {}),
    };
    let write!: PendingWrite;
    const transaction = createTransaction({
      autoCommit: false,
      mutationFn: async ({ transaction: tx }) => this.#commitWrite(tx as unknown as Transaction<any>, write),
      metadata: { [WRITE_METADATA_KEY]: meta },
    });
    write = this.#register(transaction.id, meta);
    this.#liveTransactions.set(transaction.id, transaction as unknown as Transaction<any>);
    try {
      transaction.mutate(request.apply);
      for (const mutation of transaction.mutations) {
        if (!this.#collectionNames.has(mutation.collection)) {
          throw new LunoraError(
            "INVALID_ARGS",
            `a write touched collection "${mutation.collection.id}", which is not registered with the outbox (pass it in \`collections\`)`,
          );
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
    this.#executor?.dispose();
    for (const room of this.#rooms.values()) room.release?.();
    this.#rooms.clear();
  }

  // ---- start-up ------------------------------------------------------------

  async #init(): Promise<void> {
    // A switch while the identity or its writer is being read (the
    // identity check skips an outbox that has not started) makes what was
    // read stale: read again, so no write is stamped with the old identity.
    for (let generation = -1; generation !== this.client.identityGeneration; ) {
      generation = this.client.identityGeneration;
      const identity = await this.#readIdentityPatiently();
      if (this.#disposed) return;
      this.#identity = identity;
      this.#ephemeral = ephemeralWriter(identity);
      this.#durable = await this.#loadWriter(identity);
      if (this.#disposed) return;
    }
    this.#executor = new OfflineExecutor({
      collections: this.#collections,
      mutationFns: { [WRITE_MUTATION_FN]: (params) => this.#executeWrite(params) },
      storage: this.#storage,
      ...(this.#leaderElection ? { leaderElection: this.#leaderElection } : {}),
      ...(this.#onlineDetector ? { onlineDetector: this.#onlineDetector } : {}),
      beforeRetry: (records) => this.#restore(records),
      onLeadershipChange: (isLeader) => this.#onLeadershipChange(isLeader),
    });
    try {
      await this.#executor.waitForInit();
    } catch (error) {
      this.#reportStorageFailure(error);
    }
  }

  /** The identity, waiting out a failing token provider (offline token refresh) instead of guessing. */
  async #readIdentityPatiently(): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.client.identity();
      } catch {
        await sleep(Math.min(IDENTITY_RETRY_MAX_MS, 250 * 2 ** attempt));
      }
    }
  }

  async #loadWriter(identity: string): Promise<Writer | undefined> {
    const key = writerKey(identity);
    try {
      const stored = await this.#storage.get(key);
      const parsed = stored ? (JSON.parse(stored) as { clientId?: unknown; seqs?: unknown }) : undefined;
      if (parsed && typeof parsed.clientId === "string" && typeof parsed.seqs === "object" && parsed.seqs !== null) {
        const seqs = new Map(Object.entries(parsed.seqs as Record<string, number>).filter(([, seq]) => Number.isInteger(seq)));
        return { identity, clientId: parsed.clientId, seqs, durable: true, dirty: false };
      }
      const writer: Writer = { identity, clientId: crypto.randomUUID(), seqs: new Map(), durable: true, dirty: true };
      await this.#saveWriter(writer);
      return writer.dirty ? undefined : writer;
    } catch {
      // Reported by the guarded storage. Without a durable writer every write
      // goes out under a per-session clientId and is not kept across reloads.
      return undefined;
    }
  }

  /**
   * `beforeRetry` of the executor: the records found in storage when this
   * tab became leader. Records of another identity are dropped here, before
   * their optimistic rows are restored (invariant 7), and reported.
   */
  #restore(records: OfflineTransaction[]): OfflineTransaction[] {
    const kept: OfflineTransaction[] = [];
    for (const record of records) {
      const meta = writeMetadataOf(record.metadata);
      if (!meta || !isAssigned(meta) || this.#writes.has(record.id)) {
        kept.push(record);
        continue;
      }
      if (meta.identity !== this.#identity) {
        this.#emitRejected(meta, identityChanged());
        continue;
      }
      const write = this.#register(record.id, meta);
      write.assigned = true;
      write.durable = true;
      write.createdAt = record.createdAt;
      const durable = this.#durable;
      if (durable && durable.clientId === meta.clientId) {
        const key = roomKey(meta.party, meta.room);
        if ((durable.seqs.get(key) ?? 0) < meta.clientSeq) {
          durable.seqs.set(key, meta.clientSeq);
          durable.dirty = true;
        }
      }
      kept.push(record);
    }
    return kept.sort(compareRecords);
  }

  #onLeadershipChange(isLeader: boolean): void {
    this.#leadership.emit(isLeader);
    // Another tab may have handed out clientSeqs while it led: start from storage.
    if (isLeader && this.#identity !== undefined) {
      const identity = this.#identity;
      const loading = this.#loadWriter(identity).then((writer) => {
        if (this.#identity === identity) this.#durable = writer;
      });
      this.#ready = this.#ready.then(() => loading);
    }
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

  /** mutationFn of a write's TanStack DB transaction. */
  async #commitWrite(transaction: Transaction<any>, write: PendingWrite): Promise<unknown> {
    write.settled ??= transaction.isPersisted.promise.then(noop, noop);
    let stored!: () => void;
    const storing = new Promise<void>((resolve) => (stored = resolve));
    this.#storing.add(storing);
    const done = () => {
      this.#storing.delete(storing);
      stored();
    };
    try {
      return await this.#storeAndRun(transaction, write, done);
    } finally {
      done();
    }
  }

  async #storeAndRun(transaction: Transaction<any>, write: PendingWrite, stored: () => void): Promise<unknown> {
    // Wait for the outbox to start — unless the write is dropped meanwhile
    // (identity switch in a page's first moments): then roll back at once.
    await new Promise<void>((resolve) => {
      write.wake.add(resolve);
      this.#ready.then(resolve, resolve);
    });
    if (write.dropped) {
      stored();
      // Never assigned, never queued: nothing else will forget it.
      this.#unregister(write);
      throw write.dropped;
    }
    if (this.#disposed) {
      stored();
      return never();
    }
    this.#assignThrough(write);
    const executor = this.#executor;
    if (!write.durable || !executor) {
      stored();
      return this.#runDirect(write);
    }

    const record: OfflineTransaction = {
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
    };
    const completion = executor.waitForTransactionCompletion(write.id);
    completion.catch(noop);
    try {
      await persistOfflineTransaction(executor, record, stored);
    } catch (error) {
      // Not in the durable queue (storage failed; reported as it happened):
      // the write still goes out while online, it just won't survive a reload.
      stored();
      executor.rejectTransaction(write.id, error instanceof Error ? error : new Error(String(error)));
      return this.#runDirect(write);
    }
    stored();
    try {
      const result = await completion;
      // The executor skips the queue when this tab lost leadership meanwhile.
      if (write.outcome === undefined && !write.parked) return this.#runDirect(write);
      return result;
    } catch (error) {
      throw write.rejection ?? write.dropped ?? error;
    }
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

  /** Writes not in the durable queue (non-leader tab, storage failure): sent and retried from memory. */
  async #runDirect(write: PendingWrite): Promise<unknown> {
    try {
      for (let failures = 0; ; ) {
        const outcome = await this.#deliver(write);
        if (outcome.status === "applied") return outcome.result;
        if (outcome.status === "rejected") throw this.#rejectionOf(write, outcome.error);
        failures++;
        // A drop (identity switch) or an answer ends the wait: refreshAuth()
        // waits for the old identity's rows to roll back, not for a backoff.
        await sleepUnlessWoken(write, Math.min(DIRECT_RETRY_MAX_MS, DIRECT_RETRY_MIN_MS * 2 ** (failures - 1)));
        if (this.#disposed) return never();
      }
    } finally {
      this.#unregister(write);
    }
  }

  // ---- the durable queue ---------------------------------------------------

  /** The mutation function the executor runs, one queued write at a time (head of the FIFO). */
  async #executeWrite(params: { transaction: unknown }): Promise<unknown> {
    const transaction = params.transaction as { id: string; metadata?: Record<string, unknown> };
    const meta = writeMetadataOf(transaction.metadata);
    if (!meta || !isAssigned(meta)) throw new NonRetriableError("not a Lunora write");
    await this.#ready;
    if (this.#disposed) return never();
    let write = this.#writes.get(transaction.id);
    if (!write) {
      write = this.#register(transaction.id, meta);
      write.assigned = true;
      write.durable = true;
    }
    if (meta.identity !== this.#identity) this.#drop(write, identityChanged());
    const outcome = await this.#deliver(write);
    if (outcome.status === "applied") {
      this.#unregister(write);
      return outcome.result;
    }
    if (outcome.status === "rejected") {
      this.#rejectionOf(write, outcome.error);
      this.#unregister(write);
      throw new NonRetriableError(`${outcome.error.code}: write rejected`);
    }
    write.transientFailures++;
    if (write.transientFailures >= this.#maxTransientFailures) this.#park(write);
    throw new TransientWriteError(outcome.error);
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
    const live = this.#liveTransactions.get(write.id);
    write.parked = true;
    if (!live || live.state !== "persisting") return;
    const overlay = createTransaction({ id: `${write.id}:parked`, autoCommit: false, mutationFn: async () => undefined });
    overlay.applyMutations(live.mutations);
    const touched = new Set<Collection<any, any, any, any, any>>();
    for (const mutation of live.mutations) touched.add(mutation.collection);
    for (const collection of touched) {
      collection._state.transactions.set(overlay.id, overlay);
      collection._state.recomputeOptimisticState(true);
    }
    executor.registerRestorationTransaction(write.id, overlay);
    releaseLiveTransaction(executor, write.id);
  }

  // ---- sending -------------------------------------------------------------

  /**
   * Waits for the outcome of `write`, sending it (and, pipelined, every
   * other pending write of its room) whenever its room is connected and it
   * has not been sent on the current socket.
   */
  async #deliver(write: PendingWrite): Promise<DeliveryOutcome> {
    const seq = write.meta.clientSeq ?? 0;
    write.waiting++;
    try {
      for (let outOfOrder = 0; ; ) {
        if (write.dropped) return { clientSeq: seq, status: "rejected", error: write.dropped.toBody() };
        if (write.outcome) return write.outcome;
        const transient = write.transient;
        if (transient) {
          write.transient = undefined;
          // A gap or an earlier write still in flight: resend at once (the gap is filled), a few times.
          if (transient.code === "OUT_OF_ORDER" && outOfOrder++ < 3) continue;
          return { clientSeq: seq, status: "error", error: transient };
        }
        if (write.sentGeneration !== write.room.generation) this.#kick(write.room);
        await new Promise<void>((resolve) => write.wake.add(resolve));
      }
    } finally {
      write.waiting--;
    }
  }

  #kick(room: RoomState): void {
    if (room.sending) {
      room.again = true;
      return;
    }
    room.sending = true;
    void (async () => {
      try {
        do {
          room.again = false;
          await this.#sendPending(room);
        } while (room.again && !this.#disposed);
      } catch (error) {
        reportListenerError(error);
      } finally {
        room.sending = false;
      }
    })();
  }

  async #sendPending(room: RoomState): Promise<void> {
    if (this.#disposed || this.client.roomStatus(room.room, room.party) !== "connected") return;
    await this.#checkIdentity();
    const presented = await this.client.roomIdentity(room.room, room.party);
    if (presented !== undefined && presented !== this.#identity) {
      // The socket still speaks for the previous token: nothing goes out on it.
      this.client.reconnectRoom(room.room, room.party);
      return;
    }
    // A clientSeq reaches the room only after the counter that handed it out is stored.
    await this.#saveWriter(this.#durable);
    if (this.#disposed || this.client.roomStatus(room.room, room.party) !== "connected") return;

    const current = (write: PendingWrite) =>
      write.assigned && !write.outcome && !write.dropped && write.meta.identity === this.#identity && write.sentGeneration !== room.generation;
    const armed = [...room.writes].filter((write) => write.waiting > 0 && current(write));
    if (armed.length === 0) return;
    armed.sort((a, b) => a.createdAt!.getTime() - b.createdAt!.getTime());
    const clientId = armed[0].meta.clientId!;
    // Outcomes carry no clientId: one writer in flight per socket at a time.
    if (room.inFlight.size > 0 && room.inFlightClientId !== clientId) return;
    const batch = (this.pipeline ? [...room.writes] : armed)
      .filter((write) => current(write) && write.meta.clientId === clientId)
      .sort((a, b) => a.meta.clientSeq! - b.meta.clientSeq!);
    const mutations: Mutation[] = [];
    const gap = room.gap;
    if (gap && gap.clientId === clientId) {
      room.gap = undefined;
      // A dropped write keeps its clientSeq but is never sent: its seq is a hole to fill too.
      const known = new Set([...room.writes].filter((w) => w.meta.clientId === clientId && !w.dropped).map((w) => w.meta.clientSeq));
      for (let seq = gap.expected; seq < batch[0].meta.clientSeq!; seq++) {
        if (!known.has(seq)) mutations.push({ clientSeq: seq, name: GAP_MUTATOR, args: null });
      }
    }
    for (const write of batch) mutations.push({ clientSeq: write.meta.clientSeq!, name: write.meta.name, args: write.meta.args });
    const bySeq = new Map(batch.map((write) => [write.meta.clientSeq!, write]));
    for (const chunk of chunkMutations(mutations)) {
      if (!this.client.push(room.room, { clientId, mutations: chunk }, room.party)) return;
      room.inFlightClientId = clientId;
      for (const mutation of chunk) {
        const write = bySeq.get(mutation.clientSeq);
        if (!write) continue;
        write.sentGeneration = room.generation;
        room.inFlight.set(mutation.clientSeq, write);
      }
    }
  }

  #onResults(party: string, roomName: string, results: MutationResult[]): void {
    const room = this.#rooms.get(roomKey(party, roomName));
    if (!room) return;
    for (const result of results) {
      const write = room.inFlight.get(result.clientSeq);
      if (!write) continue;
      room.inFlight.delete(result.clientSeq);
      if (result.status === "error") {
        write.sentGeneration = -1;
        const expected = (result.error.data as { expected?: unknown } | undefined)?.expected;
        if (result.error.code === "OUT_OF_ORDER" && typeof expected === "number" && expected < result.clientSeq) {
          if (!room.gap || room.gap.expected > expected) room.gap = { clientId: write.meta.clientId!, expected };
        }
        // Only the write being waited for takes the failure; the others are simply sent again.
        if (write.waiting > 0) write.transient = result.error;
      } else {
        write.outcome = result;
      }
      wake(write);
    }
    if (room.inFlight.size === 0) {
      room.inFlightClientId = undefined;
      if ([...room.writes].some((write) => write.waiting > 0 && write.sentGeneration !== room.generation)) this.#kick(room);
    }
  }

  #onRoomStatus(party: string, roomName: string, status: string): void {
    const room = this.#rooms.get(roomKey(party, roomName));
    if (!room) return;
    room.generation++;
    room.inFlight.clear();
    room.inFlightClientId = undefined;
    if (status === "connected") this.#kick(room);
  }

  // ---- identity --------------------------------------------------------------

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
  #checkIdentity(options: { fresh?: boolean } = {}): Promise<void> {
    const running = this.#identityCheck;
    if (running && options.fresh) {
      const again = () => this.#checkIdentity(options);
      return running.then(again, again);
    }
    this.#identityCheck ??= (async () => {
      try {
        // Writes made before the client's latest identity change belong to
        // an earlier identity, whether or not the outbox had resolved it yet
        // (a write made in the first milliseconds of a page, then a switch).
        const generation = this.client.identityGeneration;
        const rollbacks: Promise<void>[] = [];
        const dropOf = (belongsElsewhere: (write: PendingWrite) => boolean) => {
          for (const write of [...this.#writes.values()]) {
            if (write.dropped || write.outcome || !belongsElsewhere(write)) continue;
            this.#drop(write, identityChanged());
            if (write.settled) rollbacks.push(write.settled);
          }
        };
        dropOf((write) => !write.assigned && write.identityGeneration !== generation);
        let identity: string | undefined;
        try {
          identity = await this.client.identity();
        } catch {
          // token provider failing: nothing is sent on an unknown identity's behalf anyway
        }
        let loading: Promise<void> | undefined;
        if (identity !== undefined && this.#identity !== undefined && identity !== this.#identity) {
          const current = identity;
          this.#identity = current;
          this.#ephemeral = ephemeralWriter(current);
          this.#durable = undefined;
          loading = this.#loadWriter(current).then((writer) => {
            if (this.#identity === current) this.#durable = writer;
          });
          this.#ready = this.#ready.then(() => loading);
          dropOf((write) => (write.assigned ? write.meta.identity !== current : write.identityGeneration !== generation));
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
    this.#reportPending();
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
    const writer = this.#executor?.isOfflineEnabled && this.#durable ? this.#durable : this.#ephemeral!;
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

  async #saveWriter(writer: Writer | undefined): Promise<void> {
    while (writer?.dirty && !this.#disposed) {
      if (this.#savingWriter) {
        await this.#savingWriter;
        continue;
      }
      writer.dirty = false;
      const value = JSON.stringify({ clientId: writer.clientId, seqs: Object.fromEntries(writer.seqs) });
      let failed = false;
      this.#savingWriter = this.#storage
        .set(writerKey(writer.identity), value)
        .catch(() => {
          failed = true;
        })
        .finally(() => {
          this.#savingWriter = undefined;
        });
      await this.#savingWriter;
      if (failed) {
        // Reported by the guarded storage; the write still goes out online.
        writer.dirty = true;
        return;
      }
    }
  }

  // ---- bookkeeping -----------------------------------------------------------

  #register(id: string, meta: WriteMetadata): PendingWrite {
    const room = this.#roomFor(meta.party, meta.room);
    const write: PendingWrite = {
      id,
      meta,
      room,
      assigned: false,
      durable: false,
      createdAt: undefined,
      sentGeneration: -1,
      outcome: undefined,
      transient: undefined,
      dropped: undefined,
      rejection: undefined,
      waiting: 0,
      wake: new Set(),
      reported: false,
      transientFailures: 0,
      parked: false,
      identityGeneration: this.client.identityGeneration,
      settled: undefined,
    };
    this.#writes.set(id, write);
    room.writes.add(write);
    this.#reportPending();
    return write;
  }

  #unregister(write: PendingWrite): void {
    if (this.#writes.get(write.id) === write) this.#writes.delete(write.id);
    this.#liveTransactions.delete(write.id);
    const room = write.room;
    room.writes.delete(write);
    if (room.writes.size === 0 && this.#rooms.get(room.key) === room) {
      room.release?.();
      this.#rooms.delete(room.key);
    }
    this.#reportPending();
  }

  #roomFor(party: string, name: string): RoomState {
    const key = roomKey(party, name);
    let room = this.#rooms.get(key);
    if (!room) {
      room = {
        key,
        party,
        room: name,
        writes: new Set(),
        generation: 0,
        inFlight: new Map(),
        inFlightClientId: undefined,
        gap: undefined,
        release: undefined,
        sending: false,
        again: false,
      };
      this.#rooms.set(key, room);
      // Writes keep the room's socket open (and open it) until they settle.
      if (!this.#disposed) room.release = this.client.retainRoom(name, party);
    }
    return room;
  }

  #reportPending(): void {
    if (!this.#disposed) this.client.reportPendingWrites(this.pendingCount);
  }

  /** The coded error of a permanently rejected write; reported once, before the rollback that follows. */
  #rejectionOf(write: PendingWrite, body: ErrorBody): LunoraError {
    const error = write.dropped ?? LunoraError.fromBody(body);
    write.rejection = error;
    this.#report(write, error);
    return error;
  }

  #report(write: PendingWrite, error: LunoraError): void {
    if (write.reported) return;
    write.reported = true;
    this.#emitRejected(write.meta, error);
  }

  #emitRejected(meta: WriteMetadata, error: LunoraError): void {
    this.#rejected.emit({
      collection: meta.collection ?? meta.name,
      row: meta.row,
      error,
      code: error.code,
      mutator: meta.name,
      args: meta.args,
    });
  }

  #guardStorage(storage: StorageAdapter): StorageAdapter {
    const guard =
      <A extends unknown[], R>(operation: (...args: A) => Promise<R>, options: { swallow?: R; resets?: boolean } = {}) =>
      async (...args: A): Promise<R> => {
        try {
          const result = await operation(...args);
          if (options.resets) this.#lastStorageFailure = undefined;
          return result;
        } catch (error) {
          this.#reportStorageFailure(error);
          if ("swallow" in options) return options.swallow as R;
          throw error;
        }
      };
    return {
      get: guard((key: string) => storage.get(key)),
      set: guard((key: string, value: string) => storage.set(key, value), { resets: true }),
      // A record that cannot be deleted is replayed after a reload and answered from the room's stored outcome.
      delete: guard((key: string) => storage.delete(key), { swallow: undefined }),
      keys: guard(() => storage.keys()),
      clear: guard(() => storage.clear()),
    };
  }

  #reportStorageFailure(error: unknown): void {
    const code = storageFailureCode(error);
    if (this.#lastStorageFailure === code) return; // once per streak, not once per write
    this.#lastStorageFailure = code;
    const message = error instanceof Error ? error.message : String(error);
    this.#storageFailures.emit({
      code,
      message: `the write outbox could not use its storage (${message}); writes still go out online but will not survive a reload`,
    });
  }
}

/**
 * Adds a record to the durable queue and runs the queue. This is
 * `OfflineExecutor.persistTransaction`, the step `createOfflineTransaction`
 * performs inside its own mutationFn; it is private in
 * `@tanstack/offline-transactions` 1.0.53. Lunora calls it directly because
 * the public path decides "durable or not" when the transaction is *created*
 * (before the executor has initialised, every write would silently be
 * non-durable) and stamps `createdAt` itself (ties of one millisecond would
 * then reorder writes of one room after a reload).
 */
async function persistOfflineTransaction(executor: OfflineExecutor, record: OfflineTransaction, onStored: () => void): Promise<void> {
  // The same steps as the private `persistTransaction` (wait for init, add to
  // the outbox, run the queue), split so the caller learns when the record is
  // in storage: running the queue can take as long as the network is away.
  const inner = executor as unknown as {
    initPromise: Promise<void>;
    isOfflineEnabled: boolean;
    outbox?: { add(record: OfflineTransaction): Promise<void> };
    executor?: { execute(record: OfflineTransaction): Promise<void> };
    resolveTransaction(id: string, result: unknown): void;
  };
  await inner.initPromise;
  if (!inner.isOfflineEnabled || !inner.outbox || !inner.executor) {
    inner.resolveTransaction(record.id, undefined);
    onStored();
    return;
  }
  await inner.outbox.add(record);
  onStored();
  await inner.executor.execute(record);
}

/**
 * Resolves the completion a live write's transaction waits on, without the
 * rest of `OfflineExecutor.resolveTransaction` (which would also clean up the
 * restoration overlay of that id — the overlay parking just registered).
 * The map is private in `@tanstack/offline-transactions` 1.0.53.
 */
function releaseLiveTransaction(executor: OfflineExecutor, id: string): void {
  const pending = (executor as unknown as { pendingTransactionPromises: Map<string, { resolve(value: unknown): void }> })
    .pendingTransactionPromises;
  pending.get(id)?.resolve(undefined);
  pending.delete(id);
}

function ephemeralWriter(identity: string): Writer {
  return { identity, clientId: crypto.randomUUID(), seqs: new Map(), durable: false, dirty: false };
}

function writerKey(identity: string): string {
  return `lunora:writer:${identity}`;
}

function identityChanged(): LunoraError {
  return new LunoraError("IDENTITY_CHANGED", "the write was queued under another identity and is not sent under this one");
}

function wake(write: PendingWrite): void {
  const waiters = [...write.wake];
  write.wake.clear();
  for (const resolve of waiters) resolve();
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
