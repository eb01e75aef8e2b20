import {
  ACK_EVERY_CHARS,
  CLOSE_CODES,
  LunoraError,
  MAX_INBOUND_FRAME_BYTES,
  PING,
  PONG,
  PROTOCOL_VERSION,
  parseClientFrame,
  type ClientFrame,
  type MutationResult,
  type ResolvedSubset,
  type Subscribe,
  type Subset,
} from "../src/protocol/index.js";
import {
  coalesceLog,
  installCaptureTriggers,
  installLogTables,
  maxLogSeq,
  readLog,
  readMeta,
  readTableInfo,
  trimLog,
  writeMeta,
  LOG_TABLE,
  type KeyChange,
  type TableInfo,
} from "./change-log.js";
import type { LunoraOptions, ShapeDefinition, TableDefinition } from "./definitions.js";
import {
  MAX_ATTACHMENT_BYTES,
  attachmentSize,
  closeQuietly,
  errorFrame,
  newSocketState,
  readAttachment,
  sourceName,
  toLunoraError,
  type SocketAttachment,
  type SocketState,
  type StoredSubscription,
} from "./socket-state.js";
import { SocketOutput } from "./socket-output.js";
import { InitialPokes, type LogPosition } from "./initial-pokes.js";
import { fanOut, sendOutcomesOnly } from "./fan-out.js";
import { GroupRegistry } from "./groups.js";
import { validateWithSchema } from "./validate.js";
import { admitSocket } from "./handshake.js";
import { isSyncUpgrade, parsePartyPath } from "./route.js";
import { LunoraDb } from "./db.js";
import { checkArgsBounds, resolveSubscription, type ResolvedSubscription } from "./subscriptions.js";
import { parseSubset, planLimit, resolveLimitedSubset, type LimitPlan } from "./subsets.js";
import { installWatermarkTables, type ServerMutatorDefinition } from "./mutators.js";
import { PushQueue } from "./pushes.js";

/** Tag of every hibernatable socket Lunora accepts; other sockets belong to the room's own code. */
export const SYNC_SOCKET_TAG = "lunora";

const DEFAULTS = {
  maxRows: 100_000,
  maxAgeMs: 7 * 24 * 60 * 60 * 1000,
  sweepEvery: 1_000,
  batch: 10_000,
  maxSubscriptionsPerSocket: 100,
  maxResumeLogRows: 100_000,
  maxProtocolErrors: 100,
  maxUnackedChars: 8 * 1024 * 1024,
};

/**
 * The sync engine of one Durable Object: change capture, subscriptions,
 * pokes. `withLunora` creates one per object instance; everything it keeps in
 * memory is a cache of what is in SQLite or in socket attachments, so a
 * hibernated object resumes exactly where it was.
 *
 * It orchestrates; the concerns live beside it: output to sockets and their
 * attachments (socket-output.ts), how a subscription starts — resume or
 * streamed snapshot (initial-pokes.ts, snapshots.ts) —, what a flush sends
 * (fan-out.ts), resolving subscriptions and subsets (subscriptions.ts,
 * subsets.ts), and pushes (pushes.ts).
 */
export class SyncRoom<Auth = unknown, Env = unknown> {
  private readonly sql: SqlStorage;
  private readonly tableDefs: Map<string, TableDefinition>;
  private readonly shapeDefs: Map<string, ShapeDefinition>;
  private readonly sockets = new WeakMap<WebSocket, SocketState>();
  private tables = new Map<string, TableInfo>();
  private keys = new Map<string, string>();
  /** Per synced table, the log seq at which its columns last changed (see `refreshSchema`). */
  private schemaSeqs = new Map<string, number>();
  private ready = false;
  private epochValue = "";
  private flushedSeq = 0;
  private trimmedThrough = 0;
  private rowsSinceSweep = 0;
  private flushScheduled = false;
  /**
   * Counters for tests and benchmarks (per object instance, reset on wake).
   * `pokeFramesBuilt` counts the poke frames flushes built — once per
   * distinct set of changed groups, however many sockets read it —,
   * `pokeFramesSent` every poke frame sent to a socket.
   */
  readonly stats = { flushes: 0, socketStatesRebuilt: 0, pokeFramesBuilt: 0, pokeFramesSent: 0, slowConsumersClosed: 0 };
  /**
   * Group id → the group definition it stands for, for the subscriptions
   * served now (see groups.ts): no two groups ever share an id, hence
   * frames. Rebuilt as sockets are, after a wake. Public for tests (its
   * `idOf` can be replaced to force a collision), not a supported API.
   */
  readonly groups = new GroupRegistry(() => this.liveGroupIds());
  /** Every frame to a sync socket goes through it (flow control, attachments). */
  private readonly out: SocketOutput;
  /** Resumes and streamed snapshots: how subscriptions start. */
  private readonly initialPokes: InitialPokes;
  /** Pushes are applied one batch at a time, in arrival order, across all sockets. */
  private readonly pushes: PushQueue<Env>;

