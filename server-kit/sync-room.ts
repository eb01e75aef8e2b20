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
  type Cursor,
  type MutationResult,
  type ResolvedSubset,
  type Subscribe,
  type Subset,
} from "../src/protocol/index.js";
import type { Where } from "../src/protocol/where.js";
import {
  coalesceLog,
  countLogRows,
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
import { PokeWriter, encodePutTail, encodeRowOp } from "./poke-writer.js";
import {
  MAX_ATTACHMENT_BYTES,
  SlowConsumer,
  attachmentSize,
  closeQuietly,
  errorFrame,
  newSocketState,
  readAttachment,
  sendQuietly,
  sourceName,
  toLunoraError,
  type SocketAttachment,
  type SocketState,
  type StoredSubscription,
} from "./socket-state.js";
import { validateWithSchema } from "./validate.js";
import { admitSocket } from "./handshake.js";
import { isSyncUpgrade, parsePartyPath } from "./route.js";
import { LunoraDb } from "./db.js";
import { checkArgsBounds, membershipOp, resolveSubscription, type GroupOp, type ResolvedSubscription } from "./subscriptions.js";
import { cutWhere, fitsAsSubset, parseSubset, planLimit, readBoundary, type LimitPlan } from "./subsets.js";
import { SNAPSHOT_WINDOW_CHARS, coveredByPoke, readSnapshotPage } from "./snapshots.js";
import { installWatermarkTables, type ServerMutatorDefinition } from "./mutators.js";
import { PushQueue } from "./pushes.js";
import { syncedValue } from "./values.js";

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

type Send = (frame: string) => void;

/**
 * The sync engine of one Durable Object: change capture, subscriptions,
 * pokes. `withLunora` creates one per object instance; everything it keeps in
 * memory is a cache of what is in SQLite or in socket attachments, so a
 * hibernated object resumes exactly where it was.
 */
export class SyncRoom<Auth = unknown, Env = unknown> {
  private readonly sql: SqlStorage;
  private readonly tableDefs: Map<string, TableDefinition>;
  private readonly shapeDefs: Map<string, ShapeDefinition>;
  private readonly sockets = new WeakMap<WebSocket, SocketState>();
  private tables = new Map<string, TableInfo>();
  private keys = new Map<string, string>();
  private ready = false;
  private epochValue = "";
  private flushedSeq = 0;
  private trimmedThrough = 0;
  private rowsSinceSweep = 0;
  private pokeCounter = 0;
  private flushScheduled = false;
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
    this.flushedSeq = Number(readMeta(this.sql, "flushed_seq") ?? maxLogSeq(this.sql));
    this.trimmedThrough = Number(readMeta(this.sql, "trimmed_through") ?? 0);
    this.refreshSchema();
    this.ready = true;
  }

  /** Re-reads synced tables' columns and re-installs triggers where they changed. Call after a migration. */
  refreshSchema(): void {
    const tables = new Map<string, TableInfo>();
    for (const [name, def] of this.tableDefs) {
      const info = readTableInfo(this.sql, name, def.key);
      if (info === undefined) continue; // not created yet; checked again on the next refresh
      if (!info.columns.has(def.key)) throw new LunoraError("INTERNAL", `synced table "${name}" has no key column "${def.key}"`);
      installCaptureTriggers(this.sql, info);
      tables.set(name, info);
    }
    this.tables = tables;
    this.keys = new Map([...tables].map(([name, info]) => [name, info.key]));
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
      try {
        return (await original.call(storage, closure)) as T;
      } finally {
        this.openTransactions--;
        if (this.openTransactions === 0) this.scheduleFlush();
      }
    };
    try {
      storage.transaction = wrapped as DurableObjectStorage["transaction"];
    } catch {
      // A runtime that forbids it still has the check in flush(): history that
      // went backwards is reset, never served with a gap.
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
      this.refreshSchema();
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
    this.sendFrame(server, state, this.helloFrame(attachment.room));
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** `hello`: sent on accept, and again when the epoch changes under open sockets. */
  private helloFrame(room: string): string {
    return JSON.stringify({ type: "hello", protocolVersion: PROTOCOL_VERSION, room, epoch: this.epochValue });
  }

  /** Counters for tests and benchmarks (per object instance, reset on wake). */
  readonly stats = { flushes: 0, socketStatesRebuilt: 0, pokeFramesSent: 0, slowConsumersClosed: 0 };

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
    for (const sub of attachment.subs) {
      try {
        state.subs.set(sub.id, this.resolveSubscription(sub.id, sub.source, sub.args, attachment, sub.subset?.where));
        state.stored.set(sub.id, sub);
      } catch (error) {
        // The definitions changed under a hibernated socket (deploy): tell the
        // client instead of silently dropping the subscription.
        this.sendFrame(ws, state, errorFrame(toLunoraError(error).toBody(), sub.id));
      }
    }
    if (state.stored.size !== attachment.subs.length) this.saveAttachment(ws, state);
    return state;
  }

  /** Writes the socket's subscriptions to its attachment (which survives hibernation). */
  private saveAttachment(ws: WebSocket, state: SocketState): void {
    state.attachment.subs = [...state.stored.values()];
    try {
      ws.serializeAttachment(state.attachment);
    } catch {
      // closed
    }
  }

  /**
   * Every frame to a sync socket goes through here, so flow control counts
   * what the client counts: all text but the runtime's pong.
   */
  private sendFrame(ws: WebSocket, state: SocketState, frame: string): boolean {
    state.unacked += frame.length;
    return sendQuietly(ws, frame);
  }

  /**
   * An `ack` lowers the socket's unacknowledged count, but never by more than
   * the room sent (plus the wake credit): a client that claims to have read
   * text it was never sent is trying to switch flow control off.
   */
  private onAck(ws: WebSocket, state: SocketState, received: number): void {
    if (received > state.unacked + state.ackCredit) {
      this.protocolError(ws, state, new LunoraError("PROTOCOL_ERROR", "ack claims more text than the room sent"));
      return;
    }
    const fromUnacked = Math.min(received, state.unacked);
    state.unacked -= fromUnacked;
    state.ackCredit -= received - fromUnacked;
    if (state.open) {
      // The client made room: append what changed, then read more pages.
      this.flush();
      this.pumpSnapshot(ws, state);
    }
  }

  /** A bad frame: a coded error; past the bound the socket is closed (4008). */
  private protocolError(ws: WebSocket, state: SocketState, error: LunoraError): void {
    this.sendFrame(ws, state, errorFrame(error.toBody()));
    state.protocolErrors++;
    if (state.protocolErrors >= (this.options.limits?.maxProtocolErrors ?? DEFAULTS.maxProtocolErrors)) {
      closeQuietly(ws, CLOSE_CODES.POLICY, "too many protocol errors");
    }
  }

  /**
   * A frame sender for pokes to one socket, with flow control: the runtime
   * buffers whatever a slow reader has not taken, without limit, so the room
   * counts what the client has not acknowledged and closes the socket
   * (4009, the client resumes from its cursor) past the bound.
   */
  private pokeSender(ws: WebSocket, state: SocketState): Send {
    const max = this.options.limits?.maxUnackedChars ?? DEFAULTS.maxUnackedChars;
    return (frame: string) => {
      if (state.unacked > max) {
        throw new SlowConsumer();
      }
      ws.send(frame);
      state.unacked += frame.length;
      this.stats.pokeFramesSent++;
    };
  }

  private closeSlowConsumer(ws: WebSocket): void {
    this.stats.slowConsumersClosed++;
    sendQuietly(ws, errorFrame({ code: "QUOTA_EXCEEDED", message: "the client fell too far behind reading; resume from the cursor" }));
    closeQuietly(ws, CLOSE_CODES.SLOW_CONSUMER, "slow consumer");
    this.sockets.delete(ws);
  }

  /** Closes the socket if its token expired. */
  private checkExpiry(ws: WebSocket, state: SocketState): boolean {
    if (state.attachment.exp !== undefined && Date.now() >= state.attachment.exp) {
      sendQuietly(ws, errorFrame({ code: "UNAUTHENTICATED", message: "token expired" }));
      closeQuietly(ws, CLOSE_CODES.UNAUTHENTICATED, "token expired");
      this.sockets.delete(ws);
      return false;
    }
    return true;
  }

  /** Handles one frame from a sync socket. Never throws: bad input gets a coded error. */
  async onMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    this.ensureReady();
    const state = this.socketState(ws);
    if (state === null) return;
    if (!this.checkExpiry(ws, state)) return;
    const parsed = parseClientFrame(message, MAX_INBOUND_FRAME_BYTES);
    if (!parsed.ok) return this.protocolError(ws, state, parsed.error);
    await this.onFrame(ws, state, parsed.frame);
  }

  private async onFrame(ws: WebSocket, state: SocketState, frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case "subscribe":
        return this.subscribe(ws, state, frame);
      case "unsubscribe":
        if (state.stored.delete(frame.id)) {
          state.subs.delete(frame.id);
          this.saveAttachment(ws, state);
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
      this.sendFrame(ws, state, errorFrame(toLunoraError(error).toBody(), id));
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
      let where: { where: Where; resolved: ResolvedSubscription };
      try {
        where = this.resolveLimit(resolved, stored, subset!.where, plan, state.attachment);
      } catch (error) {
        return fail(error);
      }
      resolved = where.resolved;
      stored.subset = { where: where.where };
      report = [{ sub: id, where: where.where }];
    } else if (subset?.where !== undefined) {
      stored.subset = { where: subset.where };
    }
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
    // subscription starts from the same seq as everyone else.
    state.subs.delete(id);
    this.flush();
    this.saveAttachment(ws, state);
    state.subs.set(id, resolved);
    // A limited subset always starts with a reset: the client's rows (and
    // its cursor) were for another predicate than the one just resolved.
    this.sendInitialPoke(ws, state, resolved, plan ? undefined : frame.cursor, report);
  }

  /**
   * Resolves a subset's limit into a predicate (see subsets.ts) and the
   * subscription for it. A cut whose predicate would not fit a resume
   * (`MAX_SUBSET_CHARS`, bound parameters, depth) is dropped: the subset is
   * then `where` alone, the wider set.
   */
  private resolveLimit(
    sub: ResolvedSubscription,
    source: StoredSubscription,
    where: unknown,
    plan: LimitPlan,
    attachment: SocketAttachment,
  ): { where: Where; resolved: ResolvedSubscription } {
    const base = (where ?? true) as Where;
    const cut = cutWhere(where, plan.limit, readBoundary(this.sql, plan));
    if (cut !== base && fitsAsSubset(cut)) {
      try {
        return { where: cut, resolved: this.resolveSubscription(sub.id, source.source, source.args, attachment, cut) };
      } catch (error) {
        if (!(error instanceof LunoraError) || error.code !== "INVALID_ARGS") throw error;
      }
    }
    return { where: base, resolved: sub };
  }

  /**
   * Ends a subscription the room cannot serve (e.g. a row larger than a
   * frame). The error frame also tells the client to drop a poke for it that
   * is still open.
   */
  private endSubscription(ws: WebSocket, state: SocketState, id: string, error: unknown): void {
    state.stored.delete(id);
    state.subs.delete(id);
    this.saveAttachment(ws, state);
    this.sendFrame(ws, state, errorFrame(toLunoraError(error).toBody(), id));
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
    );
  }

  /**
   * The first poke of a subscription: the delta since its cursor when the log
   * still covers it in this epoch (one poke, bounded by `maxResumeLogRows`),
   * else a reset with a streamed snapshot.
   */
  private sendInitialPoke(ws: WebSocket, state: SocketState, sub: ResolvedSubscription, cursor: Cursor | undefined, subsets?: ResolvedSubset[]): void {
    const through = this.flushedSeq;
    const maxResume = this.options.limits?.maxResumeLogRows ?? DEFAULTS.maxResumeLogRows;
    const canResume =
      cursor !== undefined &&
      cursor.epoch === this.epochValue &&
      cursor.seq >= this.trimmedThrough &&
      cursor.seq <= through &&
      countLogRows(this.sql, cursor.seq, through) <= maxResume;
    if (!canResume) return this.openSnapshotPoke(ws, state, [sub], subsets);
    try {
      const changes = coalesceLog(readLog(this.sql, cursor.seq, through), this.keys)!;
      const writer = new PokeWriter(this.pokeSender(ws, state), this.nextPokeId(through)).start([sub.id]);
      for (const change of changes.values()) {
        const op = membershipOp(sub, change);
        if (op) this.addOp(writer, sub, op[0], op[1]);
      }
      writer.end({ seq: through, epoch: this.epochValue });
    } catch (error) {
      if (error instanceof SlowConsumer) return this.closeSlowConsumer(ws);
      this.endSubscription(ws, state, sub.id, error);
    }
  }

  /**
   * Opens a poke that resets `targets` and streams their snapshots (see
   * snapshots.ts). It lists every subscription of the socket, so flushes can
   * append their changes while it is open. `subsets` reports what limited
   * subsets among the targets resolved to.
   */
  private openSnapshotPoke(ws: WebSocket, state: SocketState, targets: ResolvedSubscription[], subsets?: ResolvedSubset[]): void {
    const writer = new PokeWriter(this.pokeSender(ws, state), this.nextPokeId(this.flushedSeq));
    writer.start([...state.subs.keys()], targets.map((target) => target.id), subsets);
    state.open = { writer, scans: targets.map((target) => ({ target, after: undefined, done: false })), seq: this.flushedSeq, mutations: [] };
    state.attachment.streaming = true;
    this.saveAttachment(ws, state);
    this.pumpSnapshot(ws, state);
  }

  /** Reads snapshot pages into the open poke while the socket has window; ends the poke when every scan is done. */
  private pumpSnapshot(ws: WebSocket, state: SocketState): void {
    const open = state.open;
    if (open === undefined) return;
    let scan = open.scans.find((candidate) => !candidate.done);
    try {
      while (scan !== undefined && state.unacked < SNAPSHOT_WINDOW_CHARS) {
        const sub = state.subs.get(scan.target.id);
        if (sub === undefined) {
          scan.done = true; // unsubscribed meanwhile
        } else {
          for (const raw of readSnapshotPage(this.sql, scan)) {
            const row: Record<string, unknown> = {};
            for (const column of sub.columns) {
              const value = raw[column];
              row[column] = syncedValue(value);
            }
            this.addOp(open.writer, sub, "put", encodePutTail(row[sub.key] as string | number, row));
          }
        }
        if (scan.done) scan = open.scans.find((candidate) => !candidate.done);
      }
      if (scan !== undefined) return; // the next ack reads on
      state.open = undefined;
      delete state.attachment.streaming;
      this.saveAttachment(ws, state);
      open.writer.end({ seq: open.seq, epoch: this.epochValue }, open.mutations);
    } catch (error) {
      state.open = undefined;
      if (error instanceof SlowConsumer) return this.closeSlowConsumer(ws);
      // A row larger than a frame: the error frame also tells the client to
      // drop the open poke, and the client subscribes the other subscriptions
      // it covered again. Outcomes it carried still reach the writer.
      delete state.attachment.streaming;
      if (scan !== undefined) this.endSubscription(ws, state, scan.target.id, error);
      this.sendOutcomesOnly(ws, state, open.mutations, open.seq);
      return;
    }
    for (const next of state.waiting.splice(0)) {
      if (state.open) {
        state.waiting.push(next);
        continue;
      }
      void next();
    }
  }

  private addOp(writer: PokeWriter, sub: ResolvedSubscription, op: "put" | "del", tail: string): void {
    if (!writer.add(encodeRowOp(op, sub.id, tail))) {
      throw new LunoraError("MESSAGE_TOO_LARGE", `a row of "${sub.table}" is larger than a frame`);
    }
  }

  private nextPokeId(seq: number): string {
    this.pokeCounter = (this.pokeCounter + 1) % 1_000_000;
    return `${seq.toString(36)}.${this.pokeCounter.toString(36)}`;
  }

  // ---------------------------------------------------------------- flush

  /**
   * Sends every subscriber what changed since the last flush: one read of the
   * new log page for all sockets, one membership diff per distinct
   * (table, predicate, projection), one poke per socket that has changes or
   * mutation outcomes. Synchronous, so nothing interleaves with it.
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
    if (logEnd < this.flushedSeq) {
      // Rows already sent were rolled back (a flush ran inside a transaction
      // the room could not see): clients hold state that never committed, and
      // the next seqs would be reused. Only a new epoch is honest now.
      console.error(`lunora: the change log went back from seq ${this.flushedSeq} to ${logEnd} (a published write rolled back); starting a new epoch`);
      this.startNewEpoch();
      return;
    }
    const through = logEnd;
    if (through === this.flushedSeq && (outcomes === undefined || outcomes.size === 0)) return;
    this.stats.flushes++;
    const from = this.flushedSeq;
    let changes: Map<string, KeyChange> = new Map();
    const changedTables = new Set<string>();
    if (through > from) {
      changes = coalesceLog(readLog(this.sql, from, through), this.keys)!;
      for (const change of changes.values()) changedTables.add(change.table);
    }
    const groups = new Map<string, GroupOp[]>();
    const end: Cursor = { seq: through, epoch: this.epochValue };
    for (const ws of this.ctx.getWebSockets(SYNC_SOCKET_TAG)) {
      const state = this.socketState(ws);
      if (state === null) continue;
      if (!this.checkExpiry(ws, state)) continue;
      const mutations = outcomes?.get(ws);
      const perSub: Array<[ResolvedSubscription, GroupOp[]]> = [];
      for (const sub of state.subs.values()) {
        if (!changedTables.has(sub.table)) continue;
        let ops = groups.get(sub.group);
        if (ops === undefined) {
          ops = [];
          for (const change of changes.values()) {
            const op = membershipOp(sub, change);
            if (op) ops.push([op[0], op[1], change.key]);
          }
          groups.set(sub.group, ops);
        }
        if (ops.length > 0) perSub.push([sub, ops]);
      }
      if (state.open) {
        this.appendToOpenPoke(ws, state, perSub, through, mutations);
        continue;
      }
      if (perSub.length === 0 && mutations === undefined) continue;
      this.sendPoke(ws, state, perSub, end, mutations);
    }
    if (through > this.flushedSeq) {
      this.rowsSinceSweep += through - this.flushedSeq;
      this.flushedSeq = through;
      writeMeta(this.sql, "flushed_seq", through);
      this.maybeSweep();
    }
  }

  private sendPoke(
    ws: WebSocket,
    state: SocketState,
    perSub: Array<[ResolvedSubscription, GroupOp[]]>,
    end: Cursor,
    mutations: MutationResult[] | undefined,
  ): void {
    const send = this.pokeSender(ws, state);
    try {
      // Every live subscription of the socket is listed, so all their cursors
      // advance, not only those with ops. A subscription with a row too large
      // for any frame cannot be served without a gap: it is left out of the
      // poke entirely and ended with MESSAGE_TOO_LARGE.
      const writer = new PokeWriter(send, this.nextPokeId(end.seq));
      const tooLarge = perSub.filter(([sub, ops]) => ops.some(([op, tail]) => !writer.fits(encodeRowOp(op, sub.id, tail)))).map(([sub]) => sub);
      for (const sub of tooLarge) {
        this.endSubscription(ws, state, sub.id, new LunoraError("MESSAGE_TOO_LARGE", `a row of "${sub.table}" is larger than a frame`));
      }
      if (state.subs.size === 0 && mutations === undefined) return;
      writer.start([...state.subs.keys()]);
      for (const [sub, ops] of perSub) {
        if (tooLarge.includes(sub)) continue;
        for (const [op, tail] of ops) writer.add(encodeRowOp(op, sub.id, tail));
      }
      writer.end(end, mutations);
    } catch (error) {
      if (error instanceof SlowConsumer) this.closeSlowConsumer(ws);
      // Otherwise the socket closed mid-poke; the client resumes from its last complete poke.
    }
  }

  /**
   * A flush while a snapshot streams on the socket: the changes go into the
   * open poke (for a subscription being scanned, only keys the scan has
   * passed), the outcomes into its end, and the poke's cursor moves on.
   */
  private appendToOpenPoke(ws: WebSocket, state: SocketState, perSub: Array<[ResolvedSubscription, GroupOp[]]>, through: number, mutations: MutationResult[] | undefined): void {
    const open = state.open!;
    try {
      for (const [sub, ops] of perSub) {
        for (const [op, tail, key] of ops) {
          if (coveredByPoke(open, sub.id, key)) this.addOp(open.writer, sub, op, tail);
        }
      }
    } catch (error) {
      state.open = undefined;
      if (error instanceof SlowConsumer) return this.closeSlowConsumer(ws);
      delete state.attachment.streaming;
      const failed = perSub.find(([sub, ops]) => ops.some(([op, tail]) => !open.writer.fits(encodeRowOp(op, sub.id, tail))));
      if (failed) this.endSubscription(ws, state, failed[0].id, error);
      open.mutations.push(...(mutations ?? []));
      this.sendOutcomesOnly(ws, state, open.mutations, through);
      return;
    }
    if (mutations) open.mutations.push(...mutations);
    open.seq = through;
  }

  /** Outcomes whose poke had to be dropped still reach the writer, in a poke without rows. */
  private sendOutcomesOnly(ws: WebSocket, state: SocketState, mutations: MutationResult[], seq: number): void {
    if (mutations.length === 0) return;
    try {
      new PokeWriter(this.pokeSender(ws, state), this.nextPokeId(seq)).start([]).end({ seq, epoch: this.epochValue }, mutations);
    } catch {
      this.closeSlowConsumer(ws);
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
   * (point-in-time recovery) or any change that rewrote history.
   */
  resetEpoch(): void {
    this.ensureReady();
    this.flush();
    this.startNewEpoch();
  }

  private startNewEpoch(): void {
    this.epochValue = crypto.randomUUID();
    writeMeta(this.sql, "epoch", this.epochValue);
    const through = maxLogSeq(this.sql);
    this.sql.exec(`DELETE FROM ${LOG_TABLE}`);
    this.trimmedThrough = through;
    this.flushedSeq = through;
    writeMeta(this.sql, "trimmed_through", through);
    writeMeta(this.sql, "flushed_seq", through);
    for (const ws of this.ctx.getWebSockets(SYNC_SOCKET_TAG)) {
      const state = this.socketState(ws);
      if (state === null) continue;
      // An expired token gets nothing more, not even a reset.
      if (!this.checkExpiry(ws, state)) continue;
      if (state.open) {
        // A poke of the old history is half sent: it cannot be completed honestly.
        closeQuietly(ws, CLOSE_CODES.INTERRUPTED, "new epoch");
        this.sockets.delete(ws);
        continue;
      }
      this.sendFrame(ws, state, this.helloFrame(state.attachment.room));
      // One poke resets every subscription of the socket, streamed.
      if (state.subs.size > 0) this.openSnapshotPoke(ws, state, [...state.subs.values()]);
    }
  }

  /** Called for a sync socket's close: nothing to clean but the cache. */
  onClose(ws: WebSocket, code: number): void {
    this.sockets.delete(ws);
    // Complete the closing handshake (a no-op where the runtime already did).
    closeQuietly(ws, code === 1005 || code === 1006 ? 1000 : code, "");
  }
}


