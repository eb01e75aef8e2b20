import {
  CLOSE_CODES,
  LunoraError,
  MAX_INBOUND_FRAME_BYTES,
  PING,
  PONG,
  PROTOCOL_VERSION,
  QUERY,
  parseClientFrame,
  type ClientFrame,
  type Cursor,
  type ErrorBody,
  type MutationResult,
  type Subscribe,
} from "../src/protocol/index.js";
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
import type { LunoraContext, LunoraOptions, ShapeDefinition, TableDefinition } from "./definitions.js";
import { PokeWriter, encodeDelTail, encodePutTail, encodeRowOp } from "./poke-writer.js";
import {
  MAX_ATTACHMENT_BYTES,
  attachmentSize,
  closeQuietly,
  readAttachment,
  sendQuietly,
  type SocketAttachment,
} from "./socket-state.js";
import { validateWithSchema } from "./validate.js";
import { LunoraDb } from "./db.js";
import { applyPush, installWatermarkTables, type MutationContext, type ServerMutatorDefinition } from "./mutators.js";
import { syncedValue } from "./values.js";
import { andWhere, compileWhere, matchesWhere, quoteIdent, whereToSql, type CompiledWhere } from "./where.js";

/** Tag of every hibernatable socket Lunora accepts; other sockets belong to the room's own code. */
export const SYNC_SOCKET_TAG = "lunora";
/** Header set by `routeLunoraRequest` so the object knows the request is a sync upgrade and its room name. */
export const ROOM_HEADER = "x-lunora-room";

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

/** A subscription with its predicate resolved against the socket's identity. */
interface ResolvedSubscription {
  id: string;
  table: string;
  key: string;
  columns: string[];
  where: CompiledWhere;
  /** Subscriptions with equal groups receive identical ops, computed once per flush. */
  group: string;
}

interface SocketState {
  attachment: SocketAttachment;
  subs: Map<string, ResolvedSubscription>;
  protocolErrors: number;
  /** Characters of poke frames sent and not yet acknowledged (in memory: zero after a wake, when nothing is in flight). */
  unacked: number;
}

type Send = (frame: string) => void;

function errorFrame(error: ErrorBody, sub?: string): string {
  return JSON.stringify(sub === undefined ? { type: "error", error } : { type: "error", sub, error });
}

function toLunoraError(error: unknown): LunoraError {
  if (error instanceof LunoraError) return error;
  // Uncoded exceptions are the room's bug, not the client's: report them
  // without their message, which may contain internals.
  console.error("lunora: unexpected error", error);
  return new LunoraError("INTERNAL", "internal error");
}

function sameProjection(a: Record<string, unknown>, b: Record<string, unknown>, columns: string[]): boolean {
  for (const column of columns) {
    const x = a[column];
    const y = b[column];
    if (x !== y && JSON.stringify(x) !== JSON.stringify(y)) return false;
  }
  return true;
}