  /**
   * Row helpers over the synced tables for the room's own code. Writes made
   * through it are flushed to subscribers at the end of the current task, even
   * from RPC methods or timers that `withLunora` does not wrap.
   */
  readonly db: LunoraDb;

  constructor(
    readonly ctx: DurableObjectState,
    readonly env: Env,
    readonly options: LunoraOptions<Auth, Env>,
  ) {
    this.sql = ctx.storage.sql;
    this.tableDefs = new Map(Object.entries(options.tables));
    this.shapeDefs = new Map(Object.entries(options.shapes ?? {}));
    this.db = new LunoraDb(this.sql, (table) => this.syncedTableInfo(table), () => this.scheduleFlush());
    this.trackTransactions(ctx.storage);
    const limits = options.limits ?? {};
    this.out = new SocketOutput(
      { maxUnackedChars: limits.maxUnackedChars ?? DEFAULTS.maxUnackedChars, maxProtocolErrors: limits.maxProtocolErrors ?? DEFAULTS.maxProtocolErrors },
      this.stats,
      (ws) => this.sockets.delete(ws),
    );
    this.initialPokes = new InitialPokes(() => this.logPosition(), this.out, limits.maxResumeLogRows ?? DEFAULTS.maxResumeLogRows);
    this.pushes = new PushQueue({
      sql: this.sql,
      storage: ctx.storage,
      mutators: (options.mutators ?? {}) as Record<string, ServerMutatorDefinition>,
      env,
      db: this.db,
      flush: (outcomes) => this.flush(outcomes),
    });
    // Keepalive pings are answered by the runtime without waking the object.
    // Kept if the room's own code already set an auto-response.
    if (ctx.getWebSocketAutoResponse() === null) {
      ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
    }
  }

  /** The current epoch: the name of this room's change-log history. */
  get epoch(): string {
    this.ensureReady();
    return this.epochValue;
  }

  /** Highest log seq already sent to subscribers. */
  get cursorSeq(): number {
    this.ensureReady();
    return this.flushedSeq;
  }

  /**
   * Installs the log and the capture triggers on first use (not in the
   * constructor: it reruns on every wake, and the room's own constructor may
   * create its tables after ours runs). Re-checks table columns so a migration
   * that adds a column re-installs the triggers.
   */
  ensureReady(): void {
    if (this.ready) return;
    installLogTables(this.sql);
    installWatermarkTables(this.sql);
    let epoch = readMeta(this.sql, "epoch");
    if (epoch === undefined) {
      epoch = crypto.randomUUID();
      writeMeta(this.sql, "epoch", epoch);
    }
    this.epochValue = epoch;
    const flushed = readMeta(this.sql, "flushed_seq");
    this.flushedSeq = Number(flushed ?? maxLogSeq(this.sql));
    // Stored from the start: `flush` compares it with what it published.
    if (flushed === undefined) writeMeta(this.sql, "flushed_seq", this.flushedSeq);
    this.trimmedThrough = Number(readMeta(this.sql, "trimmed_through") ?? 0);
    this.readSchema();
    this.ready = true;
  }

