import type { QueryCache } from "../cache/query-cache.js";
import type { OutboxPersistence } from "../outbox/persistence.js";
import {
  LunoraError,
  type AnyLunoraApi,
  type LunoraApi,
  type MutationResult,
  type Push,
} from "../protocol/index.js";
import { encodeFrame } from "../protocol/index.js";
import { fingerprinter, readToken, type AuthProvider, type IdentifyToken } from "./identity.js";
import { Listeners } from "./listeners.js";
import { assertRoomName, isSource } from "./room-name.js";
import { RoomConnection } from "./room-connection.js";
import { aggregateStatus, type ConnectionStatus } from "./status.js";
import type { SubscribeOptions, Subscription } from "./subscription.js";

/** Options of {@link LunoraClient}. */
export interface LunoraClientOptions {
  /**
   * Where the Worker runs, in partysocket's host form: `"127.0.0.1:8787"` or
   * `"https://my-app.workers.dev"`. Loopback and private addresses default to
   * `ws:`, anything else to `wss:`.
   */
  host: string;
  /** The party (Durable Object binding name as routed by `routeLunoraRequest`). URLs are `/parties/:party/:room`. */
  party: string;
  /**
   * The token sent as the `token` query parameter. A function is called before
   * every connection attempt, so a refreshed token is used on reconnect
   * (including after the room closed the socket with 4001).
   */
  auth?: AuthProvider;
  /**
   * Names the user a token belongs to (e.g. the `sub` claim of a JWT), so a
   * token refresh is not an identity change. Without it every distinct token
   * is its own identity: a refreshed token clears cached reads, resets synced
   * rows and drops queued writes (`IDENTITY_CHANGED`).
   *
   * @example
   * ```ts
   * identify: (token) => JSON.parse(atob(token.split(".")[1])).sub
   * ```
   */
  identify?: IdentifyToken;
  /**
   * The WebSocket class. Required in Node 20, which has no global WebSocket:
   * pass `WebSocket` from `ws`. Without it partysocket logs an error and never
   * opens — it does not throw.
   */
  WebSocket?: unknown;
  /** Overrides the scheme partysocket derives from `host`. */
  protocol?: "ws" | "wss";
  /**
   * Reconnect backoff. The wait before retry `n` after a drop is drawn
   * uniformly below `min(maxDelayMs, minDelayMs · 1.3^(n-1))` ("full
   * jitter"), so the clients a restarted room dropped do not come back in
   * lockstep. Defaults: 250 ms and 10 s. `random` (values in `[0, 1)`,
   * default `Math.random`) is there for deterministic tests.
   */
  reconnect?: { minDelayMs?: number; maxDelayMs?: number; random?: () => number };
  /**
   * How long a connection attempt may take to open before it is abandoned
   * and retried with backoff (default 4 s). Raise it for slow mobile
   * networks; lower it to fail over faster.
   */
  connectTimeoutMs?: number;
  /** Keepalive interval (default 25 s); `0` turns keepalive off. */
  pingIntervalMs?: number;
  /**
   * Bounds of the poke being reassembled (defaults: 512 Mi characters of
   * frame text, 8,000,000 ops — a snapshot of a 1M-row shape fits). A poke over them is dropped and its subscriptions reset, reported as
   * `QUOTA_EXCEEDED`.
   */
  limits?: { maxPokeChars?: number; maxPokeOps?: number };
  /**
   * Offline read cache (`createIndexedDbQueryCache()` / `createInMemoryQueryCache()`):
   * collections render their cached rows before any socket opens, then
   * resume from the cached cursor. Entries of another identity are never read
   * and are cleared. One cache per client.
   */
  queryCache?: QueryCache;
  /**
   * Where the durable write outbox lives: `createIndexedDbPersistence()`
   * (the default) or `createInMemoryPersistence()`. Read by
   * `defineCollections` and `bindMutators`.
   */
  persistence?: OutboxPersistence;
}

/** Where a client-level error happened. */
export interface ClientErrorContext {
  party: string;
  room: string;
}