function project(row: Record<string, unknown>, columns: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const column of columns) out[column] = row[column] ?? null;
  return out;
}

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
  private pushQueue: Promise<void> = Promise.resolve();
  private queuedPushes = 0;
  private applyingPush = false;
  private pendingOutcomes = new Map<WebSocket, MutationResult[]>();
  private outcomeFlushTimer: ReturnType<typeof setTimeout> | undefined;

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

  /** Flushes once at the end of the current task (after a burst of `db` writes). */
  private scheduleFlush(): void {
    // While a push is applied its own flush carries the rows together with
    // the outcomes; an earlier flush would split them.
    if (this.flushScheduled || this.applyingPush) return;
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

  /** Whether a request to the object is a Lunora sync upgrade. */
  isSyncRequest(request: Request): boolean {
    if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") return false;
    return request.headers.has(ROOM_HEADER) || /^\/parties\/[^/]+\/[^/]+\/?$/.test(new URL(request.url).pathname);
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
    const url = new URL(request.url);
    const room = request.headers.get(ROOM_HEADER) ?? decodeURIComponent(url.pathname.split("/")[3] ?? "");
    const version = Number(url.searchParams.get(QUERY.version));
    if (version !== PROTOCOL_VERSION) {
      return refuse(
        new LunoraError("PROTOCOL_VERSION_MISMATCH", `room speaks protocol ${PROTOCOL_VERSION}, client sent ${url.searchParams.get(QUERY.version)}`, {
          protocolVersion: PROTOCOL_VERSION,
        }),
        CLOSE_CODES.PROTOCOL_VERSION,
      );
    }
    let auth: Auth | null | undefined;
    try {
      auth = this.options.authenticate ? await this.options.authenticate(request, this.env) : ({} as Auth);
    } catch (error) {
      const coded = error instanceof LunoraError ? error : new LunoraError("UNAUTHENTICATED", "authentication failed");
      return refuse(coded, CLOSE_CODES.UNAUTHENTICATED);
    }
    if (auth === null || auth === undefined) {
      return refuse(new LunoraError("UNAUTHENTICATED", "not authenticated"), CLOSE_CODES.UNAUTHENTICATED);
    }
    const expiresAt = (auth as { expiresAt?: unknown }).expiresAt;
    const clientId = url.searchParams.get(QUERY.clientId);
    const attachment: SocketAttachment = {
      v: 1,
      room,
      auth,
      identity: this.identify(auth),
      clientId: clientId && clientId.length <= 128 ? clientId : null,
      subs: {},
    };
    if (typeof expiresAt === "number") attachment.exp = expiresAt;
    if (attachmentSize(attachment) > MAX_ATTACHMENT_BYTES) {
      return refuse(new LunoraError("QUOTA_EXCEEDED", "identity is too large to keep on the socket"), CLOSE_CODES.POLICY);
    }
    this.ensureReady();
    const pair = new WebSocketPair();
    const server = pair[1];
    this.ctx.acceptWebSocket(server, [SYNC_SOCKET_TAG]);
    server.serializeAttachment(attachment);
    server.send(this.helloFrame(room));
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** `hello`: sent on accept, and again when the epoch changes under open sockets. */
  private helloFrame(room: string): string {
    return JSON.stringify({ type: "hello", protocolVersion: PROTOCOL_VERSION, room, epoch: this.epochValue });
  }

  private identify(auth: Auth): string {
    if (this.options.identify) return this.options.identify(auth);
    const record = auth as { userId?: unknown; sub?: unknown };
    if (typeof record.userId === "string" || typeof record.userId === "number") return `user:${record.userId}`;
    if (typeof record.sub === "string") return `sub:${record.sub}`;
    return `auth:${JSON.stringify(auth)}`;
  }

  /** Counters for tests and benchmarks (per object instance, reset on wake). */
  readonly stats = { flushes: 0, socketStatesRebuilt: 0, pokeFramesSent: 0, slowConsumersClosed: 0 };

  private socketState(ws: WebSocket): SocketState | null {
    const cached = this.sockets.get(ws);
    if (cached) return cached;
    this.stats.socketStatesRebuilt++;
    const attachment = readAttachment(ws);
    if (attachment === null) return null;
    const state: SocketState = { attachment, subs: new Map(), protocolErrors: 0, unacked: 0 };
    for (const [id, sub] of Object.entries(attachment.subs)) {
      try {
        state.subs.set(id, this.resolve(id, sub.source, sub.args, attachment));
      } catch (error) {
        // The definitions changed under a hibernated socket (deploy): tell the
        // client instead of silently dropping the subscription.
        delete attachment.subs[id];
        sendQuietly(ws, errorFrame(toLunoraError(error).toBody(), id));
      }
    }
    this.sockets.set(ws, state);
    return state;
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
    if (!parsed.ok) {
      sendQuietly(ws, errorFrame(parsed.error.toBody()));
      state.protocolErrors++;
      if (state.protocolErrors >= (this.options.limits?.maxProtocolErrors ?? DEFAULTS.maxProtocolErrors)) {
        closeQuietly(ws, CLOSE_CODES.POLICY, "too many protocol errors");
      }
      return;
    }
    await this.onFrame(ws, state, parsed.frame);
  }

  private async onFrame(ws: WebSocket, state: SocketState, frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case "subscribe":
        return this.subscribe(ws, state, frame);
      case "unsubscribe":
        if (state.attachment.subs[frame.id] !== undefined) {
          delete state.attachment.subs[frame.id];
          state.subs.delete(frame.id);
          ws.serializeAttachment(state.attachment);
        }
        return;
      case "push":
        return this.onPush(ws, state, frame);
      case "ack":
        state.unacked = Math.max(0, state.unacked - frame.received);
        return;
    }
  }

  /**
   * Applies a batch of writes in order, exactly once per (identity, clientId,
   * clientSeq), then flushes: the outcomes ride in the same poke as the rows
   * they produced (a poke with no rows when no subscription sees them).
   */
  private onPush(ws: WebSocket, state: SocketState, frame: Extract<ClientFrame, { type: "push" }>): Promise<void> {
    const MAX_QUEUED_PUSHES = 256;
    if (this.queuedPushes >= MAX_QUEUED_PUSHES) {
      // Bounded: the writer retries these later (transient), nothing is lost.
      const results: MutationResult[] = frame.mutations.map((mutation) => ({
        clientSeq: mutation.clientSeq,
        status: "error",
        error: { code: "QUOTA_EXCEEDED", message: "the room is busy; retry" },
      }));
      this.flush(new Map([[ws, results]]));
      return Promise.resolve();
    }
    this.queuedPushes++;
    const run = async () => {
      this.applyingPush = true;
      try {
        const mutators = (this.options.mutators ?? {}) as Record<string, ServerMutatorDefinition>;
        const { auth, room, identity } = state.attachment;
        const results = await applyPush(
          {
            sql: this.sql,
            transactionSync: (fn) => this.ctx.storage.transactionSync(fn),
            mutators,
            identity,
            clientId: frame.clientId,
            makeContext: (clientId, clientSeq): MutationContext => ({ auth, room, env: this.env, db: this.db, sql: this.sql, clientId, clientSeq }),
          },
          frame.mutations,
        );
        const pending = this.pendingOutcomes.get(ws);
        if (pending) pending.push(...results);
        else this.pendingOutcomes.set(ws, results);
      } catch (error) {
        console.error("lunora: push failed", error);
      } finally {
        this.queuedPushes--;
        // Group commit: while more pushes wait, keep going; the last one
        // flushes once for all of them (outcomes still ride with their rows).
        if (this.queuedPushes === 0) {
          this.applyingPush = false;
          this.scheduleOutcomeFlush();
        }
      }
    };
    const next = this.pushQueue.then(run);
    this.pushQueue = next;
    return next;
  }

  /**
   * Group commit. The runtime delivers one socket message at a time, so
   * pushes never queue up inside the object; under load they queue in the
   * runtime instead. Flushing on the next macrotask rather than at once lets
   * the pushes already waiting run first, so one flush (one poke per socket)
   * carries all of them. Idle, the timer fires at once and nothing stays
   * pending.
   */
  private scheduleOutcomeFlush(): void {
    if (this.outcomeFlushTimer !== undefined) return;
    this.outcomeFlushTimer = setTimeout(() => {
      this.outcomeFlushTimer = undefined;
      this.flush();
    }, 0);
  }

  private async subscribe(ws: WebSocket, state: SocketState, frame: Subscribe): Promise<void> {
    const { id, source } = frame;
    const fail = (error: unknown) => {
      sendQuietly(ws, errorFrame(toLunoraError(error).toBody(), id));
    };
    const isNew = state.attachment.subs[id] === undefined;
    const max = this.options.limits?.maxSubscriptionsPerSocket ?? DEFAULTS.maxSubscriptionsPerSocket;
    if (isNew && Object.keys(state.attachment.subs).length >= max) {
      return fail(new LunoraError("QUOTA_EXCEEDED", `at most ${max} subscriptions per socket`, { max }));
    }
    let args: unknown;
    try {
      if ("shape" in source) {
        const shape = this.shapeDefs.get(source.shape);
        if (shape === undefined || !Object.hasOwn(this.options.shapes ?? {}, source.shape)) {
          throw new LunoraError("SHAPE_NOT_FOUND", `unknown shape "${source.shape}"`);
        }
        args = await validateWithSchema(shape.args, source.args, `args of shape "${source.shape}"`);
      }
    } catch (error) {
      return fail(error);
    }
    // The socket may have gone while the args were validated (async schemas).
    if (ws.readyState !== 1 /* OPEN */) return;
    let resolved: ResolvedSubscription;
    try {
      resolved = this.resolve(id, source, args, state.attachment);
    } catch (error) {
      return fail(error);
    }
    const previous = state.attachment.subs[id];
    state.attachment.subs[id] = { source, args };
    if (attachmentSize(state.attachment) > MAX_ATTACHMENT_BYTES) {
      if (previous) state.attachment.subs[id] = previous;
      else delete state.attachment.subs[id];
      return fail(new LunoraError("QUOTA_EXCEEDED", "subscriptions of this socket no longer fit in its 16 KiB attachment"));
    }
    // Bring every subscriber up to the log's end first, so the new
    // subscription starts from the same seq as everyone else.
    state.subs.delete(id);
    this.flush();
    ws.serializeAttachment(state.attachment);
    state.subs.set(id, resolved);
    try {
      this.sendInitialPoke(this.pokeSender(ws, state), resolved, frame.cursor);
    } catch (error) {
      if (error instanceof SlowConsumer) return this.closeSlowConsumer(ws);
      this.endSubscription(ws, state, id, error);
    }
  }

  /**
   * Ends a subscription the room cannot serve (e.g. a row larger than a
   * frame). The error frame also tells the client to drop a poke for it that
   * is still open.
   */
  private endSubscription(ws: WebSocket, state: SocketState, id: string, error: unknown): void {
    delete state.attachment.subs[id];
    state.subs.delete(id);
    try {
      ws.serializeAttachment(state.attachment);
    } catch {
      // closed
    }
    sendQuietly(ws, errorFrame(toLunoraError(error).toBody(), id));
  }

  /**
   * Turns a subscription's source and validated args into a checked
   * predicate and projection for this identity. Throws coded errors:
   * `SHAPE_NOT_FOUND`, `FORBIDDEN` (read rule returned false or `where` threw
   * FORBIDDEN), `INVALID_ARGS` (predicate names unknown columns).
   */
  private resolve(id: string, source: SocketAttachment["subs"][string]["source"], args: unknown, attachment: SocketAttachment): ResolvedSubscription {
    const ctx: LunoraContext<Auth, Env> = { auth: attachment.auth as Auth, room: attachment.room, env: this.env };
    let tableName: string;
    let shape: ShapeDefinition | undefined;
    if ("list" in source) {
      const def = Object.hasOwn(this.options.tables, source.list) ? this.tableDefs.get(source.list) : undefined;
      if (def === undefined || def.list === false) throw new LunoraError("SHAPE_NOT_FOUND", `unknown list "${source.list}"`);
      tableName = source.list;
    } else {
      shape = Object.hasOwn(this.options.shapes ?? {}, source.shape) ? this.shapeDefs.get(source.shape) : undefined;
      if (shape === undefined) throw new LunoraError("SHAPE_NOT_FOUND", `unknown shape "${source.shape}"`);
      tableName = shape.table;
    }
    const def = this.tableDefs.get(tableName)!;
    const info = this.tableInfo(tableName);
    const read = def.read ? def.read(ctx) : true;
    if (read === false) throw new LunoraError("FORBIDDEN", `not allowed to read "${tableName}"`);
    let where = compileWhere(read, info.columns);
    if (shape?.where) where = andWhere(where, compileWhere(shape.where(ctx, args as never), info.columns));
    const wanted = shape?.columns ?? def.columns ?? [...info.columns.keys()];
    const columns = [...new Set([info.key, ...wanted])];
    for (const column of columns) {
      if (!info.columns.has(column)) throw new LunoraError("INTERNAL", `column "${column}" of "${tableName}" does not exist`);
    }
    return { id, table: tableName, key: info.key, columns, where, group: `${tableName}\u0000${JSON.stringify(where)}\u0000${columns.join(",")}` };
  }

  /**
   * The first poke of a subscription: the delta since its cursor when the log
   * still covers it in this epoch, else a reset with a snapshot.
   */
  private sendInitialPoke(send: Send, sub: ResolvedSubscription, cursor: Cursor | undefined): void {
    const through = this.flushedSeq;
    const end: Cursor = { seq: through, epoch: this.epochValue };
    const maxResume = this.options.limits?.maxResumeLogRows ?? DEFAULTS.maxResumeLogRows;
    const canResume =
      cursor !== undefined &&
      cursor.epoch === this.epochValue &&
      cursor.seq >= this.trimmedThrough &&
      cursor.seq <= through &&
      countLogRows(this.sql, cursor.seq, through) <= maxResume;
    if (canResume) {
      const changes = coalesceLog(readLog(this.sql, cursor.seq, through), this.keys)!;
      const writer = new PokeWriter(send, this.nextPokeId(through)).start([sub.id]);
      for (const change of changes.values()) {
        const op = this.diffOp(sub, change);
        if (op) this.addOp(writer, sub, op[0], op[1]);
      }
      writer.end(end);
      return;
    }
    const writer = new PokeWriter(send, this.nextPokeId(through)).start([sub.id], [sub.id]);
    const { sql, params } = whereToSql(sub.where);
    const cursorRows = this.sql.exec(`SELECT ${sub.columns.map(quoteIdent).join(", ")} FROM ${quoteIdent(sub.table)} WHERE ${sql}`, ...params);
    for (const raw of cursorRows) {
      const row: Record<string, unknown> = {};
      for (const column of sub.columns) {
        const value = raw[column];
        row[column] = syncedValue(value);
      }
      this.addOp(writer, sub, "put", encodePutTail(row[sub.key] as string | number, row));
    }
    writer.end(end);
  }

  private addOp(writer: PokeWriter, sub: ResolvedSubscription, op: "put" | "del", tail: string): void {
    if (!writer.add(encodeRowOp(op, sub.id, tail))) {
      throw new LunoraError("MESSAGE_TOO_LARGE", `a row of "${sub.table}" is larger than a frame`);
    }
  }

  /** One key's change as seen by one subscription: enter/change → put, leave → del, else nothing. */
  private diffOp(sub: ResolvedSubscription, change: KeyChange): ["put" | "del", string] | null {
    if (change.table !== sub.table) return null;
    const before = change.before !== null && matchesWhere(sub.where, change.before);
    const after = change.after !== null && matchesWhere(sub.where, change.after);
    if (after) {
      if (before && sameProjection(change.before!, change.after!, sub.columns)) return null;
      return ["put", encodePutTail(change.key, project(change.after!, sub.columns))];
    }
    return before ? ["del", encodeDelTail(change.key)] : null;
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
    // Outcomes waiting for the group-commit flush go out with any flush, so
    // they always ride with the rows they produced.
    if (this.pendingOutcomes.size > 0) {
      for (const [ws, results] of outcomes ?? []) {
        const pending = this.pendingOutcomes.get(ws);
        if (pending) pending.push(...results);
        else this.pendingOutcomes.set(ws, results);
      }
      outcomes = this.pendingOutcomes;
      this.pendingOutcomes = new Map();
    }
    const through = Math.max(maxLogSeq(this.sql), this.flushedSeq);
    if (through === this.flushedSeq && (outcomes === undefined || outcomes.size === 0)) return;
    this.stats.flushes++;
    const from = this.flushedSeq;
    let changes: Map<string, KeyChange> = new Map();
    const changedTables = new Set<string>();
    if (through > from) {
      changes = coalesceLog(readLog(this.sql, from, through), this.keys)!;
      for (const change of changes.values()) changedTables.add(change.table);
    }
    const groups = new Map<string, Array<["put" | "del", string]>>();
    const end: Cursor = { seq: through, epoch: this.epochValue };
    for (const ws of this.ctx.getWebSockets(SYNC_SOCKET_TAG)) {
      const state = this.socketState(ws);
      if (state === null) continue;
      if (!this.checkExpiry(ws, state)) continue;
      const mutations = outcomes?.get(ws);
      const perSub: Array<[ResolvedSubscription, Array<["put" | "del", string]>]> = [];
      for (const sub of state.subs.values()) {
        if (!changedTables.has(sub.table)) continue;
        let ops = groups.get(sub.group);
        if (ops === undefined) {
          ops = [];
          for (const change of changes.values()) {
            const op = this.diffOp(sub, change);
            if (op) ops.push(op);
          }
          groups.set(sub.group, ops);
        }
        if (ops.length > 0) perSub.push([sub, ops]);
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
    perSub: Array<[ResolvedSubscription, Array<["put" | "del", string]>]>,
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
      sendQuietly(ws, this.helloFrame(state.attachment.room));
      for (const sub of state.subs.values()) {
        try {
          this.sendInitialPoke(this.pokeSender(ws, state), sub, undefined);
        } catch (error) {
          if (error instanceof SlowConsumer) {
            this.closeSlowConsumer(ws);
            break;
          }
          this.endSubscription(ws, state, sub.id, error);
        }
      }
    }
  }

  /** Called for a sync socket's close: nothing to clean but the cache. */
  onClose(ws: WebSocket, code: number): void {
    this.sockets.delete(ws);
    // Complete the closing handshake (a no-op where the runtime already did).
    closeQuietly(ws, code === 1005 || code === 1006 ? 1000 : code, "");
  }
}

/** Thrown by a poke sender when the socket's unacknowledged text exceeds the bound. */
class SlowConsumer extends Error {}

/** Answers an upgrade with a coded error frame and a close, on a socket that is never hibernated. */
function refuse(error: LunoraError, closeCode: number): Response {
  const pair = new WebSocketPair();
  const server = pair[1];
  server.accept();
  server.send(errorFrame(error.toBody()));
  server.close(closeCode, error.code);
  return new Response(null, { status: 101, webSocket: pair[0] });
}