  /**
   * Re-reads synced tables' columns and re-installs triggers where they
   * changed. Call after a migration. Live subscriptions whose projection
   * follows the table's columns are bound again to what they read now, with a
   * reset (a socket with a snapshot streaming is closed with 4010 and resumes).
   * Inside an async `ctx.storage.transaction`, it runs when the outermost
   * transaction has ended (and finds nothing to do if it rolled back).
   *
   * ```ts
   * await this.ctx.storage.transaction(async () => {
   *   this.ctx.storage.sql.exec(`ALTER TABLE messages ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0`);
   *   this.lunora.refreshSchema(); // takes effect at commit
   * });
   * ```
   */
  refreshSchema(): void {
    this.ensureReady();
    if (this.openTransactions > 0) {
      // Called inside the room's own `ctx.storage.transaction(async …)` (how
      // migrations are often written): the columns it would read, and the
      // snapshots it would send, are not committed and may roll back. So it
      // runs when the outermost transaction has ended, against what
      // committed: nothing at all if it rolled back.
      this.schemaRefreshPending = true;
      return;
    }
    if (this.readSchema()) this.rebindLiveSubscriptions();
  }

  /** `refreshSchema()` was called inside an async transaction: it runs when the outermost one ends. */
  private schemaRefreshPending = false;

  /** Reads the synced tables' columns; returns whether a known table's columns changed. */
  private readSchema(): boolean {
    let changed = false;
    const tables = new Map<string, TableInfo>();
    for (const [name, def] of this.tableDefs) {
      const info = readTableInfo(this.sql, name, def.key);
      if (info === undefined) continue; // not created yet; checked again on the next refresh
      if (!info.columns.has(def.key)) throw new LunoraError("INTERNAL", `synced table "${name}" has no key column "${def.key}"`);
      // A projection without a column list follows the table's columns, and
      // no log row says a column appeared: a client whose cursor predates the
      // change holds rows without it, so it cannot resume from that cursor.
      const metaKey = `schema_seq:${name}`;
      if (installCaptureTriggers(this.sql, info)) {
        writeMeta(this.sql, metaKey, maxLogSeq(this.sql));
        changed ||= this.tables.has(name);
      }
      const schemaSeq = readMeta(this.sql, metaKey);
      if (schemaSeq !== undefined) this.schemaSeqs.set(name, Number(schemaSeq));
      tables.set(name, info);
    }
    this.tables = tables;
    this.keys = new Map([...tables].map(([name, info]) => [name, info.key]));
    return changed;
  }

  /**
   * After a column change: a subscription resolved before it keeps the old
   * projection in memory while its cursor moves past the change, and would
   * later resume into the new projection with rows lacking the new column.
   * So each one whose group changed is bound again now, with a reset (what
   * a wake does, see `socketState`).
   */
  private rebindLiveSubscriptions(): void {
    // Pages of the resets are read where every subscriber is.
    this.flush();
    for (const ws of this.ctx.getWebSockets(SYNC_SOCKET_TAG)) {
      const state = this.sockets.get(ws);
      if (state === undefined) continue; // rebuilt from its attachment when next used
      const rebound: ResolvedSubscription[] = [];
      for (const [id, sub] of state.subs) {
        const stored = state.stored.get(id)!;
        let resolved: ResolvedSubscription;
        try {
          resolved = this.resolveSubscription(id, stored.source, stored.args, state.attachment, stored.subset?.where);
          this.groups.register(resolved.group, resolved.groupId);
        } catch (error) {
          this.out.endSubscription(ws, state, id, error);
          continue;
        }
        if (resolved.groupId === sub.groupId) continue;
        state.subs.set(id, resolved);
        state.stored.set(id, { ...stored, group: resolved.groupId });
        rebound.push(resolved);
      }
      if (rebound.length === 0) continue;
      if (state.open) {
        // A poke of the old projection is half sent.
        closeQuietly(ws, CLOSE_CODES.INTERRUPTED, "schema changed");
        this.sockets.delete(ws);
        continue;
      }
      this.out.saveAttachment(ws, state);
      this.initialPokes.openSnapshot(ws, state, rebound, undefined, true);
    }
  }

  private syncedTableInfo(name: string): TableInfo {
    this.ensureReady();
    if (!this.tableDefs.has(name) || !Object.hasOwn(this.options.tables, name)) {
      throw new LunoraError("INVALID_ARGS", `"${String(name).slice(0, 64)}" is not a synced table; use ctx.sql for other tables`);
    }
    return this.tableInfo(name);
  }

  /** Async storage transactions of the room's code that have not committed or rolled back yet. */
  private openTransactions = 0;