/**
 * Subscriptions one client may hold at once. Each costs a map entry here and
 * live state in a room; a leak of subscriptions (a collection created per
 * render, never cleaned up) should fail loudly long before memory does.
 */
export const MAX_SUBSCRIPTIONS_PER_CLIENT = 1_000;

// Exported from here, where it lived before the connection applied the options.
export { MAX_ENQUEUED_MESSAGES } from "./room-connection.js";

/**
 * The transport of Lunora DB: one `partysocket` per room, opened when the
 * room's first subscription appears and closed with its last one. It resumes
 * every subscription from its cursor on reconnect, validates every frame the
 * room sends, and applies each poke atomically.
 *
 * `Api` is type-only (see `InferLunoraApi` in the server-kit): it lets
 * `lunoraCollectionOptions({ client, list: "messages" })` infer row types.
 *
 * @example
 * ```ts
 * import { WebSocket } from "ws"; // Node only; browsers have a global WebSocket
 * import { LunoraClient } from "@lunora/db";
 *
 * const client = new LunoraClient<ChatApi>({
 *   host: "127.0.0.1:8787",
 *   party: "chat-room",
 *   auth: async () => (await getSession())?.token,
 *   WebSocket,
 * });
 * client.onStatusChange((status) => console.log(status)); // "connecting", "connected", …
 * client.onError((error, { room }) => console.warn(room, error.code, error.message));
 * ```
 */
export class LunoraClient<Api extends LunoraApi = AnyLunoraApi> {
  /** Type carrier for `Api`; never set at runtime. */
  declare readonly "~api"?: Api;

  /** Identifies this client's writes to rooms (random per instance for now). */
  readonly clientId: string;
  readonly host: string;
  readonly party: string;
  readonly queryCache: QueryCache | undefined;
  readonly persistence: OutboxPersistence | undefined;

  readonly #options: LunoraClientOptions;
  readonly #connections = new Map<string, RoomConnection>();
  readonly #statusListeners = new Listeners<[status: ConnectionStatus, previous: ConnectionStatus]>();
  readonly #roomStatusListeners = new Listeners<[room: string, status: ConnectionStatus, party: string]>();
  readonly #errorListeners = new Listeners<[error: LunoraError, context: ClientErrorContext]>();
  readonly #mutationListeners = new Listeners<[room: string, results: MutationResult[], party: string]>();
  readonly #identityListeners = new Listeners<[identity: string]>();
  #identityGeneration = 0;
  /**
   * Settles once the listeners of every identity change noted so far are done
   * (the outbox has dropped and rolled back the old identity's writes).
   * `refreshAuth()` waits for it even when a connection attempt noticed the
   * switch first: that attempt announces it without waiting.
   */
  #identityListenersDone: Promise<void> = Promise.resolve();
  /** The identity `refreshAuth()` saw last (initially: the one the client started as). */
  #lastIdentity: string | undefined;
  #initialIdentity: Promise<string | undefined> | undefined;
  readonly #pendingWritesListeners = new Listeners<[count: number]>();
  readonly #closeListeners = new Listeners<[]>();
  #pendingWrites = 0;
  #status: ConnectionStatus = "idle";
  #subscriptionCount = 0;
  #nextSubscriptionId = 0;
  #closed = false;
  /** The identity of a token, the last one's remembered (see `fingerprinter`). */
  readonly #fingerprint: (token: string | undefined) => Promise<string>;