  /**
   * A write inside `ctx.storage.transaction(async …)` is visible to this
   * connection before it commits, and any await inside the closure lets a
   * scheduled flush run: it would publish rows that may still roll back (and
   * the log's seq would then be reused under rows never sent). So the room
   * counts open async transactions and flushes when the outermost one ends.
   * (`transactionSync` needs nothing: nothing interleaves with it.)
   */
  private trackTransactions(storage: DurableObjectStorage): void {
    const original = storage.transaction;
    if (typeof original !== "function") return;
    const wrapped = async <T>(closure: (txn: DurableObjectTransaction) => Promise<T>): Promise<T> => {
      this.openTransactions++;
      let committed = false;
      try {
        const result = (await original.call(storage, closure)) as T;
        committed = true;
        return result;
      } finally {
        this.openTransactions--;
        if (this.openTransactions === 0) this.afterTransactions(committed);
      }
    };
    try {
      storage.transaction = wrapped as DurableObjectStorage["transaction"];
    } catch {
      // A runtime that forbids it still has the check in flush(): history that
      // went backwards is reset, never served with a gap.
    }
  }

  /**
   * The outermost async transaction ended (`committed` or rolled back):
   * what waited for it runs now, against what committed. A deferred
   * `refreshSchema()` re-reads the columns — after a rollback they are the
   * old ones and nothing is rebound — and flushes before it rebinds; a
   * deferred `resetEpoch()` flushes and starts the new epoch; otherwise a
   * flush is scheduled. A refresh that fails after a commit fails the
   * transaction's caller, as the refresh would have; after a rollback the
   * caller gets its own error and the failure is logged.
   */
  private afterTransactions(committed: boolean): void {
    const refresh = this.schemaRefreshPending;
    const reset = this.epochResetPending;
    this.schemaRefreshPending = false;
    this.epochResetPending = false;
    if (!refresh && !reset) return this.scheduleFlush();
    try {
      if (refresh) this.refreshSchema();
    } catch (error) {
      if (committed) throw error;
      console.error("lunora: refreshSchema() after a rolled-back transaction failed", error);
    } finally {
      if (reset) this.resetEpoch();
    }
  }

  /** Flushes once at the end of the current task (after a burst of `db` writes). */
  private scheduleFlush(): void {
    // While a push is applied its own flush carries the rows together with
    // the outcomes; an earlier flush would split them.
    if (this.flushScheduled || this.pushes.applying) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private tableInfo(name: string): TableInfo {
    let info = this.tables.get(name);
    if (info === undefined) {
      this.readSchema();
      info = this.tables.get(name);
    }
    if (info === undefined) throw new LunoraError("NOT_FOUND", `table "${name}" does not exist in this room yet`);
    return info;
  }

  // ---------------------------------------------------------------- sockets

  /**
   * The room's name: the name the object was addressed by (`idFromName`, as
   * `routeLunoraRequest` does), else its id. It comes from the runtime, never
   * from the request, so `ctx.room` — which shapes use as a partition key —
   * cannot be chosen by a client.
   */
  get roomName(): string {
    return this.ctx.id.name ?? this.ctx.id.toString();
  }

  /**
   * Whether a request to the object is a Lunora sync upgrade: a GET upgrade
   * of `/parties/:party/:room` whose `:room` is this object's own name.
   * Decided from the URL the object received and its own name — no header a
   * client could also send — so an upgrade the room's own routes forward
   * (with another path) stays the room's.
   */
  isSyncRequest(request: Request): boolean {
    if (!isSyncUpgrade(request)) return false;
    const parsed = parsePartyPath(new URL(request.url).pathname);
    return parsed !== null && parsed !== "bad" && parsed.room === this.roomName;
  }

  /** Whether a socket is a Lunora sync socket (vs. one of the room's own). */
  ownsSocket(ws: WebSocket): boolean {
    return this.ctx.getTags(ws).includes(SYNC_SOCKET_TAG);
  }

  /**
   * Accepts a sync socket: checks the protocol version, authenticates, and
   * hands the socket to the hibernation API. Refusals are delivered on an
   * accepted (non-hibernating) socket as an `error` frame plus a close code,
   * because a browser cannot read the status of a failed upgrade.
   */
  async acceptSocket(request: Request): Promise<Response> {
    const admitted = await admitSocket<Auth, Env>(request, this.options, this.env, this.roomName);
    if (admitted instanceof Response) return admitted;
    const attachment = admitted;
    this.ensureReady();
    const pair = new WebSocketPair();
    const server = pair[1];
    this.ctx.acceptWebSocket(server, [SYNC_SOCKET_TAG]);
    server.serializeAttachment(attachment);
    const state = newSocketState(attachment, 0);
    this.sockets.set(server, state);
    this.out.sendFrame(server, state, this.helloFrame(attachment.room));
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** `hello`: sent on accept, and again when the epoch changes under open sockets. */
  private helloFrame(room: string): string {
    return JSON.stringify({ type: "hello", protocolVersion: PROTOCOL_VERSION, room, epoch: this.epochValue });
  }

  private socketState(ws: WebSocket): SocketState | null {
    const cached = this.sockets.get(ws);
    if (cached) return cached;
    this.stats.socketStatesRebuilt++;
    const attachment = readAttachment(ws);
    if (attachment === null) return null;
    if (attachment.streaming) {
      // The object was evicted while a snapshot streamed to this socket: the
      // open poke was in memory only. The client resumes from its cursors.
      closeQuietly(ws, CLOSE_CODES.INTERRUPTED, "snapshot interrupted");
      return null;
    }
    const state = newSocketState(attachment, ACK_EVERY_CHARS);
    this.sockets.set(ws, state);
    const rebound: ResolvedSubscription[] = [];
    for (const sub of attachment.subs) {
      try {
        const resolved = this.resolveSubscription(sub.id, sub.source, sub.args, attachment, sub.subset?.where);
        this.groups.register(resolved.group, resolved.groupId);
        state.subs.set(sub.id, resolved);
        if (sub.group !== undefined && sub.group !== resolved.groupId) {
          // What it reads changed while the object slept (a migration): the
          // client is bound to the old id and would ignore every op.
          rebound.push(resolved);
          state.stored.set(sub.id, { ...sub, group: resolved.groupId });
        } else {
          state.stored.set(sub.id, sub);
        }
      } catch (error) {
        // The definitions changed under a hibernated socket (deploy): tell the
        // client instead of silently dropping the subscription.
        this.out.sendFrame(ws, state, errorFrame(toLunoraError(error).toBody(), sub.id));
      }
    }
    if (state.stored.size !== attachment.subs.length || rebound.length > 0) this.out.saveAttachment(ws, state);
    // Bound anew to their current groups, with a reset: the rows the client
    // holds have the old projection.
    if (rebound.length > 0) this.initialPokes.openSnapshot(ws, state, rebound, undefined, true);
    return state;
  }

  /** Group ids of the subscriptions of every socket whose state is in memory (sockets not rebuilt since a wake registered none). */
  private *liveGroupIds(): Generator<string> {
    for (const ws of this.ctx.getWebSockets(SYNC_SOCKET_TAG)) {
      const state = this.sockets.get(ws);
      if (state) for (const sub of state.subs.values()) yield sub.groupId;
    }
  }

  /** The sync sockets the room may still serve, with their state (rebuilt after a wake; expired tokens closed). */
  private *servedSockets(): Generator<[WebSocket, SocketState]> {
    for (const ws of this.ctx.getWebSockets(SYNC_SOCKET_TAG)) {
      const state = this.socketState(ws);
      if (state === null) continue;
      if (!this.out.checkExpiry(ws, state)) continue;
      yield [ws, state];
    }
  }

  /** Where the log stands, for the pokes that start subscriptions. */
  private logPosition(): LogPosition {
    return { sql: this.sql, epoch: this.epochValue, flushedSeq: this.flushedSeq, trimmedThrough: this.trimmedThrough, keys: this.keys, schemaSeqs: this.schemaSeqs };
  }

  /**
   * An `ack` lowers the socket's unacknowledged count, but never by more than
   * the room sent (plus the wake credit): a client that claims to have read
   * text it was never sent is trying to switch flow control off.
   */
  private onAck(ws: WebSocket, state: SocketState, received: number): void {
    if (received > state.unacked + state.ackCredit) {
      this.out.protocolError(ws, state, new LunoraError("PROTOCOL_ERROR", "ack claims more text than the room sent"));
      return;
    }
    const fromUnacked = Math.min(received, state.unacked);
    state.unacked -= fromUnacked;
    state.ackCredit -= received - fromUnacked;
    if (state.open) {
      // The client made room: append what changed, then read more pages.
      this.flush();
      this.initialPokes.pump(ws, state);
    }
  }

  /** Handles one frame from a sync socket. Never throws: bad input gets a coded error. */
  async onMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    this.ensureReady();
    // A socket rebuilt after a wake may be rebound with a snapshot
    // (socketState): its pages must be read where every subscriber is, at the
    // flushed end of the log, so writes not flushed yet go out first.
    if (!this.sockets.has(ws)) this.flush();
    const state = this.socketState(ws);
    if (state === null) return;
    if (!this.out.checkExpiry(ws, state)) return;
    const parsed = parseClientFrame(message, MAX_INBOUND_FRAME_BYTES);
    if (!parsed.ok) return this.out.protocolError(ws, state, parsed.error);
    await this.onFrame(ws, state, parsed.frame);
  }

  private async onFrame(ws: WebSocket, state: SocketState, frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case "subscribe":
        return this.subscribe(ws, state, frame);
      case "unsubscribe":
        if (state.stored.delete(frame.id)) {
          state.subs.delete(frame.id);
          this.out.saveAttachment(ws, state);
        }
        return;
      case "push":
        return this.pushes.enqueue(ws, state.attachment, frame);
      case "ack":
        return this.onAck(ws, state, frame.received);
    }
  }