  constructor(options: LunoraClientOptions) {
    if (typeof options?.host !== "string" || options.host.length === 0) {
      throw new LunoraError("INVALID_ARGS", "LunoraClient: `host` is required");
    }
    assertRoomName("party", options.party);
    this.#options = options;
    this.#fingerprint = fingerprinter(options.identify);
    this.host = options.host;
    this.party = options.party;
    this.queryCache = options.queryCache;
    this.persistence = options.persistence;
    this.clientId = crypto.randomUUID();
    // Start resolving the identity and opening storage now: the first
    // collection's hydration waits for both, and must not wait long.
    this.queryCache?.attach(() => this.identity());
    // The identity this client starts as: `refreshAuth()` compares with it
    // even before any socket has connected.
    this.#initialIdentity = this.identity().catch(() => undefined);
    void this.#initialIdentity.then((identity) => {
      this.#lastIdentity ??= identity;
    });
    this.#watchBrowserConnectivity();
  }

  #forgetConnectivity: (() => void) | undefined;

  /**
   * Browsers know when the network comes back before a socket's backoff
   * does: on `online` every room reconnects at once instead of waiting up to
   * `maxDelayMs`; on `offline` the sockets (which Chromium may keep "open"
   * with the network gone) are dropped so the status says `offline` now.
   */
  #watchBrowserConnectivity(): void {
    const target = (globalThis as { window?: EventTarget }).window;
    if (!target || typeof target.addEventListener !== "function") return;
    const online = () => {
      for (const connection of this.#connections.values()) if (connection.status !== "connected") connection.reconnect();
    };
    const offline = () => {
      for (const connection of this.#connections.values()) connection.reconnect();
    };
    target.addEventListener("online", online);
    target.addEventListener("offline", offline);
    this.#forgetConnectivity = () => {
      target.removeEventListener("online", online);
      target.removeEventListener("offline", offline);
    };
  }

  /**
   * Aggregate status: `idle` (no rooms), else the worst room status, not
   * counting rooms that refuse this client's token (or whose `auth()`
   * throws) while another room works — those are reported through {@link onError} and
   * {@link roomStatus}. Read synchronously.
   */
  get status(): ConnectionStatus {
    return this.#status;
  }

  /** Status of one room's socket; `idle` when the client holds no subscription in it. */
  roomStatus(room: string, party: string = this.party): ConnectionStatus {
    return this.#connections.get(connectionKey(party, room))?.status ?? "idle";
  }

  /**
   * Calls `listener` whenever the aggregate status changes (never with an
   * unchanged value). Returns a function that removes it.
   *
   * @example
   * ```ts
   * const stop = client.onStatusChange((status) => setBanner(status === "offline"));
   * ```
   */
  onStatusChange(listener: (status: ConnectionStatus, previous: ConnectionStatus) => void): () => void {
    return this.#statusListeners.add(listener);
  }

  /**
   * Calls `listener` whenever one room's status changes (`idle` when the
   * client stops holding the room). Returns a function that removes it.
   *
   * @example
   * ```ts
   * const stop = client.onRoomStatusChange((room, status) => console.log(room, status));
   * ```
   */
  /**
   * Calls `listener` when the client notices that its token names another
   * identity than the one its sockets were opened with (on `refreshAuth()` or
   * on a reconnect). The outbox drops the old identity's queued writes then.
   */
  /**
   * How many identity changes this client has noticed. Read synchronously:
   * a write remembers it at creation, so a write made under one identity is
   * never sent under the next even before the new identity is resolved.
   */
  get identityGeneration(): number {
    return this.#identityGeneration;
  }

  onIdentityChange(listener: (identity: string) => void | Promise<void>): () => void {
    return this.#identityListeners.add(listener);
  }

  onRoomStatusChange(listener: (room: string, status: ConnectionStatus, party: string) => void): () => void {
    return this.#roomStatusListeners.add(listener);
  }

  /**
   * Errors that concern a room rather than one subscription: malformed frames
   * (`PROTOCOL_ERROR`), a refused token (`UNAUTHENTICATED`), a room speaking
   * another protocol version (`PROTOCOL_VERSION_MISMATCH`), a poke over the
   * client's bounds (`QUOTA_EXCEEDED`). Subscription errors go to that
   * subscription's handler instead.
   *
   * @example
   * ```ts
   * client.onError((error, { room }) => {
   *   if (error.code === "UNAUTHENTICATED") router.push("/login");
   * });
   * ```
   */
  onError(listener: (error: LunoraError, context: ClientErrorContext) => void): () => void {
    return this.#errorListeners.add(listener);
  }

  /**
   * Mutation outcomes carried by a poke, delivered right after the poke's rows
   * were handed to its subscriptions (so a write is never confirmed before
   * its data is in). Used by the write path.
   *
   * @example
   * ```ts
   * client.onMutationResults((room, results) => {
   *   for (const r of results) console.log(room, r.clientSeq, r.status);
   * });
   * ```
   */
  onMutationResults(listener: (room: string, results: MutationResult[], party: string) => void): () => void {
    return this.#mutationListeners.add(listener);
  }

  /**
   * Starts a subscription in `room`, opening the room's socket if needed.
   * Collections call this; apps rarely need to.
   *
   * Throws `INVALID_ARGS` for a bad room name or source, `QUOTA_EXCEEDED`
   * past {@link MAX_SUBSCRIPTIONS_PER_CLIENT}.
   *
   * @example
   * ```ts
   * let cursor: Cursor | undefined;
   * const sub = client.subscribe({
   *   room: "general",
   *   source: { list: "messages" },
   *   handler: {
   *     cursor: () => cursor,
   *     // ops: { op: "put", key, row } | { op: "patch", key, row } (the key
   *     // column and the changed columns: merge into the held row) | { op: "del", key }
   *     applyPoke: ({ reset, ops, cursor: next }) => { apply(reset, ops); cursor = next; },
   *     onError: (error) => console.warn(error.code),
   *   },
   * });
   * // later
   * sub.unsubscribe();
   * ```
   */
  subscribe(options: SubscribeOptions): Subscription {
    if (this.#closed) throw new LunoraError("INVALID_ARGS", "LunoraClient: subscribe() after close()");
    const party = options.party ?? this.party;
    assertRoomName("room", options.room);
    assertRoomName("party", party);
    if (!isSource(options.source)) {
      throw new LunoraError("INVALID_ARGS", "subscribe: `source` must be { list } or { shape, args? } with names of 1–128 characters");
    }
    // Only the envelope: what is inside (the predicate, the limit, its
    // columns) is checked by the room, as for a handler's `subset()`, and a
    // bad one is an INVALID_ARGS error on this subscription.
    if (options.subset !== undefined && !isSubsetEnvelope(options.subset)) {
      throw new LunoraError("INVALID_ARGS", "subscribe: `subset` must be { where?, limit? }");
    }
    if (this.#subscriptionCount >= MAX_SUBSCRIPTIONS_PER_CLIENT) {
      throw new LunoraError("QUOTA_EXCEEDED", `a client holds at most ${MAX_SUBSCRIPTIONS_PER_CLIENT} subscriptions`, {
        max: MAX_SUBSCRIPTIONS_PER_CLIENT,
      });
    }

    const id = `s${(this.#nextSubscriptionId++).toString(36)}`;
    const connection = this.#connectionFor(party, options.room, (opened) => {
      this.#subscriptionCount++;
      opened.add(id, options.source, options.handler, options.subset);
    });
    this.#updateStatus();

    let active = true;
    return {
      id,
      room: options.room,
      party,
      unsubscribe: () => {
        if (!active) return;
        active = false;
        this.#subscriptionCount--;
        connection.remove(id);
        this.#closeIfUnused(connection);
      },
      resubscribe: () => {
        if (active) connection.resubscribe(id, { reset: false });
      },
    };
  }

  /**
   * The identity fingerprint of the current token: SHA-256 hex, or
   * `"anonymous"` without a token. Cached rows and queued writes are stamped
   * with it so another identity never sees them.
   *
   * @example
   * ```ts
   * const who = await client.identity(); // "anonymous" or "9f86d08…"
   * ```
   */
  async identity(): Promise<string> {
    return this.#fingerprint(await readToken(this.#options.auth));
  }

  /**
   * Re-reads the token now. If it names another identity than the one a
   * room's socket was opened with (sign-in, sign-out, switch of account),
   * that socket reconnects: its collections drop the old identity's rows at
   * once and receive a fresh snapshot; queued writes of the old identity are
   * dropped (`IDENTITY_CHANGED`). A token refresh of the same identity (see
   * `identify`) changes nothing. Call it after the app's session changes.
   * It resolves once the old identity's queued writes are rolled back (off
   * screen), also when a reconnect noticed the new token first.
   *
   * @example
   * ```ts
   * await signIn(user);
   * await client.refreshAuth();
   * ```
   */
  async refreshAuth(): Promise<void> {
    if (this.#lastIdentity === undefined) this.#lastIdentity = await this.#initialIdentity;
    const identity = await this.identity();
    await this.#noteIdentity(identity);
  }

  /**
   * Every identity the client acts under passes here (refreshAuth, and each
   * connection attempt with the token it read). On a change, listeners —
   * collections holding rows of the old identity, the outbox holding its
   * writes — are told synchronously, before the new connection sends
   * anything.
   */
  #noteIdentity(identity: string): Promise<void> {
    const previous = this.#lastIdentity;
    this.#lastIdentity = identity;
    // A cache whose start-up identity lookup failed (auth() rejected while
    // offline) opens now instead of staying off for the session; no-op once open.
    this.queryCache?.attach(() => this.identity(), identity);
    // Sockets still open under another identity would keep delivering its rows.
    for (const connection of this.#connections.values()) connection.switchIdentity(identity);
    // Already noted (a connection attempt read the new token first): wait for
    // what that announcement started, not for nothing.
    if (previous === undefined || previous === identity) return this.#identityListenersDone;
    this.#identityGeneration++;
    const done = Promise.all([this.#identityListenersDone, this.#identityListeners.emitAndWait(identity)]).then(() => undefined);
    this.#identityListenersDone = done;
    return done;
  }

  /**
   * Closes every socket and forgets every subscription, disposes the write
   * outbox built on this client (queued writes stay in storage for the next
   * session) and closes the query cache after writing what is pending. The
   * client cannot be used afterwards.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Writers built on this client (the outbox) stop with it.
    this.#closeListeners.emit();
    this.#closeListeners.clear();
    // Best effort: what the collections synced last is written, not lost with
    // the timer; then storage and the page-hide listeners are released.
    void this.queryCache?.close();
    for (const connection of this.#connections.values()) connection.close();
    this.#connections.clear();
    this.#subscriptionCount = 0;
    this.#updateStatus();
    this.#statusListeners.clear();
    this.#roomStatusListeners.clear();
    this.#errorListeners.clear();
    this.#mutationListeners.clear();
    this.#identityListeners.clear();
    this.#forgetConnectivity?.();
    this.#pendingWritesListeners.clear();
  }

  /**
   * @internal Calls `listener` once when {@link close} runs: the write
   * outbox disposes its executor then. Returns a function that removes it.
   */
  onClose(listener: () => void): () => void {
    if (this.#closed) {
      listener();
      return () => undefined;
    }
    return this.#closeListeners.add(listener);
  }

  /**
   * Sends a batch of writes on `room`'s socket. Returns `false` when the
   * socket is not connected — including when the client holds no socket in
   * that room: `push` never opens one (nothing would ever close it); hold
   * the room with {@link retainRoom} first. Nothing is queued in
   * partysocket: the caller (the outbox) sends again when
   * {@link onRoomStatusChange} reports the room `connected`.
   *
   * @example
   * ```ts
   * const sent = client.push("general", { clientId, mutations: [{ clientSeq: 1, name: "messages:send", args }] });
   * ```
   */
  push(room: string, push: Omit<Push, "type">, party: string = this.party): boolean {
    if (this.#closed) return false;
    assertRoomName("room", room);
    assertRoomName("party", party);
    const connection = this.#connections.get(connectionKey(party, room));
    if (connection?.status !== "connected") return false;
    return connection.sendFrame(encodeFrame({ type: "push", clientId: push.clientId, mutations: push.mutations }));
  }

  /**
   * Keeps `room`'s socket open (opening it now) until the returned function
   * is called, whether or not anything is subscribed there. The outbox holds
   * a room while it has writes pending for it.
   */
  retainRoom(room: string, party: string = this.party): () => void {
    if (this.#closed) return () => undefined;
    assertRoomName("room", room);
    assertRoomName("party", party);
    const connection = this.#connectionFor(party, room, (opened) => opened.holds++);
    this.#updateStatus();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      connection.holds--;
      this.#closeIfUnused(connection);
    };
  }

  /**
   * Identity fingerprint of the token presented by `room`'s current socket
   * (`undefined` before a connection attempt). The outbox compares it with
   * the identity a write was queued under before sending.
   */
  async roomIdentity(room: string, party: string = this.party): Promise<string | undefined> {
    const connection = this.#connections.get(connectionKey(party, room));
    // An attempt that presented a token has its fingerprint (both are set together).
    return connection?.tokenPresented ? connection.presentedIdentity : undefined;
  }

  /** Drops and reopens `room`'s socket (a new connection reads the token again). */
  reconnectRoom(room: string, party: string = this.party): void {
    this.#connections.get(connectionKey(party, room))?.reconnect();
  }

  /**
   * Writes queued in the durable outbox and not yet settled (applied or
   * rejected by the room). Read synchronously.
   */
  get pendingWrites(): number {
    return this.#pendingWrites;
  }

  /**
   * Calls `listener` whenever {@link pendingWrites} changes. Returns a
   * function that removes it.
   *
   * @example
   * ```ts
   * const stop = client.onPendingWritesChange((count) => setBadge(count > 0 ? `${count} unsaved` : ""));
   * ```
   */
  onPendingWritesChange(listener: (count: number) => void): () => void {
    return this.#pendingWritesListeners.add(listener);
  }

  /** @internal Called by the outbox. */
  reportPendingWrites(count: number): void {
    if (count === this.#pendingWrites) return;
    this.#pendingWrites = count;
    this.#pendingWritesListeners.emit(count);
  }

  /**
   * The room's connection, opened if there is none, after `use` (a
   * subscription or a hold) is registered on it: a new room's first status
   * is emitted only then, so a listener that takes and drops a hold of its
   * own on it does not close the room this use is opening.
   */
  #connectionFor(party: string, room: string, use: (connection: RoomConnection) => void): RoomConnection {
    const key = connectionKey(party, room);
    const existing = this.#connections.get(key);
    const connection = existing ?? this.#openConnection(party, room);
    if (!existing) this.#connections.set(key, connection);
    use(connection);
    if (!existing) this.#roomStatusListeners.emit(room, connection.status, party);
    return connection;
  }

  #closeIfUnused(connection: RoomConnection): void {
    if (connection.subscriptionCount > 0 || connection.holds > 0) return;
    const key = connectionKey(connection.party, connection.room);
    connection.close();
    if (this.#connections.get(key) === connection) this.#connections.delete(key);
    this.#roomStatusListeners.emit(connection.room, "idle", connection.party);
    this.#updateStatus();
  }

  #openConnection(party: string, room: string): RoomConnection {
    return new RoomConnection({
      client: this.#options,
      party,
      room,
      clientId: this.clientId,
      fingerprint: this.#fingerprint,
      onIdentity: (identity) => void this.#noteIdentity(identity),
      onStatusChange: () => {
        const connection = this.#connections.get(connectionKey(party, room));
        if (connection) this.#roomStatusListeners.emit(room, connection.status, party);
        this.#updateStatus();
      },
      onError: (error) => this.#errorListeners.emit(error, { party, room }),
      onMutationResults: (results) => this.#mutationListeners.emit(room, results, party),
    });
  }

  #updateStatus(): void {
    const previous = this.#status;
    const next = aggregateStatus(this.#connections.values());
    if (next === previous) return;
    this.#status = next;
    this.#statusListeners.emit(next, previous);
  }
}

/** An object whose keys are among `where` and `limit` (the shape of the protocol's `Subset`). */
function isSubsetEnvelope(subset: unknown): boolean {
  return typeof subset === "object" && subset !== null && !Array.isArray(subset) && Object.keys(subset).every((key) => key === "where" || key === "limit");
}

function connectionKey(party: string, room: string): string {
  return JSON.stringify([party, room]);
}