  private async subscribe(ws: WebSocket, state: SocketState, frame: Subscribe): Promise<void> {
    const { id, source } = frame;
    const fail = (error: unknown) => {
      this.out.sendFrame(ws, state, errorFrame(toLunoraError(error).toBody(), id));
    };
    const isNew = !state.stored.has(id);
    const max = this.options.limits?.maxSubscriptionsPerSocket ?? DEFAULTS.maxSubscriptionsPerSocket;
    if (isNew && state.stored.size >= max) {
      return fail(new LunoraError("QUOTA_EXCEEDED", `at most ${max} subscriptions per socket`, { max }));
    }
    let args: unknown;
    try {
      if ("shape" in source) {
        const shape = this.shapeDefs.get(source.shape);
        if (shape === undefined || !Object.hasOwn(this.options.shapes ?? {}, source.shape)) {
          throw new LunoraError("SHAPE_NOT_FOUND", `unknown shape "${source.shape}"`);
        }
        checkArgsBounds(source.args, source.shape);
        args = await validateWithSchema(shape.args, source.args, `args of shape "${source.shape}"`);
      }
    } catch (error) {
      return fail(error);
    }
    // The socket may have gone while the args were validated (async schemas).
    if (ws.readyState !== 1 /* OPEN */) return;
    if (state.open) {
      // One poke at a time per socket: start after the snapshot streaming now.
      if (state.waiting.length >= max) return fail(new LunoraError("QUOTA_EXCEEDED", `at most ${max} subscriptions waiting per socket`, { max }));
      state.waiting.push(() => this.subscribe(ws, state, frame));
      return;
    }
    let resolved: ResolvedSubscription;
    let subset: Subset | undefined;
    let plan: LimitPlan | undefined;
    try {
      if (frame.subset !== undefined) subset = parseSubset(frame.subset);
      resolved = this.resolveSubscription(id, sourceName(source), args, state.attachment, subset?.where);
      if (subset?.limit) plan = planLimit(resolved, subset.limit, resolved.projected);
    } catch (error) {
      return fail(error);
    }
    // The validated args (the schema's output) are stored, never the raw ones.
    const stored: StoredSubscription = args === undefined ? { id, source: sourceName(source) } : { id, source: sourceName(source), args };
    let report: ResolvedSubset[] | undefined;
    if (plan) {
      // The cut is read at the snapshot's cut: flush first (the previous
      // subscription of this id, if any, still gets its changes; it is
      // replaced by a reset right after).
      this.flush();
      let limited: ReturnType<typeof resolveLimitedSubset<ResolvedSubscription>>;
      try {
        limited = resolveLimitedSubset(this.sql, plan, subset!.where, resolved, (where) =>
          this.resolveSubscription(id, stored.source, stored.args, state.attachment, where),
        );
      } catch (error) {
        return fail(error);
      }
      resolved = limited.resolved;
      stored.subset = { where: limited.where };
      report = [{ sub: id, where: limited.where }];
    } else if (subset?.where !== undefined) {
      stored.subset = { where: subset.where };
    }
    stored.group = resolved.groupId;
    const previous = state.stored.get(id);
    state.stored.set(id, stored);
    state.attachment.subs = [...state.stored.values()];
    if (attachmentSize(state.attachment) > MAX_ATTACHMENT_BYTES) {
      if (previous) state.stored.set(id, previous);
      else state.stored.delete(id);
      state.attachment.subs = [...state.stored.values()];
      return fail(new LunoraError("QUOTA_EXCEEDED", "subscriptions of this socket no longer fit in its 16 KiB attachment"));
    }
    // Bring every subscriber up to the log's end first, so the new
    // subscription starts from the same seq as everyone else: the poke
    // that answers it tells the client that EVERY subscription of the
    // socket is at its cursor (protocol 4, "Groups and bindings").
    state.subs.delete(id);
    this.flush();
    this.out.saveAttachment(ws, state);
    try {
      // Claimed after the flush: a flush may rebuild other sockets after a
      // wake, and what they register must see this group as live.
      this.groups.register(resolved.group, resolved.groupId);
    } catch (error) {
      return this.out.endSubscription(ws, state, id, error);
    }
    state.subs.set(id, resolved);
    // A limited subset always starts with a reset: the client's rows (and
    // its cursor) were for another predicate than the one just resolved.
    this.initialPokes.send(ws, state, resolved, plan ? undefined : frame.cursor, report);
  }

  /** See {@link resolveSubscription}. */
  private resolveSubscription(id: string, source: StoredSubscription["source"], args: unknown, attachment: SocketAttachment, subsetWhere?: unknown): ResolvedSubscription {
    return resolveSubscription<Auth, Env>(
      { options: this.options, tables: this.tableDefs, shapes: this.shapeDefs, env: this.env, tableInfo: (name) => this.tableInfo(name) },
      id,
      source,
      args,
      attachment,
      subsetWhere,
      this.groups.idOf,
    );
  }

  // ---------------------------------------------------------------- flush

  /**
   * Sends every subscriber what changed since the last flush: one read of the
   * new log page for all sockets, one membership diff per distinct
   * (table, predicate, projection), one set of poke frames per distinct set
   * of changed groups, sent to every socket reading that set (with its
   * mutation outcomes spliced in). Synchronous, so nothing interleaves with it.
   *
   * `withLunora` calls it after each handler of the object (fetch,
   * webSocketMessage, alarm). Code that writes elsewhere (RPC methods,
   * timers) calls `this.lunora.flush()`.
   */
  flush(outcomes?: Map<WebSocket, MutationResult[]>): void {
    this.ensureReady();
    this.flushScheduled = false;
    if (this.openTransactions > 0) {
      // Not committed yet: the transaction's end flushes (outcomes wait with it).
      for (const [ws, results] of outcomes ?? []) this.pushes.hold(ws, results);
      return;
    }
    // Outcomes waiting for the group-commit flush go out with any flush, so
    // they always ride with the rows they produced.
    outcomes = this.pushes.take(outcomes);
    const logEnd = maxLogSeq(this.sql);
    // A flush writes `flushed_seq` in the same storage as the log: if it ran
    // inside a transaction the room could not see and that rolled back, the
    // stored value went back with the log, even when writes committed since
    // have taken the log past the published seq again (reusing its seqs).
    const storedFlushed = Number(readMeta(this.sql, "flushed_seq") ?? -1);
    if (logEnd < this.flushedSeq || storedFlushed !== this.flushedSeq) {
      // Rows already sent were rolled back: clients hold state that never
      // committed, and seqs were or would be reused. Only a new epoch is
      // honest now; the outcomes waiting for this flush ride in its resets.
      console.error(`lunora: the change log went back below seq ${this.flushedSeq}, which was published (a published write rolled back); starting a new epoch`);
      this.startNewEpoch(outcomes);
      return;
    }
    const through = logEnd;
    if (through === this.flushedSeq && (outcomes === undefined || outcomes.size === 0)) return;
    this.stats.flushes++;
    const changes = through > this.flushedSeq ? coalesceLog(readLog(this.sql, this.flushedSeq, through), this.keys)! : new Map<string, KeyChange>();
    fanOut(this.out, this.servedSockets(), changes, { seq: through, epoch: this.epochValue }, outcomes, this.stats);
    if (through > this.flushedSeq) {
      this.rowsSinceSweep += through - this.flushedSeq;
      this.flushedSeq = through;
      writeMeta(this.sql, "flushed_seq", through);
      this.maybeSweep();
    }
  }

  private maybeSweep(): void {
    const retention = this.options.retention ?? {};
    if (this.rowsSinceSweep < (retention.sweepEvery ?? DEFAULTS.sweepEvery)) return;
    this.rowsSinceSweep = 0;
    const trimmed = trimLog(this.sql, {
      maxRows: retention.maxRows ?? DEFAULTS.maxRows,
      maxAgeMs: retention.maxAgeMs ?? DEFAULTS.maxAgeMs,
      keepAfterSeq: this.flushedSeq,
      now: Date.now(),
      batch: retention.batch ?? DEFAULTS.batch,
    });
    if (trimmed > this.trimmedThrough) {
      this.trimmedThrough = trimmed;
      writeMeta(this.sql, "trimmed_through", trimmed);
    }
  }

  /** Runs a retention sweep now, whatever `sweepEvery` says. Returns the seq the log is trimmed through. */
  sweep(): number {
    this.ensureReady();
    this.rowsSinceSweep = Number.POSITIVE_INFINITY;
    this.maybeSweep();
    return this.trimmedThrough;
  }

  /**
   * Starts a new epoch: the log is cleared and every client's cursor becomes
   * meaningless, so each subscription gets a reset (connected sockets at
   * once, others when they resume). Call it after restoring storage
   * (point-in-time recovery) or any change that rewrote history. Inside an
   * async `ctx.storage.transaction`, it runs when the outermost transaction
   * has ended (committed or not), so no snapshot reads uncommitted rows.
   */
  resetEpoch(): void {
    this.ensureReady();
    if (this.openTransactions > 0) {
      // Inside the room's own async transaction the snapshots would read rows
      // that may still roll back: the new epoch starts when it has ended
      // (also after a rollback — a reset never loses anything).
      this.epochResetPending = true;
      return;
    }
    this.flush();
    this.startNewEpoch();
  }

  /** `resetEpoch()` was called inside an async transaction: it runs when the outermost one ends. */
  private epochResetPending = false;

  /**
   * `outcomes`: those a flush took before it found history rolled back. Each
   * socket's ride in the poke that resets its subscriptions (read after the
   * writes committed, so their data is in it), or, without subscriptions, in
   * a poke of their own after the new `hello`. A socket closed with 4010
   * loses them on this connection: its client sends the writes again on the
   * next one and the watermark answers them from the stored outcomes.
   */
  private startNewEpoch(outcomes?: Map<WebSocket, MutationResult[]>): void {
    this.epochValue = crypto.randomUUID();
    writeMeta(this.sql, "epoch", this.epochValue);
    const through = maxLogSeq(this.sql);
    this.sql.exec(`DELETE FROM ${LOG_TABLE}`);
    this.trimmedThrough = through;
    this.flushedSeq = through;
    writeMeta(this.sql, "trimmed_through", through);
    writeMeta(this.sql, "flushed_seq", through);
    // An expired token gets nothing more, not even a reset.
    for (const [ws, state] of this.servedSockets()) {
      if (state.open) {
        // A poke of the old history is half sent: it cannot be completed honestly.
        closeQuietly(ws, CLOSE_CODES.INTERRUPTED, "new epoch");
        this.sockets.delete(ws);
        continue;
      }
      this.out.sendFrame(ws, state, this.helloFrame(state.attachment.room));
      const mine = outcomes?.get(ws) ?? [];
      // One poke resets every subscription of the socket, streamed.
      if (state.subs.size > 0) this.initialPokes.openSnapshot(ws, state, [...state.subs.values()], undefined, false, mine);
      else sendOutcomesOnly(this.out, this.epochValue, ws, state, mine, through);
    }
  }

  /** Called for a sync socket's close: nothing to clean but the cache. */
  onClose(ws: WebSocket, code: number): void {
    this.sockets.delete(ws);
    // Complete the closing handshake (a no-op where the runtime already did).
    closeQuietly(ws, code === 1005 || code === 1006 ? 1000 : code, "");
  }
}


